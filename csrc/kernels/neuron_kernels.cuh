// __global__ bodies of the neuron kernels. One thread owns one neuron and
// walks its time loop with the state in registers, kChunk steps at a time:
// the chunk's loads are issued together (independent of the recurrence), then
// the recurrence runs on registers. No communication inside a block, which is
// both the fast design and what lets the host emulation run these exact
// bodies (grid-stride loop over neurons for any grid size).
// Included by the nvcc launchers, compiled by NVRTC for the CuPy path, and by
// g++ through python_tests/emulation/host_shim.h.
#pragma once
#include "common.h"
#include "neuron.h"
#include "params.h"

namespace snn {

// Resident blocks per SM the register allocation must allow: 4 x 256 threads
// caps fp32/16-bit kernels at 64 registers (50 % occupancy on sm_80/sm_90).
// fp64 state needs register pairs: at 3 blocks (a cap of 80 registers) every
// fp64 backward spilled (up to 40 B of stack per thread, local-memory loads
// and stores inside the time loop); at 2 (128 registers) none does, using
// 72-98 registers, which leaves 2-3 resident blocks (25-37.5 %) on sm_90
// (benchmarks/results/gpu_static_report.md). Which of the two runs faster has
// not been measured on a GPU; fp64 has no speed target, and spilling in the
// time loop was the known defect.
template <typename T>
struct MinBlocks {
  static const int value = sizeof(typename StateOf<T>::type) == 8 ? 2 : 4;
};

template <int MODEL, int RESET, typename T>
__global__ void __launch_bounds__(kBlockThreads, MinBlocks<T>::value) neuron_fwd_kernel(const FwdParams p) {
  typedef typename StateOf<T>::type S;
  const Coeffs<S> base = make_coeffs<S>(p, 0.0);
  const T* __restrict__ x = (const T*)p.x;
  const S* __restrict__ v0 = (const S*)p.v0;
  T* __restrict__ spikes = (T*)p.spikes;
  S* __restrict__ saved = (S*)p.saved;
  S* __restrict__ v_seq = (S*)p.v_seq;
  S* __restrict__ v_last = (S*)p.v_last;
  S* __restrict__ ckpt = (S*)p.ckpt;
  const i64 N = p.N, ts = seq_step(p.io, N);
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 n = (i64)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += stride) {
    Coeffs<S> c = base;
    neuron_coeffs<MODEL>(c, p, n);
    S v = v0 ? v0[n] : (S)p.v_init;
    const i64 io = seq_base(p.io, n);
    // A constant input is read once: x [N] in neuron order.
    const S xc = p.x_tstride == 0 ? to_state(x[n]) : S(0);
    for (i64 t0 = 0; t0 < p.T; t0 += kChunk) {
      const int len = p.T - t0 < kChunk ? (int)(p.T - t0) : kChunk;
      if (ckpt) ckpt[(t0 / kChunk) * N + n] = v;
      S xs[kChunk];
#pragma unroll
      for (int k = 0; k < kChunk; ++k)
        if (k < len) xs[k] = p.x_tstride == 0 ? xc : to_state(x[io + (t0 + k) * p.x_tstride]);
#pragma unroll
      for (int k = 0; k < kChunk; ++k) {
        if (k < len) {
          S sv;
          const S s = forward_step<MODEL, RESET, S>(c, v, xs[k], sv);
          const i64 o = io + (t0 + k) * ts;
          if (p.spikes_u8) {
            ((unsigned char*)p.spikes)[o] = s != S(0) ? 1 : 0;
          } else {
            spikes[o] = store_as<T>(s);
          }
          if (saved) saved[o] = sv;
          if (v_seq) v_seq[o] = v;
        }
      }
    }
    v_last[n] = v;
  }
}

