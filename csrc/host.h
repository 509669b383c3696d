// Host-side preparation shared by the CPU and CUDA op implementations:
// argument checks (errors name the parameter), flattening to [T, N], output
// allocation and the launch parameter structs. Device-specific code only
// launches the kernels.
#pragma once
#include <torch/library.h>
#include <ATen/ATen.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/common.h"
#include "kernels/params.h"
#include "kernels/encoder.h"
#include "kernels/convert.h"

namespace snn_host {

using snn::i64;

// Output tensors of the CPU ops come from a reuse cache (cpu/host_cache.cpp).
at::Tensor empty_cpu(at::IntArrayRef sizes, at::ScalarType dtype);

inline at::Tensor alloc(at::IntArrayRef sizes, const at::TensorOptions& opts) {
  if (opts.device().is_cpu()) return empty_cpu(sizes, opts.dtype().toScalarType());
  return at::empty(sizes, opts);
}

enum DType : int { DT_F32 = 0, DT_F64 = 1, DT_F16 = 2, DT_BF16 = 3 };

inline DType dtype_code(at::ScalarType t, const char* name) {
  switch (t) {
    case at::kFloat:
      return DT_F32;
    case at::kDouble:
      return DT_F64;
    case at::kHalf:
      return DT_F16;
    case at::kBFloat16:
      return DT_BF16;
    default:
      TORCH_CHECK_TYPE(false, "snn_cuda: ", name, " must be float32, float64, float16 or bfloat16, got ", t);
  }
}

inline at::ScalarType state_dtype(at::ScalarType t) { return t == at::kDouble ? at::kDouble : at::kFloat; }

// Index of a valid (model, reset) pair in the 7 compiled combinations.
inline int combo_index(i64 model, i64 reset) {
  // ParametricLIF runs the LIF kernels (with FwdParams::plif set).
  if ((model == snn::MODEL_LIF || model == snn::MODEL_PLIF) && (reset == snn::RESET_HARD || reset == snn::RESET_SOFT))
    return (int)reset;
  if (model == snn::MODEL_IF && (reset == snn::RESET_HARD || reset == snn::RESET_SOFT)) return 2 + (int)reset;
  if (model == snn::MODEL_LEAKY && reset >= 0 && reset <= 2) return 4 + (int)reset;
  TORCH_CHECK_VALUE(
      false, "snn_cuda: (model, reset) = (", model, ", ", reset,
      ") is not a compiled neuron: model 0=LIF/1=IF/3=ParametricLIF take reset 0=hard/1=soft; model 2=Leaky takes "
      "0=zero/1=subtract/2=none");
}

inline void check_finite(double v, const char* name) {
  TORCH_CHECK_VALUE(std::isfinite(v), "snn_cuda: ", name, " must be finite, got ", v);
}

inline void check_scalars(i64 model, double tau, double v_th, double v_reset, double v_floor, double beta,
                          double v_init, bool has_floor) {
  check_finite(v_th, "v_threshold");
  check_finite(v_reset, "v_reset");
  check_finite(v_init, "v_init");
  TORCH_CHECK_VALUE(model >= snn::MODEL_LIF && model <= snn::MODEL_PLIF,
                    "snn_cuda: model must be 0 (LIF), 1 (IF), 2 (Leaky) or 3 (ParametricLIF), got ", model);
  if (model == snn::MODEL_LIF) {
    TORCH_CHECK_VALUE(std::isfinite(tau) && tau > 1.0, "snn_cuda: tau must be a finite number > 1, got ", tau);
  }
  if (model == snn::MODEL_LEAKY) {
    TORCH_CHECK_VALUE(std::isfinite(beta) && beta >= 0.0 && beta <= 1.0, "snn_cuda: beta must be in [0, 1], got ",
                      beta);
  }
  if (has_floor) {
    TORCH_CHECK_VALUE(model == snn::MODEL_IF, "snn_cuda: v_floor is only supported by the IF neuron");
    check_finite(v_floor, "v_floor");
  }
}

inline std::vector<int64_t> rest_sizes(const at::Tensor& t, int64_t skip) {
  const auto s = t.sizes();
  return std::vector<int64_t>(s.begin() + std::min<int64_t>(skip, (int64_t)s.size()), s.end());
}

inline std::vector<int64_t> with_time(int64_t T, const std::vector<int64_t>& rest) {
  std::vector<int64_t> s;
  s.reserve(rest.size() + 1);
  s.push_back(T);
  s.insert(s.end(), rest.begin(), rest.end());
  return s;
}

// A [T, ...] tensor the kernels can read as x[t * tstride + n]: the per-step
// slices must be contiguous; the time stride may be anything (0 included, an
// expanded constant input). Otherwise a contiguous copy is made.
inline at::Tensor as_time_major(const at::Tensor& x) {
  if (x.dim() >= 1 && x.size(0) > 0 && x.select(0, 0).is_contiguous()) return x;
  return x.contiguous();
}

// x as the kernels read it: [T, ...] (T_const = -1) with contiguous steps,
// [B, T, ...] (batch_first) with contiguous runs of one sample's step, or
// [...] fed at each of T_const >= 1 steps. The sequences the op writes and
// reads besides x (spikes, saved h, v_seq, their gradients) are contiguous
// in the same order: [T, ...] or [B, T, ...] (SeqLayout, kernels/params.h).
struct TimeLayout {
  at::Tensor x;
  int64_t T;
  std::vector<int64_t> rest;  // the shape of one step, in neuron order ([B, ...] when batch_first)
  bool const_input, batch_first;
  int64_t x_tstride;  // elements between x's steps (0: constant input)
  snn::SeqLayout io;  // zero: time-major

