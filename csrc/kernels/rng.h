// Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, the
// generator behind curand's and torch's CUDA RNG): a pure function of
// (key, counter), so the CPU and CUDA kernels produce the same stream for the
// same seed, threads need no shared state, and runs are reproducible.
#pragma once
#include "common.h"

namespace snn {

struct U32x4 {
  unsigned int v[4];
};

SNN_HD SNN_INLINE unsigned int mulhilo32(unsigned int a, unsigned int b, unsigned int* hi) {
  const unsigned long long p = (unsigned long long)a * (unsigned long long)b;
  *hi = (unsigned int)(p >> 32);
  return (unsigned int)p;
}

SNN_HD SNN_INLINE U32x4 philox4x32_10(unsigned long long counter_lo, unsigned long long counter_hi,
                                      unsigned long long key) {
  unsigned int c0 = (unsigned int)counter_lo, c1 = (unsigned int)(counter_lo >> 32);
  unsigned int c2 = (unsigned int)counter_hi, c3 = (unsigned int)(counter_hi >> 32);
  unsigned int k0 = (unsigned int)key, k1 = (unsigned int)(key >> 32);
  for (int r = 0; r < 10; ++r) {
    unsigned int hi0, hi1;
    const unsigned int lo0 = mulhilo32(0xD2511F53u, c0, &hi0);
    const unsigned int lo1 = mulhilo32(0xCD9E8D57u, c2, &hi1);
    const unsigned int n0 = hi1 ^ c1 ^ k0, n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  U32x4 out;
  out.v[0] = c0;
  out.v[1] = c1;
  out.v[2] = c2;
  out.v[3] = c3;
  return out;
}

// Uniform in [0, 1) with 24 random bits: exact in fp32, so P(u < p) = p up to
// the 2^-24 grid whatever the state type.
SNN_HD SNN_INLINE float uniform24(unsigned int r) { return (float)(r >> 8) * 5.9604644775390625e-08f; }

}  // namespace snn
