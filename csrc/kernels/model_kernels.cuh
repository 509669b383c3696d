// __global__ bodies of the declared multi-state models (models.h), written
// once for every model of model_list.h. Same design as neuron_kernels.cuh:
// one thread owns one neuron and walks its time loop with the states and
// parameters in registers, kChunk steps at a time (the chunk's loads issued
// before the recurrence uses any); grid-stride over neurons, so that the host
// emulation runs these exact bodies with any grid. The backward replays each
// chunk from its checkpoint with the forward's own step (bit for bit the
// forward's states) and keeps the states before each step of the chunk (or
// of half of it, BwdSpan) in registers; the parameter gradients are per-neuron sums in registers,
// written once per neuron (no atomics: deterministic for any grid).
// Included by the nvcc launchers (csrc/cuda/model_*.cu), compiled by NVRTC
// and by g++ through python_tests/emulation/host_shim.h.
#pragma once
#include "common.h"
#include "models.h"
#include "neuron_kernels.cuh"  // MinBlocks: the same register budget as the one-state kernels

namespace snn {

template <class M, typename S>
SNN_HD SNN_INLINE void model_load_params(const S* __restrict__ params, i64 P, i64 n, S* prm) {
  const i64 q = n % P;
#pragma unroll
  for (int k = 0; k < M::kParams; ++k) prm[k] = params[k * P + q];
}

template <class M, int V, typename T>
__global__ void __launch_bounds__(kBlockThreads, MinBlocks<T>::value) model_fwd_kernel(const MFwdParams p) {
  typedef typename StateOf<T>::type S;
  constexpr int NS = M::kStates;
  // The forward reads neither the surrogate nor detach_reset.
  const MCfg<S> c = make_mcfg<S>(0.0, 0);
  const T* __restrict__ x = (const T*)p.x;
  const S* __restrict__ params = (const S*)p.params;
  const S* __restrict__ state0 = (const S*)p.state0;
  T* __restrict__ spikes = (T*)p.spikes;
  S* __restrict__ seq = (S*)p.state_seq;
  S* __restrict__ last = (S*)p.state_last;
  S* __restrict__ ckpt = (S*)p.ckpt;
  const i64 N = p.N, ts = seq_step(p.io, N);
  const i64 TN = p.T * N;  // one state's [T, ...] block of state_seq / grad_state_seq
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 n = (i64)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += stride) {
    const i64 io = seq_base(p.io, n);
    // A constant input is read once: x [N] in neuron order.
    const S xc = p.x_tstride == 0 ? to_state(x[n]) : S(0);
    S prm[M::kParams];
    model_load_params<M, S>(params, p.P, n, prm);
    S st[NS];
    if (state0) {
#pragma unroll
      for (int q = 0; q < NS; ++q) st[q] = state0[q * N + n];
    } else {
      M::template init<V, S>(prm, st);
    }
    for (i64 t0 = 0; t0 < p.T; t0 += kChunk) {
      const int len = p.T - t0 < kChunk ? (int)(p.T - t0) : kChunk;
      if (ckpt) {
#pragma unroll
        for (int q = 0; q < NS; ++q) ckpt[((t0 / kChunk) * NS + q) * N + n] = st[q];
      }
      S xs[kChunk];
#pragma unroll
      for (int k = 0; k < kChunk; ++k)
        if (k < len) xs[k] = p.x_tstride == 0 ? xc : to_state(x[io + (t0 + k) * p.x_tstride]);
#pragma unroll
      for (int k = 0; k < kChunk; ++k) {
        if (k < len) {
          const S s = M::template forward<V, S>(c, prm, st, xs[k]);
          const i64 o = io + (t0 + k) * ts;
          if (p.spikes_u8) {
            ((unsigned char*)p.spikes)[o] = (unsigned char)(int)s;
          } else {
            spikes[o] = store_as<T>(s);
          }
          if (seq) {
#pragma unroll
            for (int q = 0; q < NS; ++q) seq[q * TN + o] = st[q];
          }
        }
      }
    }
#pragma unroll
    for (int q = 0; q < NS; ++q) last[q * N + n] = st[q];
  }
}

// Steps of a chunk whose states-before-the-step the backward holds in
// registers at once: the whole chunk while they take less than a quarter of
// the register cap that MinBlocks sets, else half of it (the chunk's first
// half then replays twice: a few flops per step, its inputs re-read from L1).
// At a whole chunk, AdLif (3 states, 5 parameter gradients) spilled up to
// 56 B per thread in the time loop on sm_90, in fp32 and in fp64; at half,
// fp64 spills nothing and fp32 4-24 B for 3 of its 9 surrogates, once per
// span. Two states fill exactly a quarter: at a whole chunk the CUBALIF
// hard-reset backward spilled 16 B (fp32) once the batch-first offset joined
// the loop's registers; at half no two-state model spills.
template <class M, typename T>
struct BwdSpan {
  static const int words = M::kStates * kChunk * (int)(sizeof(typename StateOf<T>::type) / 4);
  static const int cap = 65536 / (kBlockThreads * MinBlocks<T>::value);
  static const int value = words * 4 < cap ? kChunk : kChunk / 2;
};