  std::vector<int64_t> seq(int64_t steps) const;
};

// Neurons per sample's step of a batch-first [B, ...] per-step shape.
inline int64_t run_of(const std::vector<int64_t>& rest) {
  int64_t r = 1;
  for (size_t i = 1; i < rest.size(); ++i) r *= rest[i];
  return r;
}

// The shape of a T-step sequence of per-step shape `rest`: [T, ...], or
// [B, T, ...] when batch_first (rest is then [B, ...]).
inline std::vector<int64_t> seq_shape(int64_t T, const std::vector<int64_t>& rest, bool batch_first) {
  if (!batch_first) return with_time(T, rest);
  std::vector<int64_t> s(rest);
  s.insert(s.begin() + 1, T);
  return s;
}

// The kernels' view of that sequence (zero: time-major).
inline snn::SeqLayout seq_layout(int64_t T, const std::vector<int64_t>& rest, bool batch_first) {
  const int64_t run = batch_first ? run_of(rest) : 0;
  return run > 0 ? snn::SeqLayout{run, T * run, run} : snn::SeqLayout{0, 0, 0};
}

inline std::vector<int64_t> TimeLayout::seq(int64_t steps) const { return seq_shape(steps, rest, batch_first); }

inline TimeLayout time_layout(const at::Tensor& x_in, int64_t T_const, bool batch_first = false) {
  TimeLayout l;
  l.const_input = T_const >= 0;
  l.batch_first = batch_first;
  if (l.const_input) {
    TORCH_CHECK_VALUE(T_const >= 1, "snn_cuda: T must be >= 1 for a constant input, got ", T_const);
    TORCH_CHECK_VALUE(!batch_first || x_in.dim() >= 1,
                      "snn_cuda: x must be [B, ...] for a constant input with batch_first, got a 0-d tensor");
    l.T = T_const;
    l.x = x_in.contiguous();
    l.rest = x_in.sizes().vec();
    l.x_tstride = 0;
  } else if (batch_first) {
    TORCH_CHECK_VALUE(x_in.dim() >= 2, "snn_cuda: x must be [B, T, ...] with batch_first, got shape ", x_in.sizes());
    TORCH_CHECK_VALUE(T_const == -1, "snn_cuda: T must be -1 (taken from x) for a sequence input, got ", T_const);
    l.T = x_in.size(1);
    TORCH_CHECK_VALUE(l.T >= 1, "snn_cuda: x must have at least one time step (dim 1 with batch_first), got shape ",
                      x_in.sizes());
    // Read in place when contiguous, as the sequences the op writes are.
    l.x = x_in.contiguous();
    l.rest = x_in.sizes().vec();
    l.rest.erase(l.rest.begin() + 1);
    l.x_tstride = l.x.numel() ? run_of(l.rest) : 0;
  } else {
    TORCH_CHECK_VALUE(x_in.dim() >= 1, "snn_cuda: x must have a leading time dimension [T, ...], got a 0-d tensor");
    TORCH_CHECK_VALUE(T_const == -1, "snn_cuda: T must be -1 (taken from x) for a sequence input, got ", T_const);
    l.T = x_in.size(0);
    TORCH_CHECK_VALUE(l.T >= 1, "snn_cuda: x must have at least one time step, got shape ", x_in.sizes());
    l.x = as_time_major(x_in);
    l.rest = rest_sizes(x_in, 1);
    l.x_tstride = l.x.numel() ? l.x.stride(0) : 0;
  }
  l.io = seq_layout(l.T, l.rest, batch_first);
  return l;
}

inline at::Tensor checked_state(const c10::optional<at::Tensor>& t, const char* name, const at::Tensor& like,
                                at::ScalarType sdt, const std::vector<int64_t>& shape) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  const at::Tensor& v = *t;
  TORCH_CHECK_VALUE(v.device() == like.device(), "snn_cuda: ", name, " is on ", v.device(), " but the input is on ",
                    like.device());
  TORCH_CHECK_TYPE(v.scalar_type() == sdt, "snn_cuda: ", name, " must have the state dtype ", sdt, ", got ",
                   v.scalar_type());
  TORCH_CHECK_VALUE(v.sizes().vec() == shape, "snn_cuda: ", name, " must have shape ", at::IntArrayRef(shape), ", got ",
                    v.sizes());
  return v.contiguous();
}

