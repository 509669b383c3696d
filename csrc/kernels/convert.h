// Spike <-> byte conversions (the ops binary_to_uint8 and uint8_to): launch
// parameters and the per-element rules, shared by the CUDA kernels
// (convert_kernels.cuh, also compiled by the CuPy path) and the host
// emulation; csrc/host.h fills the structs.
#pragma once
#include "common.h"

namespace snn {

// Elements per work item: a thread moves four neighbours with one vector
// load and one vector store when both buffers allow it (see convert_kernels.cuh).
static const int kConvertVec = 4;

struct NarrowParams {
  i64 n;
  const void* x;    // T [n]
  void* out;        // uint8 [n]: 1 where x != 0 (NaN included), else 0
  int* not_binary;  // int [1], set to 1 when some element is neither 0 nor 1;
                    // null: narrow without checking (the producer vouches)
};

struct WidenParams {
  i64 n;
  const void* x;  // uint8 [n]; a nonzero byte is a spike
  void* out;      // T [n]: 1 or 0
};

// Compared in the state type, so that an fp64 value such as 1e-300 or
// 1 + 2^-40 is neither 0 nor 1 (a float cast would round it to one of them).
template <typename T>
SNN_HD SNN_INLINE unsigned char narrow_one(T v, int& bad) {
  typedef typename StateOf<T>::type S;
  const S s = to_state(v);
  bad |= (int)((s != S(0)) & (s != S(1)));
  return (unsigned char)(s != S(0));
}

template <typename T>
SNN_HD SNN_INLINE T widen_one(unsigned char b) {
  return store_as<T>(b ? 1.0f : 0.0f);
}

// Work items (groups of kConvertVec elements) for n elements.
SNN_HD SNN_INLINE i64 convert_groups(i64 n) { return (n + kConvertVec - 1) / kConvertVec; }

}  // namespace snn
