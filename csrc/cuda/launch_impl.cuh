// Template launchers, instantiated once per storage dtype by the
// neuron_<dtype>.cu files (so nvcc compiles the dtypes in parallel).
#pragma once
#include <utility>
#include <cuda_runtime.h>

#include "../kernels/neuron_kernels.cuh"
#include "launch.h"
#include "occupancy.cuh"

namespace snn_launch {
namespace detail {

using namespace snn;

template <typename T>
int forward_t(const FwdParams& p, int combo, Device dev, void* stream_ptr) {
  if (p.N == 0) return 0;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (combo) {
    case 0:
      return launch<neuron_fwd_kernel<MODEL_LIF, RESET_HARD, T>>(p, p.N, dev, stream);
    case 1:
      return launch<neuron_fwd_kernel<MODEL_LIF, RESET_SOFT, T>>(p, p.N, dev, stream);
    case 2:
      return launch<neuron_fwd_kernel<MODEL_IF, RESET_HARD, T>>(p, p.N, dev, stream);
    case 3:
      return launch<neuron_fwd_kernel<MODEL_IF, RESET_SOFT, T>>(p, p.N, dev, stream);
    case 4:
      return launch<neuron_fwd_kernel<MODEL_LEAKY, RESET_HARD, T>>(p, p.N, dev, stream);
    case 5:
      return launch<neuron_fwd_kernel<MODEL_LEAKY, RESET_SOFT, T>>(p, p.N, dev, stream);
    case 6:
      return launch<neuron_fwd_kernel<MODEL_LEAKY, RESET_NONE, T>>(p, p.N, dev, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

// Every surrogate of the generated enum (surrogate_list.h): no list to keep.
template <int MODEL, int RESET, typename T, int... SGs>
int backward_sgs(const BwdParams& p, int sg, Device dev, cudaStream_t stream, std::integer_sequence<int, SGs...>) {
  int err = (int)cudaErrorInvalidValue;
  ((sg == SGs ? (void)(err = launch<neuron_bwd_kernel<MODEL, RESET, SGs, T>>(p, p.N, dev, stream)) : void()), ...);
  return err;
}

template <int MODEL, int RESET, typename T>
int backward_sg(const BwdParams& p, int sg, Device dev, cudaStream_t stream) {
  return backward_sgs<MODEL, RESET, T>(p, sg, dev, stream, std::make_integer_sequence<int, SG_COUNT>{});
}

template <typename T>
int backward_t(const BwdParams& p, int combo, int sg, Device dev, void* stream_ptr) {
  if (p.N == 0) return 0;
  if (sg < 0 || sg >= SG_COUNT) return (int)cudaErrorInvalidValue;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (combo) {
    case 0:
      return backward_sg<MODEL_LIF, RESET_HARD, T>(p, sg, dev, stream);
    case 1:
      return backward_sg<MODEL_LIF, RESET_SOFT, T>(p, sg, dev, stream);
    case 2:
      return backward_sg<MODEL_IF, RESET_HARD, T>(p, sg, dev, stream);
    case 3:
      return backward_sg<MODEL_IF, RESET_SOFT, T>(p, sg, dev, stream);
    case 4:
      return backward_sg<MODEL_LEAKY, RESET_HARD, T>(p, sg, dev, stream);
    case 5:
      return backward_sg<MODEL_LEAKY, RESET_SOFT, T>(p, sg, dev, stream);
    case 6:
      return backward_sg<MODEL_LEAKY, RESET_NONE, T>(p, sg, dev, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

}  // namespace detail
}  // namespace snn_launch

#define SNN_DEFINE_LAUNCHERS(SUFFIX, TYPE)                                                                         \
  namespace snn_launch {                                                                                           \
  int forward_##SUFFIX(const snn::FwdParams& p, int combo, Device dev, void* stream) {                             \
    return detail::forward_t<TYPE>(p, combo, dev, stream);                                                         \
  }                                                                                                                \
  int backward_##SUFFIX(const snn::BwdParams& p, int combo, int sg, Device dev, void* stream) {                    \
    return detail::backward_t<TYPE>(p, combo, sg, dev, stream);                                                    \
  }                                                                                                                \
  int probe_##SUFFIX(int device) {                                                                                 \
    return detail::probe<snn::neuron_fwd_kernel<snn::MODEL_LIF, snn::RESET_HARD, TYPE>>(device);                   \
  }                                                                                                                \
  int occupancy_fwd_##SUFFIX(int device) {                                                                         \
    return detail::occupancy<snn::neuron_fwd_kernel<snn::MODEL_LIF, snn::RESET_HARD, TYPE>>(device);               \
  }                                                                                                                \
  int occupancy_bwd_##SUFFIX(int device) {                                                                         \
    return detail::occupancy<snn::neuron_bwd_kernel<snn::MODEL_LIF, snn::RESET_HARD, snn::SG_ATAN, TYPE>>(device); \
  }                                                                                                                \
  }
