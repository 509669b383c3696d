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

#include "surrogate_list.h"

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
// The surrogate kinds (enum Surrogate, SG_COUNT): surrogate_list.h, generated
// from the declarations in surrogate.h.

// ---------------------------------------------------------------------------
// Math wrappers: one overload set per state type so the neuron math is
// written once for float and double. No fast-math variants (bit parity).
// ---------------------------------------------------------------------------
#if defined(SNN_DEVICE_CODE)
SNN_HD SNN_INLINE float snn_exp(float x) { return expf(x); }
SNN_HD SNN_INLINE double snn_exp(double x) { return exp(x); }
SNN_HD SNN_INLINE float snn_abs(float x) { return fabsf(x); }
SNN_HD SNN_INLINE double snn_abs(double x) { return fabs(x); }
#elif defined(SNN_HOST_SHIM)
// The host emulation of the CUDA kernels: libm stands in for CUDA's expf.
SNN_HD SNN_INLINE float snn_exp(float x) { return std::exp(x); }
SNN_HD SNN_INLINE double snn_exp(double x) { return std::exp(x); }
SNN_HD SNN_INLINE float snn_abs(float x) { return std::fabs(x); }
SNN_HD SNN_INLINE double snn_abs(double x) { return std::fabs(x); }
#else
// The CPU kernels: a libm call would keep the surrogate loops scalar, and a
// vector math library rounds differently per vector width. exp_fixed is
// plain arithmetic in a fixed order (no FMA, no table), so it vectorises and
// gives the same bits on every ISA variant and in scalar code: Cephes'
// Cody-Waite reduction and polynomial (float) / Pade form (double), scaled by
// 2^n in two steps so that results near overflow and gradual underflow round
// once. Measured against expl: at most 1.00 ulp (float, every 7th float in
// [-110, 95]) and 1.66 ulp (double, 2e7 random points in [-750, 715]);
// +-inf give inf / 0 and NaN propagates.
SNN_INLINE float exp_fixed(float x) {
  float xc = x > 89.0f ? 89.0f : x;  // beyond: inf (2^128) / 0 (below 2^-150)
  xc = xc < -104.0f ? -104.0f : xc;
  // Adding 1.5 * 2^23 rounds to an integer, which then sits in the low bits.
  const float magic = 12582912.0f;
  const float t = xc * 1.44269504088896341f + magic;
  unsigned int tb, mb;
  std::memcpy(&tb, &t, 4);
  std::memcpy(&mb, &magic, 4);
  const int n = (int)(tb - mb);
  const float fn = t - magic;
  float r = xc - fn * 0.693359375f;
  r = r - fn * -2.12194440e-4f;
  const float z = r * r;
  float p = 1.9875691500E-4f;
  p = p * r + 1.3981999507E-3f;
  p = p * r + 8.3334519073E-3f;
  p = p * r + 4.1665795894E-2f;
  p = p * r + 1.6666665459E-1f;
  p = p * r + 5.0000001201E-1f;
  float y = p * z + r + 1.0f;
  const int k1 = n >> 1, k2 = n - k1;
  const unsigned int b1 = (unsigned int)(k1 + 127) << 23, b2 = (unsigned int)(k2 + 127) << 23;
  float s1, s2;
  std::memcpy(&s1, &b1, 4);
  std::memcpy(&s2, &b2, 4);
  y = (y * s1) * s2;
  return x != x ? x : y;
}
SNN_INLINE double exp_fixed(double x) {
  double xc = x > 710.0 ? 710.0 : x;
  xc = xc < -746.0 ? -746.0 : xc;
  const double magic = 6755399441055744.0;  // 1.5 * 2^52
  const double t = xc * 1.4426950408889634074 + magic;
  unsigned long long tb, mb;
  std::memcpy(&tb, &t, 8);
  std::memcpy(&mb, &magic, 8);
  const long long n = (long long)(tb - mb);
  const double fn = t - magic;
  double r = xc - fn * 6.93145751953125E-1;
  r = r - fn * 1.42860682030941723212E-6;
  const double xx = r * r;
  double px = 1.26177193074810590878E-4;
  px = px * xx + 3.02994407707441961300E-2;
  px = px * xx + 9.99999999999999999910E-1;
  px = px * r;
  double q = 3.00198505138664455042E-6;
  q = q * xx + 2.52448340349684104192E-3;
  q = q * xx + 2.27265548208155028766E-1;
  q = q * xx + 2.00000000000000000009E0;
  double y = px / (q - px);
  y = y + y + 1.0;
  // n + 2048 > 0, so a logical shift halves it (AVX2 has no 64-bit
  // arithmetic shift).
  const long long k1 = (long long)(((unsigned long long)n + 2048) >> 1) - 1024, k2 = n - k1;
  const unsigned long long b1 = (unsigned long long)(k1 + 1023) << 52, b2 = (unsigned long long)(k2 + 1023) << 52;
  double s1, s2;
  std::memcpy(&s1, &b1, 8);
  std::memcpy(&s2, &b2, 8);
  y = (y * s1) * s2;
  return x != x ? x : y;
}
SNN_INLINE float snn_exp(float x) { return exp_fixed(x); }
SNN_INLINE double snn_exp(double x) { return exp_fixed(x); }
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
template <typename T>
SNN_HD SNN_INLINE T from_float(float v);
template <>
SNN_HD SNN_INLINE half_t from_float<half_t>(float v) {
  return __float2half_rn(v);
}
template <>
SNN_HD SNN_INLINE bf16_t from_float<bf16_t>(float v) {
  return __float2bfloat16_rn(v);
}
#else
// Host storage types: 16 bits, same layout as at::Half / at::BFloat16 and
// as __half / __nv_bfloat16, so buffers can be reinterpreted freely.
struct half_t {
  unsigned short x;
};
struct bf16_t {
  unsigned short x;
};

SNN_INLINE float bits_to_float(unsigned int u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
SNN_INLINE unsigned int float_to_bits(float f) {
  unsigned int u;
  std::memcpy(&u, &f, 4);
  return u;
}

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

template <typename T>
SNN_INLINE T from_float(float v);
// binary32 -> binary16, round to nearest even, overflow to inf, NaN kept.
template <>
SNN_INLINE half_t from_float<half_t>(float f) {
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
template <>
SNN_INLINE bf16_t from_float<bf16_t>(float f) {
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
template <typename T>
struct StateOf {
  typedef float type;
};
template <>
struct StateOf<double> {
  typedef double type;
};

template <typename T, typename S>
struct Store {
  static SNN_HD SNN_INLINE T from(S v) { return from_float<T>((float)v); }
};
template <>
struct Store<float, float> {
  static SNN_HD SNN_INLINE float from(float v) { return v; }
};
template <>
struct Store<double, float> {
  static SNN_HD SNN_INLINE double from(float v) { return v; }
};
template <>
struct Store<double, double> {
  static SNN_HD SNN_INLINE double from(double v) { return v; }
};
template <typename T, typename S>
SNN_HD SNN_INLINE T store_as(S v) {
  return Store<T, S>::from(v);
}

}  // namespace snn
