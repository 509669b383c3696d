// __global__ bodies of the spike <-> byte conversions (see convert.h). One
// thread per group of kConvertVec elements, grid-stride. Both kernels are
// pure streams (1 B plus sizeof(T) per element), so what matters is the width
// of each memory instruction: a group is moved with one vector load and one
// vector store (uchar4 for the bytes, 4 x T for the values) when both base
// pointers are aligned to those widths, which the allocator gives every
// whole tensor; a view at an odd offset takes the per-element path. No
// communication between threads, so the host emulation runs these bodies.
#pragma once
#include "convert.h"

namespace snn {

// Four T with the alignment of one vector access of all four (float4's for
// float, 8 B for the 16-bit types, two 16 B halves for double).
template <typename T>
struct alignas(sizeof(T) * kConvertVec) Vec4 {
  T v[kConvertVec];
};
struct alignas(kConvertVec) Bytes4 {
  unsigned char v[kConvertVec];
};

SNN_HD SNN_INLINE bool aligned_to(const void* p, unsigned long long a) { return ((unsigned long long)p % a) == 0; }

template <typename T>
__global__ void narrow_kernel(const NarrowParams p) {
  const T* __restrict__ x = (const T*)p.x;
  unsigned char* __restrict__ out = (unsigned char*)p.out;
  const i64 groups = convert_groups(p.n);
  const i64 full = p.n / kConvertVec;  // groups with all four elements
  const bool vec = aligned_to(x, sizeof(Vec4<T>)) && aligned_to(out, sizeof(Bytes4));
  const i64 stride = (i64)blockDim.x * gridDim.x;
  int bad = 0;
  for (i64 g = (i64)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const i64 e = g * kConvertVec;
    if (vec && g < full) {
      const Vec4<T> in = ((const Vec4<T>*)x)[g];
      Bytes4 o;
#pragma unroll
      for (int k = 0; k < kConvertVec; ++k) o.v[k] = narrow_one<T>(in.v[k], bad);
      ((Bytes4*)out)[g] = o;
    } else {
      for (int k = 0; k < kConvertVec && e + k < p.n; ++k) out[e + k] = narrow_one<T>(x[e + k], bad);
    }
  }
  // Every writer stores the same value, so plain stores suffice (no atomics);
  // one per thread that saw a non-binary element.
  if (bad && p.not_binary) *p.not_binary = 1;
}

template <typename T>
__global__ void widen_kernel(const WidenParams p) {
  const unsigned char* __restrict__ x = (const unsigned char*)p.x;
  T* __restrict__ out = (T*)p.out;
  const i64 groups = convert_groups(p.n);
  const i64 full = p.n / kConvertVec;
  const bool vec = aligned_to(x, sizeof(Bytes4)) && aligned_to(out, sizeof(Vec4<T>));
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 g = (i64)blockIdx.x * blockDim.x + threadIdx.x; g < groups; g += stride) {
    const i64 e = g * kConvertVec;
    if (vec && g < full) {
      const Bytes4 in = ((const Bytes4*)x)[g];
      Vec4<T> o;
#pragma unroll
      for (int k = 0; k < kConvertVec; ++k) o.v[k] = widen_one<T>(in.v[k]);
      ((Vec4<T>*)out)[g] = o;
    } else {
      for (int k = 0; k < kConvertVec && e + k < p.n; ++k) out[e + k] = widen_one<T>(x[e + k]);
    }
  }
}

}  // namespace snn
