// Host-side preparation of the declared-model ops (kernels/models.h), shared
// by the CPU and CUDA implementations: argument checks naming the parameter,
// flattening to [T, N], output allocation and the launch parameter structs.
#pragma once
#include "host.h"
#include "kernels/models.h"

namespace snn_host {

struct ModelInfo {
  const char* name;
  int states, params, variants;
};

inline const ModelInfo& model_info(int64_t model) {
#define SNN_INFO(id, M, name, ns, sn, np, pn, nv, vn) {name, ns, np, nv},
  static const ModelInfo info[] = {SNN_MODEL_LIST(SNN_INFO)};
#undef SNN_INFO
  TORCH_CHECK_VALUE(model >= 0 && model < snn::MODEL_COUNT, "snn_cuda: model must be in [0, ", (int)snn::MODEL_COUNT,
                    "), got ", model);
  return info[model];
}

inline void check_variant(const ModelInfo& m, int64_t variant) {
  TORCH_CHECK_VALUE(variant >= 0 && variant < m.variants, "snn_cuda: variant must be in [0, ", m.variants,
                    ") for model ", m.name, ", got ", variant);
}

inline std::vector<int64_t> lead(int64_t a, const std::vector<int64_t>& rest) {
  std::vector<int64_t> s{a};
  s.insert(s.end(), rest.begin(), rest.end());
  return s;
}

struct MForward {
  at::Tensor x, params, state0, spikes, state_seq, state_last, ckpt;
  std::vector<int64_t> rest;  // the shape of one step, in neuron order
  std::vector<int64_t> seq;   // the shape of a sequence: [T, ...], or [B, T, ...] when batch_first
  snn::MFwdParams p;
  DType dt;
  int model, variant;
};

// x: [T, ...] (T_const = -1; [B, T, ...] when batch_first) or [...] fed at
// each of T_const steps.
// params: [kParams, P] in the state dtype, P dividing the neurons of a step.
// state0: [kStates, ...] in the state dtype, or none.
inline MForward prepare_model_forward(const at::Tensor& x_in, const at::Tensor& params,
                                      const c10::optional<at::Tensor>& state0, int64_t T_const, int64_t model,
                                      int64_t variant, bool return_states, bool save, bool outputs = true,
                                      bool batch_first = false, bool spikes_uint8 = false) {
  MForward f;
  const ModelInfo& m = model_info(model);
  check_variant(m, variant);
  f.model = (int)model;
  f.variant = (int)variant;
  f.dt = dtype_code(x_in.scalar_type(), "x");
  const TimeLayout tl = time_layout(x_in, T_const, batch_first);
  const int64_t T = tl.T;
  const std::vector<int64_t>& rest = tl.rest;
  f.x = tl.x;
  const at::ScalarType sdt = state_dtype(x_in.scalar_type());
  const auto sopt = x_in.options().dtype(sdt);
  int64_t N = 1;
  for (int64_t d : rest) N *= d;
  TORCH_CHECK_VALUE(params.device() == x_in.device(), "snn_cuda: params is on ", params.device(),
                    " but the input is on ", x_in.device());
  TORCH_CHECK_TYPE(params.scalar_type() == sdt, "snn_cuda: params must have the state dtype ", sdt, ", got ",
                   params.scalar_type());
  TORCH_CHECK_VALUE(
      params.dim() == 2 && params.size(0) == m.params && params.size(1) >= 1 && (N == 0 || N % params.size(1) == 0),
      "snn_cuda: params must be [", m.params, ", P] for model ", m.name, " with P dividing the neurons of a step (", N,
      "), got ", params.sizes());
  f.params = params.contiguous();
  f.state0 = checked_state(state0, "state0", x_in, sdt, lead(m.states, rest));
  f.rest = rest;
  f.seq = tl.seq(T);
  snn::MFwdParams& p = f.p;
  p = snn::MFwdParams{};
  if (outputs) {
    f.spikes = alloc(f.seq, spikes_uint8 ? x_in.options().dtype(at::kByte) : x_in.options());
    f.state_seq = return_states ? alloc(lead(m.states, f.seq), sopt) : at::empty({0}, sopt);
    f.state_last = alloc(lead(m.states, rest), sopt);
    f.ckpt = save ? alloc({snn::num_chunks(T), m.states, N}, sopt) : at::empty({0}, sopt);
    p.spikes = f.spikes.data_ptr();
    p.state_seq = f.state_seq.numel() ? f.state_seq.data_ptr() : nullptr;
    p.state_last = f.state_last.data_ptr();
    p.ckpt = f.ckpt.numel() ? f.ckpt.data_ptr() : nullptr;
  }
  p.spikes_u8 = spikes_uint8 ? 1 : 0;
  p.T = T;
  p.N = N;
  p.x_tstride = tl.x_tstride;
  p.io = tl.io;
  p.x = f.x.data_ptr();
  p.params = f.params.data_ptr();
  p.P = f.params.size(1);
  p.state0 = f.state0.defined() ? f.state0.data_ptr() : nullptr;
  return f;
}

struct MBackward {
  at::Tensor gs, gseq, glast, x, params, state0, ckpt, seq, gx, gstate0, gparams;
  snn::MBwdParams p;
  DType dt;
  int model, variant, sg;
};

inline MBackward prepare_model_backward(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_state_seq,
    const c10::optional<at::Tensor>& grad_state_last, const at::Tensor& x_in, const at::Tensor& params,
    const c10::optional<at::Tensor>& state0, const at::Tensor& ckpt, int64_t T_const, int64_t model, int64_t variant,
    int64_t surrogate, double sg_param, bool detach_reset, bool grad_params, bool batch_first = false,
    const c10::optional<at::Tensor>& state_seq = c10::nullopt, bool replays = true) {
  MBackward b;
  // The forward's checks and layout, without its outputs.
  MForward f = prepare_model_forward(x_in, params, state0, T_const, model, variant, false, false, false, batch_first);
  const ModelInfo& m = model_info(model);
  check_surrogate(surrogate, sg_param);
  b.model = f.model;
  b.variant = f.variant;
  b.sg = (int)surrogate;
  b.dt = f.dt;
  b.x = f.x;
  b.params = f.params;
  b.state0 = f.state0;
  const int64_t T = f.p.T, N = f.p.N;
  const std::vector<int64_t>& rest = f.rest;
  const at::ScalarType sdt = state_dtype(x_in.scalar_type());
  const auto sopt = x_in.options().dtype(sdt);
  b.gs = checked_grad(grad_spikes, "grad_spikes", x_in, x_in.scalar_type(), f.seq);
  b.gseq = checked_grad(grad_state_seq, "grad_state_seq", x_in, sdt, lead(m.states, f.seq));
  b.glast = checked_grad(grad_state_last, "grad_state_last", x_in, sdt, lead(m.states, rest));
  // The forward's state sequence as it wrote it ([kStates, T, ...], or
  // [kStates, B, T, ...] batch-first).
  b.seq = checked_grad(state_seq, "state_seq", x_in, sdt, lead(m.states, f.seq));
  // The CPU kernels read every state from state_seq, so a forward that
  // returned it needs no checkpoints for them (model_ops saves none); the
  // kernel bodies of kernels/model_kernels.cuh (CUDA, the CuPy path:
  // `replays`) always replay from them.
  const bool no_ckpt = ckpt.numel() == 0 && b.seq.defined() && !replays;
  TORCH_CHECK_VALUE(no_ckpt || (ckpt.device() == x_in.device() && ckpt.scalar_type() == sdt &&
                                ckpt.sizes().vec() == std::vector<int64_t>({snn::num_chunks(T), m.states, N})),
                    "snn_cuda: ckpt must be the forward's checkpoints, ", sdt, " [", snn::num_chunks(T), ", ", m.states,
                    ", ", N, "] on ", x_in.device(), " (or empty for the CPU kernels when state_seq is given), got ",
                    ckpt.scalar_type(), " ", ckpt.sizes(), " on ", ckpt.device());
  b.ckpt = no_ckpt ? at::Tensor() : ckpt.contiguous();
  const bool const_input = T_const >= 0;
  b.gx = alloc(const_input ? rest : f.seq, x_in.options());
  b.gstate0 = alloc(lead(m.states, rest), sopt);
  b.gparams = grad_params ? alloc({m.params, N}, sopt) : at::empty({0}, sopt);

  snn::MBwdParams& p = b.p;
  p.T = T;
  p.N = N;
  p.x_tstride = f.p.x_tstride;
  p.io = f.p.io;
  p.x = f.p.x;
  p.params = f.p.params;
  p.P = f.p.P;
  p.state0 = f.p.state0;
  p.ckpt = b.ckpt.defined() ? b.ckpt.data_ptr() : nullptr;
  p.state_seq = b.seq.defined() ? b.seq.data_ptr() : nullptr;
  p.grad_spikes = b.gs.defined() ? b.gs.data_ptr() : nullptr;
  p.grad_state_seq = b.gseq.defined() ? b.gseq.data_ptr() : nullptr;
  p.grad_state_last = b.glast.defined() ? b.glast.data_ptr() : nullptr;
  p.grad_x = b.gx.data_ptr();
  p.grad_state0 = b.gstate0.data_ptr();
  p.grad_params = grad_params && b.gparams.numel() ? b.gparams.data_ptr() : nullptr;
  p.sg_param = sg_param;
  p.surrogate = (int)surrogate;
  p.detach_reset = detach_reset ? 1 : 0;
  p.const_input = const_input ? 1 : 0;
  return b;
}

}  // namespace snn_host
