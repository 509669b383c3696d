// Pieces shared by the CPU drivers (neuron_cpu.cpp, model_cpu.cpp): block
// sizes, scratch rows, streaming stores and 16-bit row conversions.
#pragma once
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <string>
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

// NeuronLinear's backward: the spike gradient of step t is gy_t W (gy
// [T, R, K], W [K, F], neurons n = r * F + f), computed per row segment by
// the driver (readout_row) instead of being materialised as a [T, R, F]
// tensor by a matrix product and read back (for tutorial5's 1000 -> 10
// readout: 12.8 MB written and read per step for 10 multiply-adds per
// neuron-step).
template <typename S>
struct Readout {
  const S* gy;
  const S* w;
  i64 K, F;
};

struct ReadoutArgs {
  bool on = false;
  at::Tensor gy, w;  // contiguous
  template <typename S>
  Readout<S> get() const {
    return {gy.data_ptr<S>(), w.data_ptr<S>(), w.size(0), w.size(1)};
  }
};

// Whether the backward ops were given a readout, and the checks that need no
// shapes (made before the op's own, so that they name the readout).
inline bool check_readout_flags(const c10::optional<at::Tensor>& readout_grad,
                                const c10::optional<at::Tensor>& readout_weight,
                                const c10::optional<at::Tensor>& grad_spikes, bool batch_first) {
  const bool on = readout_grad.has_value() && readout_grad->defined();
  TORCH_CHECK_VALUE(on == (readout_weight.has_value() && readout_weight->defined()),
                    "snn_cuda: readout_grad and readout_weight must be given together");
  if (!on) return false;
  TORCH_CHECK_VALUE(!batch_first, "snn_cuda: readout_grad needs the time-major layout (batch_first=False)");
  TORCH_CHECK_VALUE(!(grad_spikes.has_value() && grad_spikes->defined()),
                    "snn_cuda: grad_spikes must be None when readout_grad is given (it is computed from it)");
  return true;
}

// The readout_grad / readout_weight tensors of the backward ops (given when
// `on`, check_readout_flags' answer), checked against the step shape `rest`
// (its last dim the Linear's features) and the T steps of the sequence.
inline ReadoutArgs check_readout(bool on, const c10::optional<at::Tensor>& readout_grad,
                                 const c10::optional<at::Tensor>& readout_weight, at::ScalarType x_dtype,
                                 const at::Device& dev, int64_t T, const std::vector<int64_t>& rest) {
  ReadoutArgs a;
  a.on = on;
  if (!a.on) return a;
  TORCH_CHECK_TYPE(x_dtype == at::kFloat || x_dtype == at::kDouble,
                   "snn_cuda: readout_grad needs float32 or float64 spikes (x_dtype), got ", x_dtype);
  const at::Tensor& g = *readout_grad;
  const at::Tensor& wt = *readout_weight;
  TORCH_CHECK_TYPE(g.scalar_type() == x_dtype && wt.scalar_type() == x_dtype, "snn_cuda: readout_grad and ",
                   "readout_weight must be ", x_dtype, ", got ", g.scalar_type(), " and ", wt.scalar_type());
  TORCH_CHECK_VALUE(g.device() == dev && wt.device() == dev, "snn_cuda: readout_grad and readout_weight must be on ",
                    dev);
  TORCH_CHECK_VALUE(!rest.empty(), "snn_cuda: readout needs neurons with a feature dim, got steps of shape ",
                    at::IntArrayRef(rest));
  const int64_t F = rest.back();
  TORCH_CHECK_VALUE(wt.dim() == 2 && wt.size(1) == F, "snn_cuda: readout_weight must be [K, ", F, "], got ",
                    wt.sizes());
  std::vector<int64_t> want = rest;
  want.insert(want.begin(), T);
  want.back() = wt.size(0);
  TORCH_CHECK_VALUE(g.sizes().vec() == want, "snn_cuda: readout_grad must have shape ", at::IntArrayRef(want),
                    ", got ", g.sizes());
  a.gy = g.contiguous();
  a.w = wt.contiguous();
  return a;
}

}  // namespace snn_cpu_driver
