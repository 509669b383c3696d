// CPU kernels: blocks of neurons in parallel (at::parallel_for), time outer
// and contiguous neurons inner so the per-step row loop vectorises. The row
// loops live in cpu_kernels_impl.h, compiled once per ISA variant; the
// drivers here take the variant's table (snn_cpu::kernels()).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <vector>
#include <cstdint>

#include "../host.h"
#include "../kernels/neuron.h"

#include "cpu_driver.h"
#include "cpu_kernels.h"

namespace {

using namespace snn;

using namespace snn_cpu_driver;

// The row kernels of one state type, from the variant's table
// (cpu_kernels.h), for one model x reset combination and surrogate.
template <typename S>
struct Rows {
  snn_cpu::FwdRow<S> fwd;
  snn_cpu::FwdRowP<S> fwd_p;
  snn_cpu::StateRow<S> state;
  snn_cpu::BwdRow<S> bwd;
  snn_cpu::BwdRowP<S> bwd_p;
  snn_cpu::ReadoutRow<S> readout;
  snn_cpu::BytesRow<S> store_bytes;
};

// combo: snn_host::combo_index (ParametricLIF shares LIF's); plif selects the
// ParametricLIF rows; sg < 0: forward only.
template <typename S>
Rows<S> rows_for(const snn_cpu::Kernels& k, int combo, bool plif, int sg) {
  const snn_cpu::NeuronRows<S>& t = k.rows<S>();
  Rows<S> r{t.fwd[combo], plif ? t.fwd_plif[combo] : t.fwd_p[combo], t.state[combo], nullptr, nullptr, t.readout,
            t.store_bytes};
  if (sg >= 0 && sg < SG_COUNT) {
    r.bwd = t.bwd[sg][combo];
    r.bwd_p = plif ? t.bwd_plif[sg][combo] : t.bwd_p[sg][combo];
  }
  return r;
}

// The block's per-neuron parameter rows: element n0 + j of the [P] tensors
// (or the scalar coefficient when a parameter is not per-neuron).
template <typename S, typename Prm>
void fill_param_rows(const Prm& p, const Coeffs<S>& c, bool leaky, i64 n0, i64 len, S* pd, S* pt) {
  const S* dp = (const S*)p.decay_param;
  const S* tp = (const S*)p.th_param;
  const S d0 = leaky ? c.beta : c.tau;
  i64 k = p.P > 0 ? n0 % p.P : 0;
  for (i64 j = 0; j < len; ++j) {
    pd[j] = dp ? dp[k] : d0;
    pt[j] = tp ? tp[k] : c.v_th;
    if (++k == p.P) k = 0;
  }
}

template <typename T>
void fwd_driver(const snn_cpu::Kernels& k, const FwdParams& p, bool leaky,
                const Rows<typename StateOf<T>::type>& rows) {
  typedef typename StateOf<T>::type S;
  constexpr bool direct = std::is_same<T, S>::value;
  const Coeffs<S> c = make_coeffs<S>(p, 0.0);
  const bool pv = p.decay_param || p.th_param;
  const bool streams = p.x_tstride != 0 || !p.spikes_u8 || p.saved || p.v_seq;
  const i64 N = p.N, ts = seq_step(p.io, N);
  const Blocking blocks(N, p.io, block_len(N, streams), p.x_tstride == 0);
  const T* x = (const T*)p.x;
  const S* v0 = (const S*)p.v0;
  T* spikes = (T*)p.spikes;
  uint8_t* spikes8 = p.spikes_u8 ? (uint8_t*)p.spikes : nullptr;
  S* saved = (S*)p.saved;
  S* v_seq = (S*)p.v_seq;
  S* v_last = (S*)p.v_last;
  S* ckpt = (S*)p.ckpt;
  at::parallel_for(0, blocks.count, 1, [&](int64_t b0, int64_t b1) {
    Scratch<S> scratch(pv ? 6 : 4);
    S *v = scratch.row(0), *xb = scratch.row(1), *sb = scratch.row(2), *hb = scratch.row(3);
    S *pd = pv ? scratch.row(4) : nullptr, *pt = pv ? scratch.row(5) : nullptr;
    for (i64 b = b0; b < b1; ++b) {
      const Block bk = blocks.at(b);
      const i64 n0 = bk.n0, len = bk.len;
      if (pv) fill_param_rows(p, c, leaky, n0, len, pd, pt);
      for (i64 j = 0; j < len; ++j) v[j] = v0 ? v0[n0 + j] : (S)p.v_init;
      for (i64 t = 0; t < p.T; ++t) {
        const i64 o = bk.io + t * ts;
        if (ckpt && t % kChunk == 0) std::memcpy(ckpt + (t / kChunk) * N + n0, v, len * sizeof(S));
        const T* xr = x + t * p.x_tstride + bk.xo;
        const S* xs;
        if constexpr (direct) {
          xs = xr;
        } else {
          load_row(k, xr, len, xb);
          xs = xb;
        }
        if (pv) {
          rows.fwd_p(c, len, v, xs, hb, sb, pd, pt);
        } else {
          rows.fwd(c, len, v, xs, hb, sb);
        }
        if (spikes8) {
          rows.store_bytes(sb, len, spikes8 + o);
        } else if constexpr (direct) {
          stream_row(spikes + o, sb, len);
        } else {
          store_row(k, sb, len, spikes + o);
        }
        if (saved) stream_row(saved + o, hb, len);
        if (v_seq) std::memcpy(v_seq + o, v, len * sizeof(S));
      }
      std::memcpy(v_last + n0, v, len * sizeof(S));
    }
    stream_fence();
  });
}

template <typename T>
void bwd_driver(const snn_cpu::Kernels& k, const BwdParams& p, bool leaky, const Rows<typename StateOf<T>::type>& rows,
                const Readout<typename StateOf<T>::type>* ro = nullptr) {
  typedef typename StateOf<T>::type S;
  constexpr bool direct = std::is_same<T, S>::value;
  Coeffs<S> c = make_coeffs<S>(p, p.sg_param);
  c.detach_reset = p.detach_reset != 0;
  c.learn_decay = p.grad_decay != nullptr;
  c.learn_th = p.grad_th != nullptr;
  const bool pv = p.decay_param || p.th_param;
  // The state before each step: Leaky's reset, ParametricLIF's decay gradient.
  const bool need_prev = leaky || c.learn_decay;
  // X_t enters ParametricLIF's decay gradient under decay_input only (else 0).
  const bool need_x = !leaky && c.learn_decay && c.decay_input;
  const bool streams =
      (p.grad_spikes && !ro) || p.grad_v_seq || p.saved || !p.const_input || (p.x_tstride != 0 && (p.ckpt || need_x));
  const i64 N = p.N, ts = seq_step(p.io, N), blk = block_len(N, streams);
  const Blocking blocks(N, p.io, blk, p.x_tstride == 0);
  const T* gs = (const T*)p.grad_spikes;
  const S* gv = (const S*)p.grad_v_seq;
  const S* gvl = (const S*)p.grad_v_last;
  const S* saved = (const S*)p.saved;
  const S* ckpt = (const S*)p.ckpt;
  const T* x = (const T*)p.x;
  const S* v0 = (const S*)p.v0;
  T* gx = (T*)p.grad_x;
  S* gv0 = (S*)p.grad_v0;
  S* g_dec = (S*)p.grad_decay;
  S* g_thr = (S*)p.grad_th;
  const bool const_input = p.const_input != 0;
  at::parallel_for(0, blocks.count, 1, [&](int64_t b0, int64_t b1) {
    constexpr int kRows = 15;
    Scratch<S> scratch(kRows + kChunk);
    S *carry = scratch.row(0), *zero = scratch.row(1), *u0 = scratch.row(2), *gsb = scratch.row(3);
    S *gxb = scratch.row(4), *acc = scratch.row(5), *xb = scratch.row(6), *vb = scratch.row(7), *sb = scratch.row(8);
    S *pd = scratch.row(9), *pt = scratch.row(10), *gd = scratch.row(11), *gt = scratch.row(12);
    S *xtb = scratch.row(13), *vprev = scratch.row(14);
    S* hs[kChunk];
    for (int i = 0; i < kChunk; ++i) hs[i] = scratch.row(kRows + i);
    std::fill(zero, zero + blk, S(0));
    for (i64 b = b0; b < b1; ++b) {
      const Block bk = blocks.at(b);
      const i64 n0 = bk.n0, len = bk.len;
      if (pv) {
        fill_param_rows(p, c, leaky, n0, len, pd, pt);
        std::fill(gd, gd + len, S(0));
        std::fill(gt, gt + len, S(0));
      }
      for (i64 j = 0; j < len; ++j) {
        carry[j] = gvl ? gvl[n0 + j] : S(0);
        acc[j] = S(0);
        u0[j] = v0 ? v0[n0 + j] : (S)p.v_init;
      }
      for (i64 ci = num_chunks(p.T) - 1; ci >= 0; --ci) {
        const i64 t0 = ci * kChunk, steps = std::min<i64>(kChunk, p.T - t0);
        if (ckpt) {
          // Rebuild the chunk's saved values from its checkpoint, as the
          // forward computed them (same row kernel, same rounding).
          std::memcpy(vb, ckpt + ci * N + n0, len * sizeof(S));
          for (i64 s = 0; s < steps; ++s) {
            const S* xr = x_row(k, x, (t0 + s) * p.x_tstride + bk.xo, len, xb);
            if (pv) {
              rows.fwd_p(c, len, vb, xr, hs[s], sb, pd, pt);
            } else {
              rows.fwd(c, len, vb, xr, hs[s], sb);
            }
          }
        }
        for (i64 t = t0 + steps - 1; t >= t0; --t) {
          const i64 o = bk.io + t * ts;
          const S* sv = ckpt ? hs[t - t0] : saved + o;
          // The state before step t: the checkpoint or initial state, else
          // rebuilt from the saved value of step t-1 (Leaky: that value).
          const S* prev = zero;
          if (need_prev) {
            const bool is_state = ckpt ? t == t0 : t == 0;
            const S* src = ckpt ? (t > t0 ? hs[t - t0 - 1] : ckpt + ci * N + n0) : (t > 0 ? saved + o - ts : u0);
            if (is_state || leaky) {
              prev = src;
            } else {
              rows.state(c, len, src, pd, pt, vprev);
              prev = vprev;
            }
          }
          const S* gsr;
          if (ro) {
            rows.readout(ro->gy + t * (N / ro->F) * ro->K, ro->w, ro->K, ro->F, n0, len, gsb);
            gsr = gsb;
          } else if (!gs) {
            gsr = zero;
          } else if constexpr (direct) {
            gsr = gs + o;
          } else {
            load_row(k, gs + o, len, gsb);
            gsr = gsb;
          }
          const S* gvr = gv ? gv + o : zero;
          if (pv) {
            const S* xr = need_x ? x_row(k, x, t * p.x_tstride + bk.xo, len, xtb) : zero;
            rows.bwd_p(c, len, sv, prev, xr, gsr, gvr, carry, gxb, pd, pt, gd, gt);
          } else {
            rows.bwd(c, len, sv, prev, gsr, gvr, carry, gxb);
          }
          if (const_input) {
            for (i64 j = 0; j < len; ++j) acc[j] += gxb[j];
          } else if constexpr (direct) {
            stream_row(gx + o, gxb, len);
          } else {
            store_row(k, gxb, len, gx + o);
          }
        }
      }
      std::memcpy(gv0 + n0, carry, len * sizeof(S));
      if (const_input) store_row(k, acc, len, gx + n0);
      if (g_dec) std::memcpy(g_dec + n0, gd, len * sizeof(S));
      if (g_thr) std::memcpy(g_thr + n0, gt, len * sizeof(S));
    }
    stream_fence();
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> neuron_forward_cpu(
    const at::Tensor& x, const c10::optional<at::Tensor>& v0, const c10::optional<at::Tensor>& decay_param,
    const c10::optional<at::Tensor>& threshold_param, int64_t T, int64_t model, int64_t reset, int64_t surrogate,
    double sg_param, double tau, double v_th, double v_reset, double v_floor, double beta, double v_init,
    bool decay_input, bool has_floor, bool detach_reset, int64_t save_mode, bool store_v_seq, bool spikes_uint8,
    bool batch_first) {
  auto f = snn_host::prepare_forward(x, v0, decay_param, threshold_param, T, model, reset, surrogate, sg_param, tau,
                                     v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor, save_mode,
                                     store_v_seq, spikes_uint8, batch_first);
  const bool leaky = model == MODEL_LEAKY, plif = model == MODEL_PLIF;
  const snn_cpu::Kernels& k = snn_cpu::kernels();
  switch (f.dt) {
    case snn_host::DT_F32:
      fwd_driver<float>(k, f.p, leaky, rows_for<float>(k, f.combo, plif, -1));
      break;
    case snn_host::DT_F64:
      fwd_driver<double>(k, f.p, leaky, rows_for<double>(k, f.combo, plif, -1));
      break;
    case snn_host::DT_F16:
      fwd_driver<half_t>(k, f.p, leaky, rows_for<float>(k, f.combo, plif, -1));
      break;
    case snn_host::DT_BF16:
      fwd_driver<bf16_t>(k, f.p, leaky, rows_for<float>(k, f.combo, plif, -1));
      break;
  }
  return snn_host::outputs(f);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> neuron_backward_cpu(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_v_seq,
    const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved, const c10::optional<at::Tensor>& x,
    const c10::optional<at::Tensor>& v0, const c10::optional<at::Tensor>& decay_param,
    const c10::optional<at::Tensor>& threshold_param, int64_t T, int64_t save_mode, int64_t model, int64_t reset,
    int64_t surrogate, double sg_param, double tau, double v_th, double v_reset, double v_floor, double beta,
    double v_init, bool decay_input, bool has_floor, bool detach_reset, bool grad_decay, bool grad_threshold,
    at::ScalarType x_dtype, const c10::optional<at::Tensor>& readout_grad,
    const c10::optional<at::Tensor>& readout_weight, bool batch_first) {
  const bool readout_on = check_readout_flags(readout_grad, readout_weight, grad_spikes, batch_first);
  auto b = snn_host::prepare_backward(grad_spikes, grad_v_seq, grad_v_last, saved, x, v0, decay_param, threshold_param,
                                      T, save_mode, model, reset, surrogate, sg_param, tau, v_th, v_reset, v_floor,
                                      beta, v_init, decay_input, has_floor, detach_reset, grad_decay, grad_threshold,
                                      x_dtype, batch_first);
  const bool leaky = model == MODEL_LEAKY, plif = model == MODEL_PLIF;
  const ReadoutArgs ro = check_readout(readout_on, readout_grad, readout_weight, x_dtype, saved.device(), b.p.T,
                                       snn_host::rest_sizes(saved, 1));
  const Readout<float> ro32 = ro.on && x_dtype == at::kFloat ? ro.get<float>() : Readout<float>{};
  const Readout<double> ro64 = ro.on && x_dtype == at::kDouble ? ro.get<double>() : Readout<double>{};
  const bool readout = ro.on;
  const snn_cpu::Kernels& k = snn_cpu::kernels();
  switch (b.dt) {
    case snn_host::DT_F32:
      bwd_driver<float>(k, b.p, leaky, rows_for<float>(k, b.combo, plif, b.sg), readout ? &ro32 : nullptr);
      break;
    case snn_host::DT_F64:
      bwd_driver<double>(k, b.p, leaky, rows_for<double>(k, b.combo, plif, b.sg), readout ? &ro64 : nullptr);
      break;
    case snn_host::DT_F16:
      bwd_driver<half_t>(k, b.p, leaky, rows_for<float>(k, b.combo, plif, b.sg));
      break;
    case snn_host::DT_BF16:
      bwd_driver<bf16_t>(k, b.p, leaky, rows_for<float>(k, b.combo, plif, b.sg));
      break;
  }
  return snn_host::outputs(b);
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CPU, m) {
  m.impl("neuron_forward", &neuron_forward_cpu);
  m.impl("neuron_backward", &neuron_backward_cpu);
}
