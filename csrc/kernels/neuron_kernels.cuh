// __global__ bodies of the neuron kernels. One thread owns one neuron and
// walks its time loop with the state in registers: no communication inside a
// block, which is both the fast design and what lets the host emulation run
// these exact bodies (grid-stride loop over neurons for any grid size).
// Included by the nvcc launchers, compiled by NVRTC for the CuPy path, and by
// g++ through python_tests/emulation/host_shim.h.
#pragma once
#include "common.h"
#include "neuron.h"
#include "params.h"

namespace snn {

template <int MODEL, int RESET, typename T>
__global__ void neuron_fwd_kernel(const FwdParams p) {
  typedef typename StateOf<T>::type S;
  const Coeffs<S> c = make_coeffs<S>(p, 0.0);
  const T* __restrict__ x = (const T*)p.x;
  const S* __restrict__ v0 = (const S*)p.v0;
  T* __restrict__ spikes = (T*)p.spikes;
  S* __restrict__ saved = (S*)p.saved;
  S* __restrict__ v_seq = (S*)p.v_seq;
  S* __restrict__ v_last = (S*)p.v_last;
  const i64 N = p.N;
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 n = (i64)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += stride) {
    S v = v0 ? v0[n] : (S)p.v_init;
    const T* xn = x + n;
    for (i64 t = 0; t < p.T; ++t) {
      S sv;
      const S s = forward_step<MODEL, RESET, S>(c, v, to_state(xn[t * p.x_tstride]), sv);
      const i64 o = t * N + n;
      spikes[o] = store_as<T>(s);
      if (saved) saved[o] = sv;
      if (v_seq) v_seq[o] = v;
    }
    v_last[n] = v;
  }
}

template <int MODEL, int RESET, int SG, typename T>
__global__ void neuron_bwd_kernel(const BwdParams p) {
  typedef typename StateOf<T>::type S;
  Coeffs<S> c = make_coeffs<S>(p, p.sg_param);
  c.detach_reset = p.detach_reset != 0;
  const T* __restrict__ gs = (const T*)p.grad_spikes;
  const S* __restrict__ gv = (const S*)p.grad_v_seq;
  const S* __restrict__ gv_last = (const S*)p.grad_v_last;
  const S* __restrict__ saved = (const S*)p.saved;
  const S* __restrict__ v0 = (const S*)p.v0;
  T* __restrict__ gx = (T*)p.grad_x;
  S* __restrict__ gv0 = (S*)p.grad_v0;
  const i64 N = p.N;
  const i64 T_ = p.T;
  const i64 stride = (i64)blockDim.x * gridDim.x;
  for (i64 n = (i64)blockIdx.x * blockDim.x + threadIdx.x; n < N; n += stride) {
    S carry = gv_last ? gv_last[n] : S(0);
    S gx_sum = S(0);
    const S u0 = MODEL == MODEL_LEAKY ? (v0 ? v0[n] : (S)p.v_init) : S(0);
    S cur = saved[(T_ - 1) * N + n];
    for (i64 t = T_ - 1; t >= 0; --t) {
      const i64 o = t * N + n;
      S prev = S(0);
      if (MODEL == MODEL_LEAKY) prev = t > 0 ? saved[o - N] : u0;
      const S g_s = gs ? to_state(gs[o]) : S(0);
      const S g_v = gv ? gv[o] : S(0);
      const S g_x = backward_step<MODEL, RESET, SG, S>(c, cur, prev, g_s, g_v, carry);
      if (p.const_input) {
        gx_sum += g_x;
      } else {
        gx[o] = store_as<T>(g_x);
      }
      if (MODEL == MODEL_LEAKY) {
        cur = prev;
      } else if (t > 0) {
        cur = saved[o - N];
      }
    }
    if (p.const_input) gx[n] = store_as<T>(gx_sum);
    gv0[n] = carry;
  }
}

}  // namespace snn
