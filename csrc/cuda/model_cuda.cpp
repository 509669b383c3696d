// CUDA registration of the declared-model ops (model_forward / model_backward,
// kernels/models.h): the host checks and outputs of model_host.h (shared with
// the CPU implementation), device guard, current stream, launch checks. The
// kernels are launched through model_launch.h (no torch on the .cu side).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <string>

#include "../model_host.h"
#include "cuda_glue.h"
#include "model_launch.h"

namespace {

using snn_cuda_glue::check_launch;
using snn_cuda_glue::sm_count;

std::string model_what(const char* pass, int model, int variant) {
  return std::string(snn_host::model_info(model).name) + " (variant " + std::to_string(variant) + ") " + pass;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> model_forward_cuda(
    const at::Tensor& x, const at::Tensor& params, const c10::optional<at::Tensor>& state0, int64_t T, int64_t model,
    int64_t variant, int64_t surrogate, double sg_param, bool detach_reset, bool return_states, bool save,
    bool batch_first, bool spikes_uint8) {
  // The checks first: a CPU x beside CUDA params lands here, and the checks
  // name the mismatch where a guard on a CPU device would not.
  snn_host::check_surrogate(surrogate, sg_param);
  auto f = snn_host::prepare_model_forward(x, params, state0, T, model, variant, return_states, save, true, batch_first,
                                           spikes_uint8);
  const c10::cuda::CUDAGuard guard(x.device());
  const int dev = x.get_device();
  const snn_launch::Device d{dev, sm_count(dev)};
  void* stream = c10::cuda::getCurrentCUDAStream(dev).stream();
  int err = (int)cudaErrorInvalidValue;
  switch (f.dt) {
    case snn_host::DT_F32:
      err = snn_launch::model_forward_f32(f.p, f.model, f.variant, d, stream);
      break;
    case snn_host::DT_F64:
      err = snn_launch::model_forward_f64(f.p, f.model, f.variant, d, stream);
      break;
    case snn_host::DT_F16:
      err = snn_launch::model_forward_f16(f.p, f.model, f.variant, d, stream);
      break;
    case snn_host::DT_BF16:
      err = snn_launch::model_forward_bf16(f.p, f.model, f.variant, d, stream);
      break;
  }
  check_launch(err, model_what("forward", f.model, f.variant).c_str(), dev);
  return {f.spikes, f.state_seq, f.state_last, f.ckpt};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> model_backward_cuda(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_state_seq,
    const c10::optional<at::Tensor>& grad_state_last, const at::Tensor& x, const at::Tensor& params,
    const c10::optional<at::Tensor>& state0, const at::Tensor& ckpt, int64_t T, int64_t model, int64_t variant,
    int64_t surrogate, double sg_param, bool detach_reset, bool grad_params, bool batch_first,
    const c10::optional<at::Tensor>& state_seq, const c10::optional<at::Tensor>& readout_grad,
    const c10::optional<at::Tensor>& readout_weight) {
  snn_host::check_no_readout(readout_grad, readout_weight);
  auto b =
      snn_host::prepare_model_backward(grad_spikes, grad_state_seq, grad_state_last, x, params, state0, ckpt, T, model,
                                       variant, surrogate, sg_param, detach_reset, grad_params, batch_first, state_seq);
  const c10::cuda::CUDAGuard guard(x.device());
  const int dev = x.get_device();
  const snn_launch::Device d{dev, sm_count(dev)};
  void* stream = c10::cuda::getCurrentCUDAStream(dev).stream();
  int err = (int)cudaErrorInvalidValue;
  switch (b.dt) {
    case snn_host::DT_F32:
      err = snn_launch::model_backward_f32(b.p, b.model, b.variant, d, stream);
      break;
    case snn_host::DT_F64:
      err = snn_launch::model_backward_f64(b.p, b.model, b.variant, d, stream);
      break;
    case snn_host::DT_F16:
      err = snn_launch::model_backward_f16(b.p, b.model, b.variant, d, stream);
      break;
    case snn_host::DT_BF16:
      err = snn_launch::model_backward_bf16(b.p, b.model, b.variant, d, stream);
      break;
  }
  check_launch(err, model_what("backward", b.model, b.variant).c_str(), dev);
  return {b.gx, b.gstate0, b.gparams};
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CUDA, m) {
  m.impl("model_forward", &model_forward_cuda);
  m.impl("model_backward", &model_backward_cuda);
}
