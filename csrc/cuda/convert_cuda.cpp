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

at::Tensor binary_to_uint8_cuda(const at::Tensor& x) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto c = snn_host::prepare_narrow(x);
  if (c.p.n == 0) return c.out;
  const int dev = x.get_device();
  check_launch(snn_launch::narrow(c.p, c.dt, launch_device(dev), c10::cuda::getCurrentCUDAStream(dev).stream()),
               "binary_to_uint8");
  return c.out;
}

at::Tensor uint8_to_cuda(const at::Tensor& x, at::ScalarType dtype) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto c = snn_host::prepare_widen(x, dtype);
  if (c.p.n == 0) return c.out;
  const int dev = x.get_device();
  check_launch(snn_launch::widen(c.p, c.dt, launch_device(dev), c10::cuda::getCurrentCUDAStream(dev).stream()),
               "uint8_to");
  return c.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CUDA, m) {
  m.impl("binary_to_uint8", &binary_to_uint8_cuda);
  m.impl("uint8_to", &uint8_to_cuda);
}
