// Host shim: lets g++ compile the real CUDA __global__ bodies (csrc/kernels/*.cuh)
// and run them on the CPU, serially, under AddressSanitizer and UBSan.
//
// docs/verification.md, "One kernel source, three compilers": the kernels have no
// communication between the threads of a block (one thread owns its neurons and
// walks time in registers), so running every (block, thread) of the grid to
// completion, one after the other, computes exactly what the GPU computes. What
// the emulation buys: every index the kernel forms is checked against exact-size
// heap buffers (ASan), every load/store through a vector type is checked against
// the type's real CUDA alignment (UBSan -fsanitize=alignment), and the grid
// (including grid-stride wrap-around for small SM counts) is the launcher's own.
//
// Usage:
//   #include "host_shim.h"                 // before any kernel header
//   #include "kernels/neuron_kernels.cuh"  // the very file nvcc compiles
//   emu_launch(snn::neuron_fwd_kernel<0, 0, float>, dim3(grid), dim3(256), params);
//
// Anything that needs real intra-block cooperation (__syncthreads, shared memory
// reductions, warp shuffles) cannot be emulated this way: those entry points are
// declared here so that such a kernel fails loudly at run time (or does not
// compile) instead of silently computing something else.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#error "host_shim.h is for g++/clang++ host builds only"
#endif

#define SNN_HOST_SHIM 1

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <type_traits>
#include <utility>

// ---------------------------------------------------------------------------
// Execution-space and qualifier keywords.
// ---------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __noinline__ __attribute__((noinline))
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __grid_constant__
// `__restrict__` is a native GNU C++ keyword (g++ and clang++ accept it with the
// same meaning nvcc gives it); define it only for a compiler that lacks it.
#if !defined(__GNUC__) && !defined(__clang__)
#define __restrict__
#endif
// __shared__ / __constant__: a serial emulation gives each thread its own
// program order, so block-shared storage would not be observed correctly by the
// other threads of the block. A kernel that declares such storage must not be
// emulated; make it a compile error rather than a silent wrong answer.
#define __shared__ static_assert(false, "host_shim: __shared__ memory cannot be emulated serially");
#define __constant__ static

// ---------------------------------------------------------------------------
// Built-in vector types with their real CUDA size and alignment
// (cuda/include/vector_types.h). The alignment is what makes a misaligned
// float4/int4/double2 reinterpretation fail under -fsanitize=alignment, as it
// would fault (misaligned address) on the GPU.
// ---------------------------------------------------------------------------
#define SNN_SHIM_VEC1(NAME, T, AL) \
  struct alignas(AL) NAME {        \
    T x;                           \
  };
#define SNN_SHIM_VEC2(NAME, T, AL) \
  struct alignas(AL) NAME {        \
    T x, y;                        \
  };
#define SNN_SHIM_VEC3(NAME, T, AL) \
  struct alignas(AL) NAME {        \
    T x, y, z;                     \
  };
#define SNN_SHIM_VEC4(NAME, T, AL) \
  struct alignas(AL) NAME {        \
    T x, y, z, w;                  \
  };

SNN_SHIM_VEC1(char1, signed char, 1)
SNN_SHIM_VEC2(char2, signed char, 2)
SNN_SHIM_VEC3(char3, signed char, 1)
SNN_SHIM_VEC4(char4, signed char, 4)
SNN_SHIM_VEC1(uchar1, unsigned char, 1)
SNN_SHIM_VEC2(uchar2, unsigned char, 2)
SNN_SHIM_VEC3(uchar3, unsigned char, 1)
SNN_SHIM_VEC4(uchar4, unsigned char, 4)
SNN_SHIM_VEC1(short1, short, 2)
SNN_SHIM_VEC2(short2, short, 4)
SNN_SHIM_VEC3(short3, short, 2)
SNN_SHIM_VEC4(short4, short, 8)
SNN_SHIM_VEC1(ushort1, unsigned short, 2)
SNN_SHIM_VEC2(ushort2, unsigned short, 4)
SNN_SHIM_VEC3(ushort3, unsigned short, 2)
SNN_SHIM_VEC4(ushort4, unsigned short, 8)
SNN_SHIM_VEC1(int1, int, 4)
SNN_SHIM_VEC2(int2, int, 8)
SNN_SHIM_VEC3(int3, int, 4)
SNN_SHIM_VEC4(int4, int, 16)
SNN_SHIM_VEC1(uint1, unsigned int, 4)
SNN_SHIM_VEC2(uint2, unsigned int, 8)
SNN_SHIM_VEC3(uint3, unsigned int, 4)
SNN_SHIM_VEC4(uint4, unsigned int, 16)
SNN_SHIM_VEC1(long1, long, alignof(long))
SNN_SHIM_VEC2(long2, long, 2 * alignof(long))
SNN_SHIM_VEC3(long3, long, alignof(long))
SNN_SHIM_VEC4(long4, long, 16)
SNN_SHIM_VEC1(ulong1, unsigned long, alignof(unsigned long))
SNN_SHIM_VEC2(ulong2, unsigned long, 2 * alignof(unsigned long))
SNN_SHIM_VEC3(ulong3, unsigned long, alignof(unsigned long))
SNN_SHIM_VEC4(ulong4, unsigned long, 16)
SNN_SHIM_VEC1(longlong1, long long, 8)
SNN_SHIM_VEC2(longlong2, long long, 16)
SNN_SHIM_VEC3(longlong3, long long, 8)
SNN_SHIM_VEC4(longlong4, long long, 16)
SNN_SHIM_VEC1(ulonglong1, unsigned long long, 8)
SNN_SHIM_VEC2(ulonglong2, unsigned long long, 16)
SNN_SHIM_VEC3(ulonglong3, unsigned long long, 8)
SNN_SHIM_VEC4(ulonglong4, unsigned long long, 16)
SNN_SHIM_VEC1(float1, float, 4)
SNN_SHIM_VEC2(float2, float, 8)
SNN_SHIM_VEC3(float3, float, 4)
SNN_SHIM_VEC4(float4, float, 16)
SNN_SHIM_VEC1(double1, double, 8)
SNN_SHIM_VEC2(double2, double, 16)
SNN_SHIM_VEC3(double3, double, 8)
SNN_SHIM_VEC4(double4, double, 16)

