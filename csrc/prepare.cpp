// The host preparation of the ops (host.h, model_host.h) as ops of their
// own, for the CuPy path (snn_cuda/cupy_backend.py): it launches the kernels
// of kernels/*_kernels.cuh compiled by NVRTC and takes their checks, outputs,
// launch structs and work items from here, the very functions the compiled
// CUDA and CPU ops call, so that no Python port of the host code exists.
// Registered for CompositeExplicitAutograd: they run for tensors of any
// device, CUDA tensors in a CPU-only build included (outputs are allocated
// on the tensors' device as the compiled ops allocate them; nothing here
// reads tensor data but a CPU Poisson seed, as the compiled ops do).
#include <torch/library.h>
#include <ATen/ATen.h>

#include <cstring>
#include <tuple>
#include <vector>

#include "host.h"
#include "model_host.h"

namespace {

template <typename P>
at::Tensor packed(const P& p) {
  at::Tensor t = at::empty({(int64_t)sizeof(P)}, at::TensorOptions().dtype(at::kByte));
  std::memcpy(t.data_ptr(), &p, sizeof(P));
  return t;
}

void keep_if(std::vector<at::Tensor>& keep, const at::Tensor& t) {
  if (t.defined()) keep.push_back(t);
}

// Returns (spikes, state_seq, state_last, ckpt, keep, launch, N): the outputs
// of model_forward, the tensors the launch struct points into (they must live
// until the kernel has run), the struct MFwdParams as sizeof(MFwdParams)
// bytes and the kernel's work items.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t>
model_prepare_forward(const at::Tensor& x, const at::Tensor& params, const c10::optional<at::Tensor>& state0, int64_t T,
                      int64_t model, int64_t variant, int64_t surrogate, double sg_param, bool detach_reset,
                      bool return_states, bool save, bool batch_first, bool spikes_uint8) {
  (void)detach_reset;
  snn_host::check_surrogate(surrogate, sg_param);
  snn_host::MForward f = snn_host::prepare_model_forward(x, params, state0, T, model, variant, return_states, save,
                                                         true, batch_first, spikes_uint8);
  std::vector<at::Tensor> keep;
  keep_if(keep, f.x);
  keep_if(keep, f.params);
  keep_if(keep, f.state0);
  return {f.spikes, f.state_seq, f.state_last, f.ckpt, keep, packed(f.p), f.p.N};
}

// Returns (grad_x, grad_state0, grad_params, keep, launch, N) as above, the
// struct MBwdParams.
std::tuple<at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t> model_prepare_backward(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_state_seq,
    const c10::optional<at::Tensor>& grad_state_last, const at::Tensor& x, const at::Tensor& params,
    const c10::optional<at::Tensor>& state0, const at::Tensor& ckpt, int64_t T, int64_t model, int64_t variant,
    int64_t surrogate, double sg_param, bool detach_reset, bool grad_params, bool batch_first,
    const c10::optional<at::Tensor>& state_seq, const c10::optional<at::Tensor>& readout_grad,
    const c10::optional<at::Tensor>& readout_weight) {
  snn_host::check_no_readout(readout_grad, readout_weight);
  snn_host::MBackward b =
      snn_host::prepare_model_backward(grad_spikes, grad_state_seq, grad_state_last, x, params, state0, ckpt, T, model,
                                       variant, surrogate, sg_param, detach_reset, grad_params, batch_first, state_seq);
  std::vector<at::Tensor> keep;
  for (const at::Tensor* t : {&b.gs, &b.gseq, &b.glast, &b.x, &b.params, &b.state0, &b.ckpt, &b.seq}) keep_if(keep, *t);
  return {b.gx, b.gstate0, b.gparams, keep, packed(b.p), b.p.N};
}

// The one-state ops return, after the outputs, keep and launch as above and
// the work items, the kernel instance: [dtype (host.h DType), combo (the
// compiled (model, reset), host.h combo_index), surrogate] for the neuron
// backward, [dtype, combo] for the forward, [dtype] for the others.
using Instance = std::vector<int64_t>;

// Returns (spikes, saved, v_seq, v_last, keep, launch, N, instance), the
// struct FwdParams.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t, Instance>
neuron_prepare_forward(const at::Tensor& x, const c10::optional<at::Tensor>& v0,
                       const c10::optional<at::Tensor>& decay_param, const c10::optional<at::Tensor>& threshold_param,
                       int64_t T, int64_t model, int64_t reset, int64_t surrogate, double sg_param, double tau,
                       double v_th, double v_reset, double v_floor, double beta, double v_init, bool decay_input,
                       bool has_floor, bool detach_reset, int64_t save_mode, bool store_v_seq, bool spikes_uint8,
                       bool batch_first) {
  (void)detach_reset;
  snn_host::Forward f = snn_host::prepare_forward(x, v0, decay_param, threshold_param, T, model, reset, surrogate,
                                                  sg_param, tau, v_th, v_reset, v_floor, beta, v_init, decay_input,
                                                  has_floor, save_mode, store_v_seq, spikes_uint8, batch_first);
  std::vector<at::Tensor> keep;
  for (const at::Tensor* t : {&f.x, &f.v0, &f.np.decay, &f.np.th}) keep_if(keep, *t);
  return {f.spikes, f.saved, f.v_seq, f.v_last, keep, packed(f.p), f.p.N, Instance{f.dt, f.combo}};
}

// Returns (grad_x, grad_v0, grad_decay, grad_threshold, keep, launch, N,
// instance), the struct BwdParams.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t, Instance>
neuron_prepare_backward(const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_v_seq,
                        const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved,
                        const c10::optional<at::Tensor>& x, const c10::optional<at::Tensor>& v0,
                        const c10::optional<at::Tensor>& decay_param, const c10::optional<at::Tensor>& threshold_param,
                        int64_t T, int64_t save_mode, int64_t model, int64_t reset, int64_t surrogate, double sg_param,
                        double tau, double v_th, double v_reset, double v_floor, double beta, double v_init,
                        bool decay_input, bool has_floor, bool detach_reset, bool grad_decay, bool grad_threshold,
                        at::ScalarType x_dtype, const c10::optional<at::Tensor>& readout_grad,
                        const c10::optional<at::Tensor>& readout_weight, bool batch_first) {
  snn_host::check_no_readout(readout_grad, readout_weight);
  snn_host::Backward b = snn_host::prepare_backward(grad_spikes, grad_v_seq, grad_v_last, saved, x, v0, decay_param,
                                                    threshold_param, T, save_mode, model, reset, surrogate, sg_param,
                                                    tau, v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor,
                                                    detach_reset, grad_decay, grad_threshold, x_dtype, batch_first);
  std::vector<at::Tensor> keep;
  for (const at::Tensor* t : {&b.gs, &b.gv, &b.gvl, &b.saved, &b.x, &b.v0, &b.np.decay, &b.np.th}) keep_if(keep, *t);
  return {b.gx, b.gv0, b.g_decay, b.g_th, keep, packed(b.p), b.p.N, Instance{b.dt, b.combo, b.sg}};
}

// Returns (out, keep, launch, work items, instance), the struct PoissonParams; a work
// item is a group of four elements (encoder.h poisson_groups).
std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t, Instance> poisson_prepare(const at::Tensor& x,
                                                                                               int64_t T,
                                                                                               const at::Tensor& seed) {
  snn_host::Poisson e = snn_host::prepare_poisson(x, T, seed);
  std::vector<at::Tensor> keep;
  keep_if(keep, e.x);
  keep_if(keep, e.seed);
  return {e.out, keep, packed(e.p), snn::poisson_groups(e.p), Instance{e.dt}};
}

// Returns (out, keep, launch, work items, instance), the struct NarrowParams /
// WidenParams;
// a work item is kConvertVec elements (convert.h convert_groups).
std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t, Instance> narrow_prepare(const at::Tensor& x) {
  snn_host::Narrow c = snn_host::prepare_narrow(x);
  return {c.out, {c.x}, packed(c.p), snn::convert_groups(c.p.n), Instance{c.dt}};
}

std::tuple<at::Tensor, std::vector<at::Tensor>, at::Tensor, int64_t, Instance> widen_prepare(const at::Tensor& x,
                                                                                             at::ScalarType dtype) {
  snn_host::Widen c = snn_host::prepare_widen(x, dtype);
  return {c.out, {c.x}, packed(c.p), snn::convert_groups(c.p.n), Instance{c.dt}};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CompositeExplicitAutograd, m) {
  m.impl("model_prepare_forward", &model_prepare_forward);
  m.impl("model_prepare_backward", &model_prepare_backward);
  m.impl("neuron_prepare_forward", &neuron_prepare_forward);
  m.impl("neuron_prepare_backward", &neuron_prepare_backward);
  m.impl("poisson_prepare", &poisson_prepare);
  m.impl("narrow_prepare", &narrow_prepare);
  m.impl("widen_prepare", &widen_prepare);
}
