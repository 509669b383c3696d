// Launchers of the spike <-> byte conversions (csrc/kernels/convert_kernels.cuh).
#include <cuda_runtime.h>

#include "../kernels/convert_kernels.cuh"
#include "launch.h"
#include "occupancy.cuh"

namespace snn_launch {
namespace {

template <typename T>
int narrow_t(const snn::NarrowParams& p, Device dev, cudaStream_t stream) {
  return detail::launch<snn::narrow_kernel<T>>(p, snn::convert_groups(p.n), dev, stream);
}

template <typename T>
int widen_t(const snn::WidenParams& p, Device dev, cudaStream_t stream) {
  return detail::launch<snn::widen_kernel<T>>(p, snn::convert_groups(p.n), dev, stream);
}

}  // namespace

int narrow(const snn::NarrowParams& p, int dtype, Device dev, void* stream_ptr) {
  if (p.n == 0) return 0;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (dtype) {
    case 0:
      return narrow_t<float>(p, dev, stream);
    case 1:
      return narrow_t<double>(p, dev, stream);
    case 2:
      return narrow_t<snn::half_t>(p, dev, stream);
    case 3:
      return narrow_t<snn::bf16_t>(p, dev, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

int widen(const snn::WidenParams& p, int dtype, Device dev, void* stream_ptr) {
  if (p.n == 0) return 0;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (dtype) {
    case 0:
      return widen_t<float>(p, dev, stream);
    case 1:
      return widen_t<double>(p, dev, stream);
    case 2:
      return widen_t<snn::half_t>(p, dev, stream);
    case 3:
      return widen_t<snn::bf16_t>(p, dev, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

int probe_convert(int device) { return detail::probe<snn::widen_kernel<float>>(device); }

}  // namespace snn_launch