// Tensor-valued neuron parameters (learnable, or per neuron): one value, or
// one per neuron of a sample (the trailing dims of x's per-step shape), in
// the state dtype. Both are brought to a common length P for the kernels.
struct NeuronParams {
  at::Tensor decay, th;
  i64 P = 1;
};

inline at::Tensor checked_param(const c10::optional<at::Tensor>& t, const char* name, const at::Tensor& like,
                                at::ScalarType sdt, const std::vector<int64_t>& rest) {
  if (!t.has_value() || !t->defined()) return at::Tensor();
  const at::Tensor& v = *t;
  TORCH_CHECK_VALUE(v.device() == like.device(), "snn_cuda: ", name, " is on ", v.device(), " but the input is on ",
                    like.device());
  TORCH_CHECK_TYPE(v.scalar_type() == sdt, "snn_cuda: ", name, " must have the state dtype ", sdt, ", got ",
                   v.scalar_type());
  bool ok = v.numel() == 1;
  if (!ok && v.dim() >= 1 && (size_t)v.dim() <= rest.size()) {
    ok = std::equal(v.sizes().begin(), v.sizes().end(), rest.end() - v.dim());
  }
  TORCH_CHECK_VALUE(ok, "snn_cuda: ", name, " must have one element or the shape of the trailing (per-neuron) dims of ",
                    at::IntArrayRef(rest), ", got ", v.sizes());
  return v.contiguous();
}

inline NeuronParams prepare_params(const c10::optional<at::Tensor>& decay, const c10::optional<at::Tensor>& th,
                                   int64_t model, const at::Tensor& like, at::ScalarType sdt,
                                   const std::vector<int64_t>& rest) {
  NeuronParams np;
  np.decay = checked_param(decay, "decay_param", like, sdt, rest);
  np.th = checked_param(th, "threshold_param", like, sdt, rest);
  if (model == snn::MODEL_PLIF) {
    TORCH_CHECK_VALUE(np.decay.defined(), "snn_cuda: ParametricLIF (model 3) needs decay_param (k = sigmoid(w))");
  } else {
    TORCH_CHECK_VALUE(!np.decay.defined() || model == snn::MODEL_LEAKY,
                      "snn_cuda: decay_param is for ParametricLIF (model 3, k) and Leaky (model 2, beta) only");
  }
  const i64 pd = np.decay.defined() ? np.decay.numel() : 1;
  const i64 pt = np.th.defined() ? np.th.numel() : 1;
  np.P = std::max<i64>(pd, pt);
  // One length for both: a one-element parameter beside a per-neuron one is
  // repeated (P elements, negligible next to the [T, N] tensors).
  if (np.decay.defined() && pd != np.P) np.decay = np.decay.reshape({1}).expand({np.P}).contiguous();
  if (np.th.defined() && pt != np.P) np.th = np.th.reshape({1}).expand({np.P}).contiguous();
  return np;
}

