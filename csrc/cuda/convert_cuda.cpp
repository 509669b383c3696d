// CUDA registration of the spike <-> byte conversions (binary_to_uint8,
// uint8_to), with the schemas and results of their CPU kernels
// (csrc/cpu/encoder_cpu.cpp). Only this file sees torch; the kernels are
// launched through launch.h (csrc/cuda/convert.cu).
#include <torch/library.h>
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>

#include "../host.h"
#include "cuda_glue.h"
#include "launch.h"

namespace {

using snn_cuda_glue::check_launch;
using snn_cuda_glue::launch_device;

at::Tensor binary_to_uint8_cuda(const at::Tensor& x_in) {
  const auto dt = snn_host::dtype_code(x_in.scalar_type(), "x");
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(at::kByte));
  const int64_t n = x.numel();
  if (n == 0) return out;
  const int dev = x.get_device();
  // x != 0, unchecked: whether x holds spikes is the caller's knowledge (the
  // op's contract, as on the CPU). Checking would make the result depend on
  // the data and cost a device-to-host read.
  snn::NarrowParams p{n, x.data_ptr(), out.data_ptr(), nullptr};
  check_launch(snn_launch::narrow(p, dt, launch_device(dev), c10::cuda::getCurrentCUDAStream(dev).stream()),
               "binary_to_uint8");
  return out;
}

at::Tensor uint8_to_cuda(const at::Tensor& x_in, at::ScalarType dtype) {
  const auto dt = snn_host::dtype_code(dtype, "dtype");
  TORCH_CHECK_TYPE(x_in.scalar_type() == at::kByte, "snn_cuda: x must be uint8, got ", x_in.scalar_type());
  const c10::cuda::CUDAGuard guard(x_in.device());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = at::empty(x.sizes(), x.options().dtype(dtype));
  const int64_t n = x.numel();
  if (n == 0) return out;
  const int dev = x.get_device();
  snn::WidenParams p{n, x.data_ptr(), out.data_ptr()};
  check_launch(snn_launch::widen(p, dt, launch_device(dev), c10::cuda::getCurrentCUDAStream(dev).stream()), "uint8_to");
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CUDA, m) {
  m.impl("binary_to_uint8", &binary_to_uint8_cuda);
  m.impl("uint8_to", &uint8_to_cuda);
}
