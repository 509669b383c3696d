// CPU drivers of the declared-model ops (kernels/models.h): blocks of neurons
// in parallel, time outer and the block's neurons inner, so that each step is
// one call of a vectorised row (cpu_kernels_impl.h, per ISA variant). The
// backward replays each chunk of kChunk steps from its checkpoint with the
// forward's own row, so it sees the forward's states bit for bit.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <utility>

#include "../model_host.h"
#include "cpu_driver.h"
#include "cpu_kernels.h"

namespace {

using namespace snn;
using namespace snn_cpu_driver;

// Neurons per block. Longer blocks give the prefetcher longer runs of each
// [T, N] stream per step (a one-state declaration's forward on
// [64, 64, 4096] ran 1.2x faster at 4096 neurons than at 1024), as long as
// the block's scratch rows stay in L2 (512 KB per core on the EPYC, 2 MB on
// the Xeons we run on). The forward keeps kStates + kParams + 2 rows and
// takes the one-state drivers' kBlock; the backward is sized to
// kScratchBytes of the rows it uses, at least kMinBlock neurons. At 256 KB
// the Leaky declaration's backward got 2,944-3,392 neurons and ran up to
// 1.18x the one-state kernel's time on the Xeon (benchmarks/leaky_decl.py);
// the one-state drivers' 4096-neuron blocks hold 23 rows (377 KB fp32).
constexpr i64 kScratchBytes = 512 << 10;
constexpr i64 kMinBlock = 1024;

// A model declares `static const bool kBackwardReadsX = false` when its
// backward reads what the step made from post instead of x; the backward
// driver then hands it a zero row instead of converting 16-bit x where the
// states come from the forward's sequence (fp32/fp64 x is read in place,
// and the row's dead load is dropped either way). A wrong declaration gives
// wrong gradients, which the state_seq tests compare with the replay.
template <class M>
constexpr bool backward_reads_x() {
  if constexpr (requires { M::kBackwardReadsX; }) {
    return M::kBackwardReadsX;
  } else {
    return true;
  }
}

template <class M, typename S>
constexpr i64 bwd_block_cap(bool replay) {
  // prm, carry, gp, states, zero states, then gs, gx, acc, spikes and the x
  // of each step of a chunk (none where the states come from the forward's
  // sequence and the backward reads no x); the replay adds the states before
  // each step and after the last.
  const i64 x_rows = replay || backward_reads_x<M>() ? kChunk : 0;
  const i64 rows = 2 * M::kParams + 3 * M::kStates + 4 + x_rows + (replay ? (kChunk + 1) * M::kStates : 0);
  const i64 fit = kScratchBytes / (rows * (i64)sizeof(S)) / 64 * 64;
  return fit < kMinBlock ? kMinBlock : (fit > kBlock ? kBlock : fit);
}

inline i64 model_block(i64 N, i64 cap) {
  const i64 nt = std::max<i64>(1, at::get_num_threads());
  i64 b = (N + nt - 1) / nt;
  b = (b + 63) / 64 * 64;
  return std::max<i64>(64, std::min<i64>(cap, b));
}

// Rows of ld elements, 64-byte aligned.
template <typename S>
struct Rows {
  std::vector<S> buf;
  i64 ld;
  Rows(int n, i64 ld_) : buf(size_t(n) * ld_ + 64 / sizeof(S)), ld(ld_) {}
  S* row(int i) {
    auto base = reinterpret_cast<uintptr_t>(buf.data());
    return reinterpret_cast<S*>((base + 63) & ~uintptr_t(63)) + size_t(i) * ld;
  }
};

// Block parameter rows: row k, element j = params[k, (n0 + j) % P].
template <typename S>
void fill_params(const S* params, i64 np, i64 P, i64 n0, i64 len, S* prm, i64 ld) {
  for (i64 k = 0; k < np; ++k) {
    i64 q = n0 % P;
    for (i64 j = 0; j < len; ++j) {
      prm[k * ld + j] = params[k * P + q];
      if (++q == P) q = 0;
    }
  }
}

template <class M, int V, typename S>
void init_states(const S* state0, i64 N, i64 n0, i64 len, const S* prm, S* st, i64 ld) {
  if (state0) {
    for (int k = 0; k < M::kStates; ++k) std::memcpy(st + k * ld, state0 + k * N + n0, len * sizeof(S));
    return;
  }
  for (i64 j = 0; j < len; ++j) {
    S pj[M::kParams], sj[M::kStates];
    for (int k = 0; k < M::kParams; ++k) pj[k] = prm[k * ld + j];
    M::template init<V, S>(pj, sj);
    for (int k = 0; k < M::kStates; ++k) st[k * ld + j] = sj[k];
  }
}

// init_states for a run-time variant (the backward driver is one per model).
template <class M, typename S, int... Vs>
void init_states_v(int v, std::integer_sequence<int, Vs...>, const S* state0, i64 N, i64 n0, i64 len, const S* prm,
                   S* st, i64 ld) {
  ((v == Vs ? init_states<M, Vs, S>(state0, N, n0, len, prm, st, ld) : void()), ...);
}

template <class M, int V, typename T>
void fwd_driver(const snn_cpu::Kernels& k, const MFwdParams& p) {
  typedef typename StateOf<T>::type S;
  constexpr int NS = M::kStates, NP = M::kParams;
  constexpr bool direct = std::is_same<T, S>::value;
  const snn_cpu::MFwdRow<S> row = k.models<S>().fwd[ModelIdOf<M>::value][V][p.P != 1];
  const MCfg<S> c = make_mcfg<S>(0.0, 0);
  // Cache-sized blocks when no [T, N] tensor streams (cpu_driver.h kBlockCached).
  const bool streams = p.x_tstride != 0 || !p.spikes_u8 || p.state_seq;
  const i64 N = p.N, nT = p.T, blk = model_block(N, streams ? kBlock : kBlockCached), ts = seq_step(p.io, N);
  const Blocking blocks(N, p.io, blk, p.x_tstride == 0);
  const T* x = (const T*)p.x;
  T* spikes = (T*)p.spikes;
  uint8_t* spikes8 = p.spikes_u8 ? (uint8_t*)p.spikes : nullptr;
  S* seq = (S*)p.state_seq;
  S* last = (S*)p.state_last;
  S* ckpt = (S*)p.ckpt;
  at::parallel_for(0, blocks.count, 1, [&](int64_t b0, int64_t b1) {
    Rows<S> r(NS + NP + 2, blk);
    S *st = r.row(0), *prm = r.row(NS), *xb = r.row(NS + NP), *sb = r.row(NS + NP + 1);
    for (i64 b = b0; b < b1; ++b) {
      const Block bk = blocks.at(b);
      const i64 n0 = bk.n0, len = bk.len;
      fill_params((const S*)p.params, NP, p.P, n0, len, prm, blk);
      init_states<M, V, S>((const S*)p.state0, N, n0, len, prm, st, blk);
      for (i64 t = 0; t < nT; ++t) {
        if (ckpt && t % kChunk == 0)
          for (int q = 0; q < NS; ++q)
            std::memcpy(ckpt + ((t / kChunk) * NS + q) * N + n0, st + q * blk, len * sizeof(S));
        const S* xs = x_row(k, x, t * p.x_tstride + bk.xo, len, xb);
        row(c, len, blk, st, st, prm, xs, sb);
        const i64 o = bk.io + t * ts;
        if (spikes8) {
          k.rows<S>().store_bytes(sb, len, spikes8 + o);
        } else if constexpr (direct) {
          stream_row(spikes + o, sb, len);
        } else {
          store_row(k, sb, len, spikes + o);
        }
        if (seq)
          for (int q = 0; q < NS; ++q) stream_row(seq + q * nT * N + o, st + q * blk, len);
      }
      for (int q = 0; q < NS; ++q) std::memcpy(last + q * N + n0, st + q * blk, len * sizeof(S));
    }
    stream_fence();
  });
}

// The variant and surrogate only pick the row kernels: one driver per model
// and dtype (instantiating it per variant x surrogate multiplied the compile
// time for nothing).
// ro: NeuronLinear's readout (cpu_driver.h), which forms the spike gradient
// of each step in place of grad_spikes.
template <class M, typename T>
void bwd_driver(const snn_cpu::Kernels& k, const MBwdParams& p, int v, int sg,
                const Readout<typename StateOf<T>::type>* ro) {
  typedef typename StateOf<T>::type S;
  constexpr int NS = M::kStates, NP = M::kParams;
  constexpr bool direct = std::is_same<T, S>::value;
  // Per-neuron rows where the parameters are, or their gradient sums are
  // asked for; else the scalar rows (bit for bit the same arithmetic).
  const snn_cpu::MFwdRow<S> fwd = k.models<S>().fwd[ModelIdOf<M>::value][v][p.P != 1];
  const snn_cpu::MBwdRow<S> bwd = k.models<S>().bwd[ModelIdOf<M>::value][v][sg][p.P != 1 || p.grad_params != nullptr];
  const MCfg<S> c = make_mcfg<S>(p.sg_param, p.detach_reset, p.surrogate);
  const bool streams = (p.grad_spikes && !ro) || p.grad_state_seq || p.state_seq || !p.const_input || p.x_tstride != 0;
  const i64 cap = std::min(bwd_block_cap<M, S>(!p.state_seq), streams ? kBlock : kBlockCached);
  const i64 N = p.N, nT = p.T, blk = model_block(N, cap), ts = seq_step(p.io, N);
  const Blocking blocks(N, p.io, blk, p.x_tstride == 0);
  const T* x = (const T*)p.x;
  const T* gs = (const T*)p.grad_spikes;
  const S* gseq = (const S*)p.grad_state_seq;
  const S* glast = (const S*)p.grad_state_last;
  const S* ckpt = (const S*)p.ckpt;
  const S* sseq = (const S*)p.state_seq;
  T* gx = (T*)p.grad_x;
  S* gst0 = (S*)p.grad_state0;
  S* gprm = (S*)p.grad_params;
  const bool const_input = p.const_input != 0;
  at::parallel_for(0, blocks.count, 1, [&](int64_t b0, int64_t b1) {
    // prm, carry, gp, work states, zero states, the states before each
    // replayed step and after the last, x of each replayed step, then gs,
    // gx, acc, spikes rows.
    const int r_prm = 0, r_carry = NP, r_gp = r_carry + NS, r_st = r_gp + NP, r_zero = r_st + NS, r_prev = r_zero + NS,
              r_x = r_prev + (kChunk + 1) * NS, r_gs = r_x + kChunk, r_gx = r_gs + 1, r_acc = r_gx + 1,
              r_sb = r_acc + 1;
    Rows<S> r(r_sb + 1, blk);
    S *prm = r.row(r_prm), *carry = r.row(r_carry), *gp = r.row(r_gp), *st = r.row(r_st), *zero = r.row(r_zero);
    S *gsb = r.row(r_gs), *gxb = r.row(r_gx), *acc = r.row(r_acc), *sb = r.row(r_sb);
    std::fill(zero, zero + NS * blk, S(0));
    const S* xs[kChunk];
    for (i64 b = b0; b < b1; ++b) {
      const Block bk = blocks.at(b);
      const i64 n0 = bk.n0, len = bk.len;
      fill_params((const S*)p.params, NP, p.P, n0, len, prm, blk);
      for (int q = 0; q < NS; ++q)
        for (i64 j = 0; j < len; ++j) carry[q * blk + j] = glast ? glast[q * N + n0 + j] : S(0);
      std::fill(gp, gp + NP * blk, S(0));
      std::fill(acc, acc + blk, S(0));
      // The states before step 0: with the forward's state sequence, the
      // only ones not in it; step 0 reads them and its own from scratch rows
      // (prev and post share a row pitch).
      if (sseq) {
        init_states_v<M, S>(v, std::make_integer_sequence<int, M::kVariants>{}, (const S*)p.state0, N, n0, len, prm, st,
                            blk);
        for (int q = 0; q < NS; ++q) std::memcpy(r.row(r_prev + q), sseq + q * nT * N + bk.io, len * sizeof(S));
      }
      const i64 nck = num_chunks(nT);
      for (i64 ci = nck - 1; ci >= 0; --ci) {
        const i64 t0 = ci * kChunk, steps = std::min<i64>(kChunk, nT - t0);
        if (!sseq) {
          S* prev0 = r.row(r_prev);
          for (int q = 0; q < NS; ++q) std::memcpy(prev0 + q * blk, ckpt + (ci * NS + q) * N + n0, len * sizeof(S));
        }
        for (i64 s = 0; s < steps; ++s) {
          xs[s] = sseq && !backward_reads_x<M>()
                      ? zero
                      : x_row(k, x, (t0 + s) * p.x_tstride + bk.xo, len, r.row(r_x + (int)s));
          // The replay writes the states after step s where the backward
          // reads those before step s + 1. After the chunk's last step they
          // are the next chunk's checkpoint: copied, not recomputed.
          if (!sseq && (s + 1 < steps || ci + 1 == nck))
            fwd(c, len, blk, r.row(r_prev + (int)s * NS), r.row(r_prev + (int)(s + 1) * NS), prm, xs[s], sb);
        }
        if (!sseq && ci + 1 < nck) {
          S* after = r.row(r_prev + (int)steps * NS);
          for (int q = 0; q < NS; ++q)
            std::memcpy(after + q * blk, ckpt + ((ci + 1) * NS + q) * N + n0, len * sizeof(S));
        }
        for (i64 s = steps - 1; s >= 0; --s) {
          const i64 t = t0 + s, o = bk.io + t * ts;
          const S* prev = r.row(r_prev + (int)s * NS);
          const S* post = r.row(r_prev + (int)(s + 1) * NS);
          i64 pld = blk;
          if (sseq) {
            prev = t > 0 ? sseq + bk.io + (t - 1) * ts : st;
            post = t > 0 ? sseq + bk.io + t * ts : r.row(r_prev);
            pld = t > 0 ? nT * N : blk;
          }
          const S* gsr;
          if (ro) {
            k.rows<S>().readout(ro->gy + t * (N / ro->F) * ro->K, ro->w, ro->K, ro->F, n0, len, gsb);
            gsr = gsb;
          } else if (!gs) {
            gsr = zero;
          } else if constexpr (direct) {
            gsr = gs + o;
          } else {
            load_row(k, gs + o, len, gsb);
            gsr = gsb;
          }
          const S* gq = gseq ? gseq + o : zero;
          const i64 gld = gseq ? nT * N : blk;
          bwd(c, len, blk, prev, post, pld, prm, xs[s], gsr, gq, gld, carry, gp, gxb);
          if (const_input) {
            for (i64 j = 0; j < len; ++j) acc[j] += gxb[j];
          } else if constexpr (direct) {
            stream_row(gx + o, gxb, len);
          } else {
            store_row(k, gxb, len, gx + o);
          }
        }
      }
      for (int q = 0; q < NS; ++q) std::memcpy(gst0 + q * N + n0, carry + q * blk, len * sizeof(S));
      if (gprm)
        for (int q = 0; q < NP; ++q) std::memcpy(gprm + q * N + n0, gp + q * blk, len * sizeof(S));
      if (const_input) store_row(k, acc, len, gx + n0);
    }
    stream_fence();
  });
}

// Run-time (model, variant, surrogate, dtype) -> the compiled instantiation.
template <typename T, class M, int... Vs>
void fwd_dispatch(const snn_cpu::Kernels& k, const MFwdParams& p, int v, std::integer_sequence<int, Vs...>) {
  ((v == Vs ? fwd_driver<M, Vs, T>(k, p) : void()), ...);
}

template <typename T>
void model_fwd(const snn_cpu::Kernels& k, const MFwdParams& p, int model, int v) {
  switch (model) {
#define SNN_CASE(id, M, ...) \
  case id:                   \
    return fwd_dispatch<T, M>(k, p, v, std::make_integer_sequence<int, M::kVariants>{});
    SNN_MODEL_LIST(SNN_CASE)
#undef SNN_CASE
  }
}

template <typename T>
void model_bwd(const snn_cpu::Kernels& k, const MBwdParams& p, int model, int v, int sg,
               const Readout<typename StateOf<T>::type>* ro = nullptr) {
  switch (model) {
#define SNN_CASE(id, M, ...) \
  case id:                   \
    return bwd_driver<M, T>(k, p, v, sg, ro);
    SNN_MODEL_LIST(SNN_CASE)
#undef SNN_CASE
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> model_forward_cpu(
    const at::Tensor& x, const at::Tensor& params, const c10::optional<at::Tensor>& state0, int64_t T, int64_t model,
    int64_t variant, int64_t surrogate, double sg_param, bool detach_reset, bool return_states, bool save,
    bool batch_first, bool spikes_uint8) {
  snn_host::check_surrogate(surrogate, sg_param);
  auto f = snn_host::prepare_model_forward(x, params, state0, T, model, variant, return_states, save, true, batch_first,
                                           spikes_uint8);
  const snn_cpu::Kernels& k = snn_cpu::kernels();
  switch (f.dt) {
    case snn_host::DT_F32:
      model_fwd<float>(k, f.p, f.model, f.variant);
      break;
    case snn_host::DT_F64:
      model_fwd<double>(k, f.p, f.model, f.variant);
      break;
    case snn_host::DT_F16:
      model_fwd<half_t>(k, f.p, f.model, f.variant);
      break;
    case snn_host::DT_BF16:
      model_fwd<bf16_t>(k, f.p, f.model, f.variant);
      break;
  }
  return {f.spikes, f.state_seq, f.state_last, f.ckpt};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> model_backward_cpu(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_state_seq,
    const c10::optional<at::Tensor>& grad_state_last, const at::Tensor& x, const at::Tensor& params,
    const c10::optional<at::Tensor>& state0, const at::Tensor& ckpt, int64_t T, int64_t model, int64_t variant,
    int64_t surrogate, double sg_param, bool detach_reset, bool grad_params, bool batch_first,
    const c10::optional<at::Tensor>& state_seq, const c10::optional<at::Tensor>& readout_grad,
    const c10::optional<at::Tensor>& readout_weight) {
  const bool readout_on = check_readout_flags(readout_grad, readout_weight, grad_spikes, batch_first);
  auto b = snn_host::prepare_model_backward(grad_spikes, grad_state_seq, grad_state_last, x, params, state0, ckpt, T,
                                            model, variant, surrogate, sg_param, detach_reset, grad_params, batch_first,
                                            state_seq, false);
  const std::vector<int64_t> rest(b.gstate0.sizes().begin() + 1, b.gstate0.sizes().end());
  const ReadoutArgs ro =
      check_readout(readout_on, readout_grad, readout_weight, x.scalar_type(), x.device(), b.p.T, rest);
  const snn_cpu::Kernels& k = snn_cpu::kernels();
  switch (b.dt) {
    case snn_host::DT_F32: {
      const Readout<float> r = ro.on ? ro.get<float>() : Readout<float>{};
      model_bwd<float>(k, b.p, b.model, b.variant, b.sg, ro.on ? &r : nullptr);
      break;
    }
    case snn_host::DT_F64: {
      const Readout<double> r = ro.on ? ro.get<double>() : Readout<double>{};
      model_bwd<double>(k, b.p, b.model, b.variant, b.sg, ro.on ? &r : nullptr);
      break;
    }
    case snn_host::DT_F16:
      model_bwd<half_t>(k, b.p, b.model, b.variant, b.sg);
      break;
    case snn_host::DT_BF16:
      model_bwd<bf16_t>(k, b.p, b.model, b.variant, b.sg);
      break;
  }
  return {b.gx, b.gstate0, b.gparams};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CPU, m) {
  m.impl("model_forward", &model_forward_cpu);
  m.impl("model_backward", &model_backward_cpu);
}