template <typename P>
inline void set_params(P& p, const NeuronParams& np, int64_t model) {
  p.plif = model == snn::MODEL_PLIF ? 1 : 0;
  p.decay_param = np.decay.defined() ? np.decay.data_ptr() : nullptr;
  p.th_param = np.th.defined() ? np.th.data_ptr() : nullptr;
  p.P = np.P;
}

// The neuron scalars common to FwdParams and BwdParams.
template <typename P>
inline void set_scalars(P& p, double tau, double v_th, double v_reset, double v_floor, double beta, double v_init,
                        bool decay_input, bool has_floor) {
  p.tau = tau;
  p.v_th = v_th;
  p.v_reset = v_reset;
  p.v_floor = v_floor;
  p.beta = beta;
  p.v_init = v_init;
  p.decay_input = decay_input ? 1 : 0;
  p.has_floor = has_floor ? 1 : 0;
}

struct Forward {
  at::Tensor x, v0, spikes, saved, v_seq, v_last;
  NeuronParams np;
  snn::FwdParams p;
  DType dt;
  int combo;
};

inline void check_surrogate(int64_t surrogate, double sg_param) {
  TORCH_CHECK_VALUE(surrogate >= 0 && surrogate < snn::SG_COUNT, "snn_cuda: surrogate id must be in [0, ",
                    (int)snn::SG_COUNT, "), got ", surrogate);
  check_finite(sg_param, "surrogate parameter");
}

inline Forward prepare_forward(const at::Tensor& x_in, const c10::optional<at::Tensor>& v0,
                               const c10::optional<at::Tensor>& decay_param,
                               const c10::optional<at::Tensor>& threshold_param, int64_t T_const, int64_t model,
                               int64_t reset, int64_t surrogate, double sg_param, double tau, double v_th,
                               double v_reset, double v_floor, double beta, double v_init, bool decay_input,
                               bool has_floor, int64_t save_mode, bool store_v_seq, bool spikes_uint8,
                               bool batch_first = false) {
  Forward f;
  f.dt = dtype_code(x_in.scalar_type(), "x");
  f.combo = combo_index(model, reset);
  check_surrogate(surrogate, sg_param);
  check_scalars(model, tau, v_th, v_reset, v_floor, beta, v_init, has_floor);
  const TimeLayout tl = time_layout(x_in, T_const, batch_first);
  const int64_t T = tl.T;
  const std::vector<int64_t>& rest = tl.rest;
  f.x = tl.x;
  const at::ScalarType sdt = state_dtype(x_in.scalar_type());
  f.v0 = checked_state(v0, "v0", x_in, sdt, rest);
  f.np = prepare_params(decay_param, threshold_param, model, x_in, sdt, rest);
  const auto sopt = x_in.options().dtype(sdt);
  const auto seq = tl.seq(T);
  const bool leaky = model == snn::MODEL_LEAKY;
  TORCH_CHECK_VALUE(save_mode >= snn::SAVE_NONE && save_mode <= snn::SAVE_CKPT,
                    "snn_cuda: save_mode must be 0 (none), 1 (save h) or 2 (checkpoints), got ", save_mode);
  // Leaky returns its membrane sequence when store_v_seq: that tensor is then
  // also what its backward reads, so it is the saved one.
  if (leaky && store_v_seq) save_mode = snn::SAVE_H;
  f.spikes = alloc(seq, spikes_uint8 ? x_in.options().dtype(at::kByte) : x_in.options());
  if (save_mode == snn::SAVE_H) {
    f.saved = alloc(seq, sopt);
  } else if (save_mode == snn::SAVE_CKPT) {
    f.saved = alloc(with_time(snn::num_chunks(T), rest), sopt);
  } else {
    f.saved = at::empty({0}, sopt);
  }
  f.v_seq = (store_v_seq && !leaky) ? alloc(seq, sopt) : at::empty({0}, sopt);
  f.v_last = alloc(rest, sopt);

  snn::FwdParams& p = f.p;
  p.T = T;
  p.N = f.v_last.numel();
  p.x_tstride = tl.x_tstride;
  p.io = tl.io;
  p.x = f.x.data_ptr();
  p.v0 = f.v0.defined() ? f.v0.data_ptr() : nullptr;
  p.spikes = f.spikes.data_ptr();
  p.spikes_u8 = spikes_uint8 ? 1 : 0;
  p.saved = (save_mode == snn::SAVE_H && f.saved.numel()) ? f.saved.data_ptr() : nullptr;
  p.ckpt = (save_mode == snn::SAVE_CKPT && f.saved.numel()) ? f.saved.data_ptr() : nullptr;
  p.v_seq = f.v_seq.numel() ? f.v_seq.data_ptr() : nullptr;
  p.v_last = f.v_last.data_ptr();
  set_scalars(p, tau, v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor);
  set_params(p, f.np, model);
  return f;
}