template <int MODEL, int RESET, int SG, typename T>
__global__ void __launch_bounds__(kBlockThreads, MinBlocks<T>::value) neuron_bwd_kernel(const BwdParams p) {
  typedef typename StateOf<T>::type S;
  Coeffs<S> base = make_coeffs<S>(p, p.sg_param);
  base.detach_reset = p.detach_reset != 0;
  base.learn_decay = p.grad_decay != nullptr;
  base.learn_th = p.grad_th != nullptr;
  const T* __restrict__ gs = (const T*)p.grad_spikes;
  const S* __restrict__ gv = (const S*)p.grad_v_seq;
  const S* __restrict__ gv_last = (const S*)p.grad_v_last;
  const S* __restrict__ saved = (const S*)p.saved;
  const S* __restrict__ ckpt = (const S*)p.ckpt;
  const T* __restrict__ x = (const T*)p.x;
  const S* __restrict__ v0 = (const S*)p.v0;
  T* __restrict__ gx = (T*)p.grad_x;
  S* __restrict__ gv0 = (S*)p.grad_v0;
  S* __restrict__ g_dec = (S*)p.grad_decay;
  S* __restrict__ g_thr = (S*)p.grad_th;
  // The state before each step: Leaky's reset reads it, and so does the
  // ParametricLIF decay gradient (with X_t as well under decay_input).
  const bool need_prev = MODEL == MODEL_LEAKY || (MODEL == MODEL_LIF && base.learn_decay);
  const bool x_in_grad = MODEL == MODEL_LIF && base.learn_decay && base.decay_input;
  const bool need_x = ckpt != nullptr || x_in_grad;
  const i64 N = p.N, ts = seq_step(p.io, N);
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 n = (i64)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += stride) {
    Coeffs<S> c = base;
    neuron_coeffs<MODEL>(c, p, n);
    const i64 io = seq_base(p.io, n);
    // A constant input is read once: x [N] in neuron order (or absent).
    const S xc = (x && p.x_tstride == 0) ? to_state(x[n]) : S(0);
    S carry = gv_last ? gv_last[n] : S(0);
    S gx_sum = S(0), gd_sum = S(0), gt_sum = S(0);
    for (i64 ci = num_chunks(p.T) - 1; ci >= 0; --ci) {
      const i64 t0 = ci * kChunk;
      const int len = p.T - t0 < kChunk ? (int)(p.T - t0) : kChunk;
      // The chunk's saved values: loaded, or rebuilt bit for bit from the
      // checkpoint with the forward's own step function.
      S hs[kChunk];
      S xs[kChunk];
      if (need_x) {
#pragma unroll
        for (int k = 0; k < kChunk; ++k)
          if (k < len) xs[k] = p.x_tstride == 0 ? xc : to_state(x[io + (t0 + k) * p.x_tstride]);
      }
      // The state before the chunk (its checkpoint in recompute mode).
      S before = S(0);
      if (ckpt) {
        S v = ckpt[ci * N + n];
        before = v;
#pragma unroll
        for (int k = 0; k < kChunk; ++k)
          if (k < len) forward_step<MODEL, RESET, S>(c, v, xs[k], hs[k]);
      } else {
#pragma unroll
        for (int k = 0; k < kChunk; ++k)
          if (k < len) hs[k] = saved[io + (t0 + k) * ts];
        if (need_prev)
          before =
              t0 > 0 ? state_from_saved<MODEL, RESET, S>(c, saved[io + (t0 - 1) * ts]) : (v0 ? v0[n] : (S)p.v_init);
      }
#pragma unroll
      for (int k = kChunk - 1; k >= 0; --k) {
        if (k < len) {
          const i64 o = io + (t0 + k) * ts;
          const S prev =
              need_prev ? (k > 0 ? state_from_saved<MODEL, RESET, S>(c, hs[k > 0 ? k - 1 : 0]) : before) : S(0);
          const S xv = x_in_grad ? xs[k] : S(0);
          const S g_s = gs ? to_state(gs[o]) : S(0);
          const S g_v = gv ? gv[o] : S(0);
          const S g_x = backward_step<MODEL, RESET, SG, S>(c, hs[k], prev, xv, g_s, g_v, carry, gd_sum, gt_sum);
          if (p.const_input) {
            gx_sum += g_x;
          } else {
            gx[o] = store_as<T>(g_x);
          }
        }
      }
    }
    if (p.const_input) gx[n] = store_as<T>(gx_sum);
    gv0[n] = carry;
    if (g_dec) g_dec[n] = gd_sum;
    if (g_thr) g_thr[n] = gt_sum;
  }
}

}  // namespace snn
