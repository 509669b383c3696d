// Kernel-side common definitions. Self-contained on purpose: this header (and
// everything under csrc/kernels/) is compiled by nvcc, by NVRTC at run time
// (CuPy path, no system or torch headers available) and by g++ through the
// host shim (python_tests/emulation), so it includes no torch/c10/ATen header
// and, under NVRTC, no standard header either.
#pragma once

#if defined(__CUDACC_RTC__)
#define SNN_NVRTC 1
#endif

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define SNN_HD __host__ __device__
#define SNN_DEVICE_CODE 1
#include <cuda_fp16.h>
#include <cuda_bf16.h>
#elif defined(SNN_HOST_SHIM)
// The emulation shim defines __host__/__device__ as nothing; the host
// half_t/bf16_t below are used, as in the CPU kernels.
#define SNN_HD
#else
#define SNN_HD
#endif

#if defined(_MSC_VER)
#define SNN_INLINE __forceinline
#else
#define SNN_INLINE inline __attribute__((always_inline))
#endif

#if !defined(SNN_NVRTC)
#include <cmath>
#include <cstdint>
#include <cstring>
#endif

namespace snn {

typedef long long i64;

// ---------------------------------------------------------------------------
// Model switches (compile-time template arguments of every kernel).
// The integer values are part of the op ABI: Python passes them.
// ---------------------------------------------------------------------------
// MODEL_PLIF (ParametricLIF) exists at the op level only: the kernels run it
// as MODEL_LIF with Coeffs::plif set.
enum Model : int { MODEL_LIF = 0, MODEL_IF = 1, MODEL_LEAKY = 2, MODEL_PLIF = 3 };
// LIF/IF: HARD = reset to v_reset, SOFT = subtract v_threshold.
// Leaky:  HARD = "zero", SOFT = "subtract", NONE = "none".
enum Reset : int { RESET_HARD = 0, RESET_SOFT = 1, RESET_NONE = 2 };
enum Surrogate : int {
  SG_SIGMOID = 0,
  SG_ATAN = 1,
  SG_FAST_SIGMOID = 2,
  SG_PIECEWISE_QUADRATIC = 3,
  SG_PIECEWISE_EXP = 4,
  SG_SOFT_SIGN = 5,
  SG_ERF = 6,
  SG_RECT = 7,
  SG_STRAIGHT_THROUGH = 8,
  SG_COUNT = 9
};

// ---------------------------------------------------------------------------
// Math wrappers: one overload set per state type so the neuron math is
// written once for float and double. No fast-math variants (bit parity).
// ---------------------------------------------------------------------------
#if defined(SNN_DEVICE_CODE)
SNN_HD SNN_INLINE float snn_exp(float x) { return expf(x); }
SNN_HD SNN_INLINE double snn_exp(double x) { return exp(x); }
SNN_HD SNN_INLINE float snn_abs(float x) { return fabsf(x); }
SNN_HD SNN_INLINE double snn_abs(double x) { return fabs(x); }
#else
SNN_HD SNN_INLINE float snn_exp(float x) { return std::exp(x); }
SNN_HD SNN_INLINE double snn_exp(double x) { return std::exp(x); }
SNN_HD SNN_INLINE float snn_abs(float x) { return std::fabs(x); }
SNN_HD SNN_INLINE double snn_abs(double x) { return std::fabs(x); }
#endif

// ---------------------------------------------------------------------------
// Storage <-> state conversion layer. 16-bit storage is converted to fp32
// state on load and rounded (RNE) on store; fp32/fp64 are identity.
// On the GPU the CUDA intrinsics are used; on the host (CPU kernels, host
// shim) a bit-exact software conversion with the same rounding.
// ---------------------------------------------------------------------------
#if defined(SNN_DEVICE_CODE)
typedef __half half_t;
typedef __nv_bfloat16 bf16_t;
SNN_HD SNN_INLINE float to_state(half_t v) { return __half2float(v); }
SNN_HD SNN_INLINE float to_state(bf16_t v) { return __bfloat162float(v); }
template <typename T> SNN_HD SNN_INLINE T from_float(float v);
template <> SNN_HD SNN_INLINE half_t from_float<half_t>(float v) { return __float2half_rn(v); }
template <> SNN_HD SNN_INLINE bf16_t from_float<bf16_t>(float v) { return __float2bfloat16_rn(v); }
#else
// Host storage types: 16 bits, same layout as at::Half / at::BFloat16 and
// as __half / __nv_bfloat16, so buffers can be reinterpreted freely.
struct half_t { unsigned short x; };
struct bf16_t { unsigned short x; };

SNN_INLINE float bits_to_float(unsigned int u) { float f; std::memcpy(&f, &u, 4); return f; }
SNN_INLINE unsigned int float_to_bits(float f) { unsigned int u; std::memcpy(&u, &f, 4); return u; }

// IEEE binary16 -> binary32, exact, branch-free (denormals via the magic
// multiply trick; see M. Maratyszcza's FP16 library for the derivation).
SNN_INLINE float to_state(half_t h) {
  const unsigned int w = (unsigned int)h.x << 16;
  const unsigned int sign = w & 0x80000000u;
  const unsigned int two_w = w + w;
  const unsigned int exp_offset = 0xE0u << 23;
  const float exp_scale = bits_to_float(0x7800000u);  // 2^-112
  const float normalized = bits_to_float((two_w >> 4) + exp_offset) * exp_scale;
  const unsigned int magic_mask = 126u << 23;
  const float magic_bias = 0.5f;
  const float denormalized = bits_to_float((two_w >> 17) | magic_mask) - magic_bias;
  const unsigned int denormalized_cutoff = 1u << 27;
  const unsigned int result =
      sign | (two_w < denormalized_cutoff ? float_to_bits(denormalized) : float_to_bits(normalized));
  return bits_to_float(result);
}
SNN_INLINE float to_state(bf16_t b) { return bits_to_float((unsigned int)b.x << 16); }

template <typename T> SNN_INLINE T from_float(float v);
// binary32 -> binary16, round to nearest even, overflow to inf, NaN kept.
template <> SNN_INLINE half_t from_float<half_t>(float f) {
  const float scale_to_inf = bits_to_float(0x77800000u);   // 2^112
  const float scale_to_zero = bits_to_float(0x08800000u);  // 2^-110
  float base = (std::fabs(f) * scale_to_inf) * scale_to_zero;
  const unsigned int w = float_to_bits(f);
  const unsigned int shl1_w = w + w;
  const unsigned int sign = w & 0x80000000u;
  unsigned int bias = shl1_w & 0xFF000000u;
  if (bias < 0x71000000u) bias = 0x71000000u;
  base = bits_to_float((bias >> 1) + 0x07800000u) + base;
  const unsigned int bits = float_to_bits(base);
  const unsigned int exp_bits = (bits >> 13) & 0x00007C00u;
  const unsigned int mantissa_bits = bits & 0x00000FFFu;
  const unsigned int nonsign = exp_bits + mantissa_bits;
  half_t h;
  h.x = (unsigned short)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
  return h;
}
// binary32 -> bfloat16, round to nearest even, NaN kept quiet.
template <> SNN_INLINE bf16_t from_float<bf16_t>(float f) {
  const unsigned int u = float_to_bits(f);
  bf16_t b;
  if ((u & 0x7fffffffu) > 0x7f800000u) {
    b.x = (unsigned short)((u >> 16) | 0x40u);
  } else {
    const unsigned int rounding_bias = 0x7fffu + ((u >> 16) & 1u);
    b.x = (unsigned short)((u + rounding_bias) >> 16);
  }
  return b;
}
#endif

SNN_HD SNN_INLINE float to_state(float v) { return v; }
SNN_HD SNN_INLINE double to_state(double v) { return v; }

// State type: fp64 for fp64 storage, fp32 for everything else.
template <typename T> struct StateOf { typedef float type; };
template <> struct StateOf<double> { typedef double type; };

template <typename T, typename S> struct Store {
  static SNN_HD SNN_INLINE T from(S v) { return from_float<T>((float)v); }
};
template <> struct Store<float, float> {
  static SNN_HD SNN_INLINE float from(float v) { return v; }
};
template <> struct Store<double, float> {
  static SNN_HD SNN_INLINE double from(float v) { return v; }
};
template <> struct Store<double, double> {
  static SNN_HD SNN_INLINE double from(double v) { return v; }
};
template <typename T, typename S> SNN_HD SNN_INLINE T store_as(S v) { return Store<T, S>::from(v); }

}  // namespace snn