inline at::Tensor checked_grad(const c10::optional<at::Tensor>& g, const char* name, const at::Tensor& like,
                               at::ScalarType dt, const std::vector<int64_t>& shape) {
  if (!g.has_value() || !g->defined()) return at::Tensor();
  const at::Tensor& t = *g;
  TORCH_CHECK_VALUE(t.device() == like.device(), "snn_cuda: ", name, " is on ", t.device(), " but the input is on ",
                    like.device());
  TORCH_CHECK_TYPE(t.scalar_type() == dt, "snn_cuda: ", name, " must be ", dt, ", got ", t.scalar_type());
  TORCH_CHECK_VALUE(t.sizes().vec() == shape, "snn_cuda: ", name, " must have shape ", at::IntArrayRef(shape), ", got ",
                    t.sizes());
  return t.contiguous();
}

struct Backward {
  at::Tensor gs, gv, gvl, saved, x, v0, gx, gv0, g_decay, g_th;
  NeuronParams np;
  snn::BwdParams p;
  DType dt;
  int combo;
  int sg;
};

inline Backward prepare_backward(const c10::optional<at::Tensor>& grad_spikes,
                                 const c10::optional<at::Tensor>& grad_v_seq,
                                 const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved,
                                 const c10::optional<at::Tensor>& x_opt, const c10::optional<at::Tensor>& v0,
                                 const c10::optional<at::Tensor>& decay_param,
                                 const c10::optional<at::Tensor>& threshold_param, int64_t T_const, int64_t save_mode,
                                 int64_t model, int64_t reset, int64_t surrogate, double sg_param, double tau,
                                 double v_th, double v_reset, double v_floor, double beta, double v_init,
                                 bool decay_input, bool has_floor, bool detach_reset, bool grad_decay,
                                 bool grad_threshold, at::ScalarType x_dtype, bool batch_first = false) {
  Backward b;
  b.dt = dtype_code(x_dtype, "x_dtype");
  b.combo = combo_index(model, reset);
  check_surrogate(surrogate, sg_param);
  check_scalars(model, tau, v_th, v_reset, v_floor, beta, v_init, has_floor);
  const at::ScalarType sdt = state_dtype(x_dtype);
  TORCH_CHECK_TYPE(saved.scalar_type() == sdt, "snn_cuda: saved must be ", sdt, ", got ", saved.scalar_type());
  TORCH_CHECK_VALUE(saved.dim() >= 1 && saved.size(0) >= 1,
                    "snn_cuda: saved must be the [T, ...] tensor the forward saved (was the forward run with "
                    "save_mode=0?), got shape ",
                    saved.sizes());
  TORCH_CHECK_VALUE(save_mode == snn::SAVE_H || save_mode == snn::SAVE_CKPT,
                    "snn_cuda: save_mode must be 1 (save h) or 2 (checkpoints) for a backward, got ", save_mode);
  const bool const_input = T_const >= 0;
  b.saved = saved.contiguous();
  // Saved h is a sequence in the op's layout ([B, T, ...] when batch_first);
  // checkpoints are [num_chunks(T), ...] in neuron order.
  const bool bf_saved = batch_first && save_mode == snn::SAVE_H;
  TORCH_CHECK_VALUE(!bf_saved || saved.dim() >= 2, "snn_cuda: saved must be the [B, T, ...] tensor the forward saved ",
                    "with batch_first, got shape ", saved.sizes());
  std::vector<int64_t> rest = rest_sizes(saved, 1);
  int64_t T = saved.size(0);
  if (bf_saved) {
    rest = saved.sizes().vec();
    rest.erase(rest.begin() + 1);
    T = saved.size(1);
  }
  int64_t x_tstride = 0;
  // ParametricLIF's decay gradient reads X_t under decay_input.
  const bool plif_x = model == snn::MODEL_PLIF && grad_decay && decay_input;
  const bool want_x = save_mode == snn::SAVE_CKPT || plif_x;
  if (want_x) {
    TORCH_CHECK_VALUE(x_opt.has_value() && x_opt->defined(), "snn_cuda: x (the forward's input) is required ",
                      save_mode == snn::SAVE_CKPT ? "to rebuild the states from checkpoints"
                                                  : "for the ParametricLIF decay gradient");
    const TimeLayout xl = time_layout(*x_opt, const_input ? T_const : -1, batch_first);
    b.x = xl.x;
    x_tstride = xl.x_tstride;
    TORCH_CHECK_TYPE(b.x.scalar_type() == x_dtype, "snn_cuda: x must be ", x_dtype, ", got ", b.x.scalar_type());
    TORCH_CHECK_VALUE(b.x.device() == saved.device(), "snn_cuda: x is on ", b.x.device(), " but the input is on ",
                      saved.device());
    if (save_mode == snn::SAVE_CKPT) {
      T = xl.T;
      TORCH_CHECK_VALUE(xl.rest == rest && snn::num_chunks(T) == saved.size(0), "snn_cuda: x of shape ", b.x.sizes(),
                        " does not match the checkpoints of shape ", saved.sizes());
    } else {
      TORCH_CHECK_VALUE(xl.rest == rest && xl.T == T, "snn_cuda: x of shape ", b.x.sizes(),
                        " does not match saved of shape ", saved.sizes());
    }
  }
  b.np = prepare_params(decay_param, threshold_param, model, saved, sdt, rest);
  TORCH_CHECK_VALUE(!grad_decay || (b.np.decay.defined() && (model == snn::MODEL_PLIF || model == snn::MODEL_LEAKY)),
                    "snn_cuda: grad_decay needs decay_param and model 2 (Leaky) or 3 (ParametricLIF)");
  TORCH_CHECK_VALUE(!grad_threshold || b.np.th.defined(), "snn_cuda: grad_threshold needs threshold_param");
  const std::vector<int64_t> seq = seq_shape(T, rest, batch_first);
  b.gs = checked_grad(grad_spikes, "grad_spikes", saved, x_dtype, seq);
  b.gv = checked_grad(grad_v_seq, "grad_v_seq", saved, sdt, seq);
  b.gvl = checked_grad(grad_v_last, "grad_v_last", saved, sdt, rest);
  b.v0 = checked_state(v0, "v0", saved, sdt, rest);
  TORCH_CHECK_VALUE(!const_input || T_const == T, "snn_cuda: T (", T_const, ") must match saved.size(0) (", T,
                    ") for a constant input");
  b.gx = alloc(const_input ? rest : seq, saved.options().dtype(x_dtype));
  b.gv0 = alloc(rest, saved.options());
  b.g_decay = grad_decay ? alloc(rest, saved.options()) : at::empty({0}, saved.options());
  b.g_th = grad_threshold ? alloc(rest, saved.options()) : at::empty({0}, saved.options());
  b.sg = (int)surrogate;

  snn::BwdParams& p = b.p;
  p.T = T;
  p.N = b.gv0.numel();
  p.grad_spikes = b.gs.defined() ? b.gs.data_ptr() : nullptr;
  p.grad_v_seq = b.gv.defined() ? b.gv.data_ptr() : nullptr;
  p.grad_v_last = b.gvl.defined() ? b.gvl.data_ptr() : nullptr;
  const bool ckpt = save_mode == snn::SAVE_CKPT;
  p.saved = ckpt ? nullptr : b.saved.data_ptr();
  p.ckpt = ckpt ? b.saved.data_ptr() : nullptr;
  p.x = want_x ? b.x.data_ptr() : nullptr;
  p.x_tstride = want_x ? x_tstride : 0;
  p.io = seq_layout(T, rest, batch_first);
  p.v0 = b.v0.defined() ? b.v0.data_ptr() : nullptr;
  p.grad_x = b.gx.data_ptr();
  p.grad_v0 = b.gv0.data_ptr();
  set_scalars(p, tau, v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor);
  p.sg_param = sg_param;
  p.detach_reset = detach_reset ? 1 : 0;
  p.const_input = const_input ? 1 : 0;
  set_params(p, b.np, model);
  p.grad_decay = grad_decay && p.N ? b.g_decay.data_ptr() : nullptr;
  p.grad_th = grad_threshold && p.N ? b.g_th.data_ptr() : nullptr;
  return b;
}

