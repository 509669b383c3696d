// Poisson (Bernoulli-per-step) rate encoder: [N] intensities -> [T, N] spikes.
// Element e = t * N + n fires when uniform(e) < x[n]; uniform(e) is lane
// e % 4 of Philox(counter = e / 4, key). One work item per group of four
// elements, the same groups on CPU and GPU, so both give the same spikes.
#pragma once
#include "common.h"
#include "rng.h"

namespace snn {

struct PoissonParams {
  i64 T;
  i64 N;
  const void* x;  // T-typed [N]
  void* out;      // T-typed [T, N]
  // The key is read through seed_ptr (an int64 in the kernel's memory space) when it is set:
  // a key that torch's generator drew on the device, so a captured CUDA graph reads the fresh
  // key of every replay instead of the one baked in at capture. Null: `seed` is the key.
  const void* seed_ptr;
  unsigned long long seed;
};

// Work items of a launch: groups of four elements.
SNN_HD SNN_INLINE i64 poisson_groups(const PoissonParams& p) { return (p.T * p.N + 3) / 4; }

SNN_HD SNN_INLINE unsigned long long poisson_key(const PoissonParams& p) {
  return p.seed_ptr ? (unsigned long long)*(const long long*)p.seed_ptr : p.seed;
}

// Group g covers elements 4g .. 4g+3; n must be (4g) % N (callers walking
// consecutive groups step it instead of dividing). key: poisson_key(p), read
// once per thread.
template <typename T>
SNN_HD SNN_INLINE void poisson_group(const PoissonParams& p, i64 g, i64 n, unsigned long long key) {
  const T* x = (const T*)p.x;
  T* out = (T*)p.out;
  const i64 total = p.T * p.N;
  const U32x4 r = philox4x32_10((unsigned long long)g, 0ull, key);
  const i64 e0 = g * 4;
  for (int k = 0; k < 4; ++k) {
    const i64 e = e0 + k;
    if (e >= total) break;
    const float prob = (float)to_state(x[n]);
    out[e] = store_as<T>(uniform24(r.v[k]) < prob ? 1.0f : 0.0f);
    if (++n == p.N) n = 0;
  }
}

}  // namespace snn