#undef SNN_SHIM_VEC1
#undef SNN_SHIM_VEC2
#undef SNN_SHIM_VEC3
#undef SNN_SHIM_VEC4

static_assert(sizeof(float2) == 8 && alignof(float2) == 8, "float2 layout");
static_assert(sizeof(float4) == 16 && alignof(float4) == 16, "float4 layout");
static_assert(sizeof(double2) == 16 && alignof(double2) == 16, "double2 layout");
static_assert(sizeof(int4) == 16 && alignof(int4) == 16, "int4 layout");
static_assert(sizeof(uint2) == 8 && alignof(uint2) == 8, "uint2 layout");
static_assert(sizeof(float3) == 12 && alignof(float3) == 4, "float3 layout");
static_assert(sizeof(short4) == 8 && alignof(short4) == 8, "short4 layout");

inline float2 make_float2(float x, float y) { return float2{x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
inline double2 make_double2(double x, double y) { return double2{x, y}; }
inline int2 make_int2(int x, int y) { return int2{x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return int4{x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return uint2{x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return uint4{x, y, z, w}; }

// dim3: uint3-like with default 1s (cuda/include/vector_types.h).
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
  constexpr operator uint3() const { return uint3{x, y, z}; }
};

// ---------------------------------------------------------------------------
// Built-in index variables. thread_local so that a future parallel emulation
// (one host thread per emulated block) stays correct; inline (C++17) so that
// several translation units share one definition.
// ---------------------------------------------------------------------------
inline thread_local uint3 threadIdx = {0, 0, 0};
inline thread_local uint3 blockIdx = {0, 0, 0};
inline thread_local dim3 blockDim = dim3(1, 1, 1);
inline thread_local dim3 gridDim = dim3(1, 1, 1);
static const int warpSize = 32;

// ---------------------------------------------------------------------------
// Device built-ins with an exact serial meaning.
// ---------------------------------------------------------------------------
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

// Not emulable serially: abort loudly if a kernel reaches one.
[[noreturn]] inline void snn_shim_unsupported(const char* what) {
  std::fprintf(stderr, "host_shim: %s cannot be emulated by the serial launch\n", what);
  std::abort();
}
inline void __syncthreads() { snn_shim_unsupported("__syncthreads()"); }
inline void __syncwarp(unsigned = 0xffffffffu) { snn_shim_unsupported("__syncwarp()"); }
inline void __threadfence() {}  // serial: every store is already visible

// ---------------------------------------------------------------------------
// Emulated launch: kernel<<<grid, block>>>(args...) as a serial loop over every
// block and every thread of the block, each thread run to completion.
// Arguments are copied once, as the CUDA runtime copies kernel parameters.
// ---------------------------------------------------------------------------
struct EmuLaunchStats {
  unsigned long long launches = 0;
  unsigned long long threads = 0;
};
inline EmuLaunchStats& emu_launch_stats() {
  static EmuLaunchStats s;
  return s;
}

template <typename... KArgs, typename... Args>
inline void emu_launch(void (*kernel)(KArgs...), dim3 grid, dim3 block, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "emu_launch: wrong number of kernel arguments");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0) {
    std::fprintf(stderr, "emu_launch: empty grid/block (%u,%u,%u) x (%u,%u,%u): invalid configuration\n", grid.x,
                 grid.y, grid.z, block.x, block.y, block.z);
    std::abort();
  }
  if ((unsigned long long)block.x * block.y * block.z > 1024ull || block.z > 64u || grid.y > 65535u ||
      grid.z > 65535u) {
    std::fprintf(stderr, "emu_launch: launch configuration exceeds CUDA limits\n");
    std::abort();
  }
  // The kernel's parameters as the device would see them: one by-value copy.
  std::tuple<typename std::decay<KArgs>::type...> params(std::forward<Args>(args)...);
  gridDim = grid;
  blockDim = block;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        blockIdx = uint3{bx, by, bz};
        for (unsigned tz = 0; tz < block.z; ++tz)
          for (unsigned ty = 0; ty < block.y; ++ty)
            for (unsigned tx = 0; tx < block.x; ++tx) {
              threadIdx = uint3{tx, ty, tz};
              std::apply(kernel, params);
            }
      }
  EmuLaunchStats& st = emu_launch_stats();
  st.launches += 1;
  st.threads += (unsigned long long)grid.x * grid.y * grid.z * block.x * block.y * block.z;
  // Leave the index variables in a state no real thread could have, so that a
  // stray host-side use of threadIdx outside a launch is obvious.
  threadIdx = uint3{0xffffffffu, 0xffffffffu, 0xffffffffu};
  blockIdx = uint3{0xffffffffu, 0xffffffffu, 0xffffffffu};
}