struct Poisson {
  at::Tensor x, seed, out;
  snn::PoissonParams p;
  DType dt;
};

// seed: the Philox key as a one-element int64 tensor. On x's device the kernel reads it when it
// runs: no host synchronisation, and a CUDA graph replays the read (so a key drawn in the graph
// by torch's generator is fresh at every replay). A CPU seed beside a CUDA x is read here, when
// the op is called (host memory: no synchronisation either, but a captured graph keeps it).
inline Poisson prepare_poisson(const at::Tensor& x, int64_t T, const at::Tensor& seed) {
  Poisson e;
  e.dt = dtype_code(x.scalar_type(), "x");
  TORCH_CHECK_VALUE(T >= 1, "snn_cuda: T must be >= 1, got ", T);
  TORCH_CHECK_TYPE(seed.scalar_type() == at::kLong, "snn_cuda: seed must be an int64 tensor, got ", seed.scalar_type());
  TORCH_CHECK_VALUE(seed.numel() == 1, "snn_cuda: seed must have one element, got shape ", seed.sizes());
  const bool on_device = seed.device() == x.device();
  TORCH_CHECK_VALUE(on_device || seed.device().is_cpu(), "snn_cuda: seed is on ", seed.device(), " but x is on ",
                    x.device(), " (it must be on x's device or on the CPU)");
  e.x = x.contiguous();
  e.out = alloc(with_time(T, x.sizes().vec()), x.options());
  e.p.T = T;
  e.p.N = x.numel();
  e.p.x = e.x.data_ptr();
  e.p.out = e.out.data_ptr();
  if (on_device) {
    e.seed = seed;
    e.p.seed_ptr = seed.data_ptr();
    e.p.seed = 0;
  } else {
    e.p.seed_ptr = nullptr;
    e.p.seed = (unsigned long long)*seed.data_ptr<int64_t>();
  }
  return e;
}

