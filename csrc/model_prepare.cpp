// The host preparation of the declared-model ops (model_host.h) as ops of
// their own, for the CuPy path (snn_cuda/cupy_backend.py): it launches the
// kernels of kernels/model_kernels.cuh compiled by NVRTC and takes their
// checks, outputs and launch structs from here, so that no Python port of
// model_host.h exists. Registered for CompositeExplicitAutograd: they run for
// tensors of any device, CUDA tensors in a CPU-only build included (outputs
// come from at::empty on the tensors' device; nothing here touches the data).
#include <torch/library.h>
#include <ATen/ATen.h>

#include <cstring>
#include <tuple>
#include <vector>

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
                      bool return_states, bool save) {
  (void)detach_reset;
  snn_host::check_surrogate(surrogate, sg_param);
  snn_host::MForward f = snn_host::prepare_model_forward(x, params, state0, T, model, variant, return_states, save);
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
    int64_t surrogate, double sg_param, bool detach_reset, bool grad_params) {
  snn_host::MBackward b =
      snn_host::prepare_model_backward(grad_spikes, grad_state_seq, grad_state_last, x, params, state0, ckpt, T, model,
                                       variant, surrogate, sg_param, detach_reset, grad_params);
  std::vector<at::Tensor> keep;
  for (const at::Tensor* t : {&b.gs, &b.gseq, &b.glast, &b.x, &b.params, &b.state0, &b.ckpt}) keep_if(keep, *t);
  return {b.gx, b.gstate0, b.gparams, keep, packed(b.p), b.p.N};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CompositeExplicitAutograd, m) {
  m.impl("model_prepare_forward", &model_prepare_forward);
  m.impl("model_prepare_backward", &model_prepare_backward);
}