// SG: a surrogate, or SG_ANY for the one p.surrogate names (the nvcc
// launchers: one backward per model and variant).
template <class M, int V, int SG, typename T>
__global__ void __launch_bounds__(kBlockThreads, MinBlocks<T>::value) model_bwd_kernel(const MBwdParams p) {
  typedef typename StateOf<T>::type S;
  constexpr int NS = M::kStates, NP = M::kParams, H = BwdSpan<M, T>::value;
  const MCfg<S> c = make_mcfg<S>(p.sg_param, p.detach_reset, p.surrogate);
  const T* __restrict__ x = (const T*)p.x;
  const S* __restrict__ params = (const S*)p.params;
  const S* __restrict__ ckpt = (const S*)p.ckpt;
  const T* __restrict__ gs = (const T*)p.grad_spikes;
  const S* __restrict__ gseq = (const S*)p.grad_state_seq;
  const S* __restrict__ glast = (const S*)p.grad_state_last;
  T* __restrict__ gx = (T*)p.grad_x;
  S* __restrict__ gst0 = (S*)p.grad_state0;
  S* __restrict__ gprm = (S*)p.grad_params;
  const i64 N = p.N, ts = seq_step(p.io, N);
  const i64 TN = p.T * N;  // one state's [T, ...] block of state_seq / grad_state_seq
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 n = (i64)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += stride) {
    const i64 io = seq_base(p.io, n);
    // A constant input is read once: x [N] in neuron order.
    const S xc = p.x_tstride == 0 ? to_state(x[n]) : S(0);
    S prm[NP];
    model_load_params<M, S>(params, p.P, n, prm);
    S carry[NS], gp[NP];
#pragma unroll
    for (int q = 0; q < NS; ++q) carry[q] = glast ? glast[q * N + n] : S(0);
#pragma unroll
    for (int q = 0; q < NP; ++q) gp[q] = S(0);
    S gx_sum = S(0);
    for (i64 ci = num_chunks(p.T) - 1; ci >= 0; --ci) {
      const i64 t0 = ci * kChunk;
      const int len = p.T - t0 < kChunk ? (int)(p.T - t0) : kChunk;
      // The chunk in spans of H steps, last span first: each replays the
      // chunk from its checkpoint up to the span's end, keeping the states
      // before the span's steps, then runs the span's backward steps. The
      // span index is unrolled, so prev[][] is indexed by constants only.
#pragma unroll
      for (int span = kChunk / H - 1; span >= 0; --span) {
        const int h0 = span * H;
        if (h0 < len) {
          S prev[H][NS];
          {
            S xs[kChunk];
#pragma unroll
            for (int k = 0; k < h0 + H; ++k)
              if (k < len) xs[k] = p.x_tstride == 0 ? xc : to_state(x[io + (t0 + k) * p.x_tstride]);
            S st[NS];
#pragma unroll
            for (int q = 0; q < NS; ++q) st[q] = ckpt[(ci * NS + q) * N + n];
#pragma unroll
            for (int k = 0; k < h0; ++k) M::template forward<V, S>(c, prm, st, xs[k]);
#pragma unroll
            for (int j = 0; j < H; ++j) {
              if (h0 + j < len) {
#pragma unroll
                for (int q = 0; q < NS; ++q) prev[j][q] = st[q];
                M::template forward<V, S>(c, prm, st, xs[h0 + j]);
              }
            }
          }
#pragma unroll
          for (int j = H - 1; j >= 0; --j) {
            if (h0 + j < len) {
              const i64 t = t0 + h0 + j, o = io + t * ts;
              const S g_s = gs ? to_state(gs[o]) : S(0);
              S g_seq[NS];
#pragma unroll
              for (int q = 0; q < NS; ++q) g_seq[q] = gseq ? gseq[q * TN + o] : S(0);
              // x_t read again rather than kept from the replay: held across
              // the backward steps next to prev[][], the chunk's inputs made
              // the fp32 Synaptic backward spill 4-20 B per thread in the
              // time loop at the 64-register cap (sm_90); the line was just
              // read by the replay.
              const S x_t = p.x_tstride == 0 ? xc : to_state(x[io + t * p.x_tstride]);
              const S g_x = backward_replay<M, V, SG, S>(c, prm, prev[j], x_t, g_s, g_seq, carry, gp);
              if (p.const_input) {
                gx_sum += g_x;
              } else {
                gx[o] = store_as<T>(g_x);
              }
            }
          }
        }
      }
    }
    if (p.const_input) gx[n] = store_as<T>(gx_sum);
#pragma unroll
    for (int q = 0; q < NS; ++q) gst0[q * N + n] = carry[q];
    if (gprm) {
#pragma unroll
      for (int q = 0; q < NP; ++q) gprm[q * N + n] = gp[q];
    }
  }
}

}  // namespace snn