// The GPU kernels have no fused readout (on a GPU the spike gradient is one
// cuBLAS product; the fused readout is a CPU-side saving that snn_cuda/ops.py
// only asks for there).
inline void check_no_readout(const c10::optional<at::Tensor>& readout_grad,
                             const c10::optional<at::Tensor>& readout_weight) {
  TORCH_CHECK_VALUE(!(readout_grad.has_value() && readout_grad->defined()) &&
                        !(readout_weight.has_value() && readout_weight->defined()),
                    "snn_cuda: readout_grad / readout_weight are only supported by the CPU kernels; pass grad_spikes");
}

// binary_to_uint8: x != 0 as bytes. No not_binary flag: whether x holds spikes
// is the caller's knowledge (the op's contract), and checking would make the
// result depend on the data and cost a device-to-host read.
struct Narrow {
  at::Tensor x, out;
  snn::NarrowParams p;
  DType dt;
};

inline Narrow prepare_narrow(const at::Tensor& x_in) {
  Narrow c;
  c.dt = dtype_code(x_in.scalar_type(), "x");
  c.x = x_in.contiguous();
  c.out = alloc(c.x.sizes(), c.x.options().dtype(at::kByte));
  c.p = snn::NarrowParams{c.x.numel(), c.x.data_ptr(), c.out.data_ptr(), nullptr};
  return c;
}

// uint8_to: bytes (nonzero: a spike) back to 0/1 of `dtype`.
struct Widen {
  at::Tensor x, out;
  snn::WidenParams p;
  DType dt;
};

inline Widen prepare_widen(const at::Tensor& x_in, at::ScalarType dtype) {
  Widen c;
  c.dt = dtype_code(dtype, "dtype");
  TORCH_CHECK_TYPE(x_in.scalar_type() == at::kByte, "snn_cuda: x must be uint8, got ", x_in.scalar_type());
  c.x = x_in.contiguous();
  c.out = alloc(c.x.sizes(), c.x.options().dtype(dtype));
  c.p = snn::WidenParams{c.x.numel(), c.x.data_ptr(), c.out.data_ptr()};
  return c;
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs(Forward& f) {
  return {f.spikes, f.saved, f.v_seq, f.v_last};
}

inline std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs(Backward& b) {
  return {b.gx, b.gv0, b.g_decay, b.g_th};
}

}  // namespace snn_host
