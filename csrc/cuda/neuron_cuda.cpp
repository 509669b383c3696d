// CUDA registration: device guard, current stream, SM count, launch checks.
// Only this file sees torch; the kernels are launched through launch.h.
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAFunctions.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include <string>
#include <vector>

#include "../host.h"
#include "cuda_glue.h"
#include "launch.h"

namespace {

using snn_cuda_glue::check_launch;
using snn_cuda_glue::launch_device;
using snn_cuda_glue::sm_count;

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> neuron_forward_cuda(
    const at::Tensor& x, const c10::optional<at::Tensor>& v0, const c10::optional<at::Tensor>& decay_param,
    const c10::optional<at::Tensor>& threshold_param, int64_t T, int64_t model, int64_t reset, int64_t surrogate,
    double sg_param, double tau, double v_th, double v_reset, double v_floor, double beta, double v_init,
    bool decay_input, bool has_floor, bool detach_reset, int64_t save_mode, bool store_v_seq, bool spikes_uint8,
    bool batch_first) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto f = snn_host::prepare_forward(x, v0, decay_param, threshold_param, T, model, reset, surrogate, sg_param, tau,
                                     v_th, v_reset, v_floor, beta, v_init, decay_input, has_floor, save_mode,
                                     store_v_seq, spikes_uint8, batch_first);
  const int dev = x.get_device();
  check_launch(
      snn_launch::forward(f.p, f.dt, f.combo, launch_device(dev), c10::cuda::getCurrentCUDAStream(dev).stream()),
      "neuron forward", dev);
  return snn_host::outputs(f);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> neuron_backward_cuda(
    const c10::optional<at::Tensor>& grad_spikes, const c10::optional<at::Tensor>& grad_v_seq,
    const c10::optional<at::Tensor>& grad_v_last, const at::Tensor& saved, const c10::optional<at::Tensor>& x,
    const c10::optional<at::Tensor>& v0, const c10::optional<at::Tensor>& decay_param,
    const c10::optional<at::Tensor>& threshold_param, int64_t T, int64_t save_mode, int64_t model, int64_t reset,
    int64_t surrogate, double sg_param, double tau, double v_th, double v_reset, double v_floor, double beta,
    double v_init, bool decay_input, bool has_floor, bool detach_reset, bool grad_decay, bool grad_threshold,
    at::ScalarType x_dtype, const c10::optional<at::Tensor>& readout_grad,
    const c10::optional<at::Tensor>& readout_weight, bool batch_first) {
  snn_host::check_no_readout(readout_grad, readout_weight);
  const c10::cuda::CUDAGuard guard(saved.device());
  auto b = snn_host::prepare_backward(grad_spikes, grad_v_seq, grad_v_last, saved, x, v0, decay_param, threshold_param,
                                      T, save_mode, model, reset, surrogate, sg_param, tau, v_th, v_reset, v_floor,
                                      beta, v_init, decay_input, has_floor, detach_reset, grad_decay, grad_threshold,
                                      x_dtype, batch_first);
  const int dev = saved.get_device();
  check_launch(
      snn_launch::backward(b.p, b.dt, b.combo, b.sg, launch_device(dev), c10::cuda::getCurrentCUDAStream(dev).stream()),
      "neuron backward", dev);
  return snn_host::outputs(b);
}

at::Tensor poisson_encode_cuda(const at::Tensor& x, int64_t T, const at::Tensor& seed) {
  // A CUDA seed routes a CPU x here: the op's message, not the device guard's.
  TORCH_CHECK_VALUE(x.is_cuda(), "snn_cuda: seed is on ", seed.device(), " but x is on ", x.device(),
                    " (it must be on x's device or on the CPU)");
  const c10::cuda::CUDAGuard guard(x.device());
  auto e = snn_host::prepare_poisson(x, T, seed);
  const int dev = x.get_device();
  check_launch(snn_launch::poisson(e.p, e.dt, sm_count(dev), c10::cuda::getCurrentCUDAStream(dev).stream()),
               "Poisson encoder");
  return e.out;
}

}  // namespace

// The Python layers ask this before their first call on a device (snn_cuda/_ext.py,
// kernel_image_reason): a build without an image for the GPU would otherwise
// fail at every launch, and backend="auto" could not fall back.
int64_t cuda_kernel_image_status(int64_t device) {
  TORCH_CHECK_VALUE(device >= 0 && device < c10::cuda::device_count(),
                    "snn_cuda: device must be a CUDA device index in [0, ", (int)c10::cuda::device_count(), "), got ",
                    device);
  const c10::cuda::CUDAGuard guard((c10::DeviceIndex)device);
  return snn_launch::probe_kernel_image((int)device);
}

// [forward blocks/SM, backward blocks/SM, SMs] of the representative kernels
// (LIF, hard reset; backward ATan) of `dtype`, for the check report.
std::vector<int64_t> cuda_occupancy(int64_t device, at::ScalarType dtype) {
  TORCH_CHECK_VALUE(device >= 0 && device < c10::cuda::device_count(),
                    "snn_cuda: device must be a CUDA device index in [0, ", (int)c10::cuda::device_count(), "), got ",
                    device);
  const int dt = snn_host::dtype_code(dtype, "dtype");
  const c10::cuda::CUDAGuard guard((c10::DeviceIndex)device);
  return {snn_launch::occupancy_fwd(dt, (int)device), snn_launch::occupancy_bwd(dt, (int)device),
          sm_count((int)device)};
}

TORCH_LIBRARY_FRAGMENT(snn_cuda, m) {
  // cudaError_t of resolving the compiled kernels on CUDA device `device`
  // (0: they run; 209 cudaErrorNoKernelImageForDevice: built for other GPUs).
  m.def("cuda_kernel_image_status(int device) -> int", &cuda_kernel_image_status);
  m.def("cuda_occupancy(int device, ScalarType dtype) -> int[]", &cuda_occupancy);
}

TORCH_LIBRARY_IMPL(snn_cuda, CUDA, m) {
  m.impl("poisson_encode", &poisson_encode_cuda);
  m.impl("neuron_forward", &neuron_forward_cuda);
  m.impl("neuron_backward", &neuron_backward_cuda);
}
