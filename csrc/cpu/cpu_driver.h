// Pieces shared by the CPU drivers (neuron_cpu.cpp, model_cpu.cpp): block
// sizes, scratch rows, streaming stores and 16-bit row conversions.
#pragma once
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "cpu_kernels.h"

namespace snn_cpu_driver {

using snn::i64;

// Neurons per block. A block walks all T rows of its neurons, so each step
// touches one row segment per tensor, rows N elements apart: segments must be
// long enough (16 KB of fp32) for the hardware prefetcher to stream them
// rather than paying a cache miss at every row start, and short enough that
// the block's state rows stay in L2.
constexpr i64 kBlock = 4096;

// Neurons per block when no [T, N] tensor streams through memory at each
// step (a constant input read from cache, byte spikes, checkpoints, and in
// the backward a readout instead of a grad_spikes tensor): then nothing needs
// the prefetcher, and the block's ~20 scratch rows should stay close to L1.
// Measured on tutorial5's hidden layer (128 x 1000 neurons, T = 25, 2 cores):
// forward 0.82-0.97 ms at 4096 -> 0.47-0.52 at 512, backward 2.5-2.9 -> 2.0;
// with streams (LIF on [64, 64, 4096]) 512 was 4-12 % slower than 4096.
constexpr i64 kBlockCached = 512;

// Block length for N neurons: kBlock (kBlockCached when nothing streams), or
// less so that every thread gets a block when N is small.
inline i64 block_len(i64 N, bool streams = true) {
  const i64 nt = std::max<i64>(1, at::get_num_threads());
  i64 b = (N + nt - 1) / nt;
  b = (b + 63) / 64 * 64;
  return std::max<i64>(64, std::min<i64>(streams ? kBlock : kBlockCached, b));
}

// Blocks of at most blk neurons that never straddle a run of the sequence
// layout (params.h SeqLayout), so that each block's row of every [T, ...]
// tensor is contiguous at every step: time-major, one run of N; batch-first
// [B, T, ...], B runs of one sample's neurons each.
struct Block {
  i64 n0, len;  // neurons [n0, n0 + len): the offset into per-neuron tensors
  i64 io, xo;   // the row offsets at step 0 into the sequences and into x
};

struct Blocking {
  snn::SeqLayout l;
  bool const_x;  // x is [N] (a constant input), in neuron order
  i64 run, blk, per_run, count;
  Blocking(i64 N, const snn::SeqLayout& layout, i64 blk_, bool const_x_) : l(layout), const_x(const_x_), blk(blk_) {
    run = l.run > 0 ? l.run : N;
    per_run = run > 0 ? (run + blk - 1) / blk : 0;
    count = run > 0 ? (N / run) * per_run : 0;
  }
  Block at(i64 i) const {
    const i64 g = i / per_run, f0 = (i % per_run) * blk;
    Block b;
    b.n0 = g * run + f0;
    b.len = std::min(blk, run - f0);
    b.io = l.run > 0 ? g * l.run_stride + f0 : b.n0;
    b.xo = const_x ? b.n0 : b.io;
    return b;
  }
};

// Per-thread scratch rows (too large for the stack at this block size).
template <typename S>
struct Scratch {
  std::vector<S> buf;
  explicit Scratch(int rows) : buf(size_t(rows) * kBlock + 64 / sizeof(S)) {}
  S* row(int i) {
    // 64-byte aligned rows for the vector loads.
    auto base = reinterpret_cast<uintptr_t>(buf.data());
    S* aligned = reinterpret_cast<S*>((base + 63) & ~uintptr_t(63));
    return aligned + size_t(i) * kBlock;
  }
};

// Row stores that bypass the cache (non-temporal): outputs are far larger
// than the caches and are not read again soon, so a normal store's
// read-for-ownership would add a third of the traffic. SSE2 is baseline
// x86-64, so this needs no ISA dispatch.
inline void stream_row(float* __restrict dst, const float* __restrict src, i64 len) {
#if defined(__SSE2__)
  i64 j = 0;
  for (; j < len && (reinterpret_cast<uintptr_t>(dst + j) & 15); ++j) dst[j] = src[j];
  for (; j + 4 <= len; j += 4) _mm_stream_ps(dst + j, _mm_loadu_ps(src + j));
  for (; j < len; ++j) dst[j] = src[j];
#else
  std::memcpy(dst, src, len * sizeof(float));
#endif
}
inline void stream_row(double* __restrict dst, const double* __restrict src, i64 len) {
#if defined(__SSE2__)
  i64 j = 0;
  for (; j < len && (reinterpret_cast<uintptr_t>(dst + j) & 15); ++j) dst[j] = src[j];
  for (; j + 2 <= len; j += 2) _mm_stream_pd(dst + j, _mm_loadu_pd(src + j));
  for (; j < len; ++j) dst[j] = src[j];
#else
  std::memcpy(dst, src, len * sizeof(double));
#endif
}
inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

// 16-bit storage rows <-> fp32 state rows, through the variant's loops.
template <typename T, typename S>
inline void load_row(const snn_cpu::Kernels& k, const T* src, i64 len, S* dst) {
  if constexpr (std::is_same<T, S>::value) {
    std::memcpy(dst, src, len * sizeof(S));
  } else {
    k.elem<T>().load(src, len, dst);
  }
}
template <typename T, typename S>
inline void store_row(const snn_cpu::Kernels& k, const S* src, i64 len, T* dst) {
  if constexpr (std::is_same<T, S>::value) {
    std::memcpy(dst, src, len * sizeof(S));
  } else {
    k.elem<T>().store(src, len, dst);
  }
}

// Input row t of x as state-typed values (converted into buf unless T == S).
template <typename T, typename S>
inline const S* x_row(const snn_cpu::Kernels& k, const T* x, i64 off, i64 len, S* buf) {
  if constexpr (std::is_same<T, S>::value) {
    return x + off;
  } else {
    load_row(k, x + off, len, buf);
    return buf;
  }
}

}  // namespace snn_cpu_driver
