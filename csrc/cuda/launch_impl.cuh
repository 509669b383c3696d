// Template launchers, instantiated once per storage dtype by the
// neuron_<dtype>.cu files (so nvcc compiles the dtypes in parallel).
#pragma once
#include <cuda_runtime.h>

#include "../kernels/neuron_kernels.cuh"
#include "launch.h"

namespace snn_launch {
namespace detail {

using namespace snn;

template <typename T>
int forward_t(const FwdParams& p, int combo, int sm_count, void* stream_ptr) {
  if (p.N == 0) return 0;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  const dim3 block(kBlockThreads);
  const dim3 grid((unsigned)grid_blocks(p.N, kBlockThreads, sm_count));
  switch (combo) {
    case 0:
      neuron_fwd_kernel<MODEL_LIF, RESET_HARD, T><<<grid, block, 0, stream>>>(p);
      break;
    case 1:
      neuron_fwd_kernel<MODEL_LIF, RESET_SOFT, T><<<grid, block, 0, stream>>>(p);
      break;
    case 2:
      neuron_fwd_kernel<MODEL_IF, RESET_HARD, T><<<grid, block, 0, stream>>>(p);
      break;
    case 3:
      neuron_fwd_kernel<MODEL_IF, RESET_SOFT, T><<<grid, block, 0, stream>>>(p);
      break;
    case 4:
      neuron_fwd_kernel<MODEL_LEAKY, RESET_HARD, T><<<grid, block, 0, stream>>>(p);
      break;
    case 5:
      neuron_fwd_kernel<MODEL_LEAKY, RESET_SOFT, T><<<grid, block, 0, stream>>>(p);
      break;
    case 6:
      neuron_fwd_kernel<MODEL_LEAKY, RESET_NONE, T><<<grid, block, 0, stream>>>(p);
      break;
    default:
      return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

template <int MODEL, int RESET, typename T>
void backward_sg(const BwdParams& p, int sg, dim3 grid, dim3 block, cudaStream_t stream) {
  switch (sg) {
    case SG_SIGMOID:
      neuron_bwd_kernel<MODEL, RESET, SG_SIGMOID, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_ATAN:
      neuron_bwd_kernel<MODEL, RESET, SG_ATAN, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_FAST_SIGMOID:
      neuron_bwd_kernel<MODEL, RESET, SG_FAST_SIGMOID, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_PIECEWISE_QUADRATIC:
      neuron_bwd_kernel<MODEL, RESET, SG_PIECEWISE_QUADRATIC, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_PIECEWISE_EXP:
      neuron_bwd_kernel<MODEL, RESET, SG_PIECEWISE_EXP, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_SOFT_SIGN:
      neuron_bwd_kernel<MODEL, RESET, SG_SOFT_SIGN, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_ERF:
      neuron_bwd_kernel<MODEL, RESET, SG_ERF, T><<<grid, block, 0, stream>>>(p);
      break;
    case SG_RECT:
      neuron_bwd_kernel<MODEL, RESET, SG_RECT, T><<<grid, block, 0, stream>>>(p);
      break;
    default:
      neuron_bwd_kernel<MODEL, RESET, SG_STRAIGHT_THROUGH, T><<<grid, block, 0, stream>>>(p);
      break;
  }
}

template <typename T>
int backward_t(const BwdParams& p, int combo, int sg, int sm_count, void* stream_ptr) {
  if (p.N == 0) return 0;
  if (sg < 0 || sg >= SG_COUNT) return (int)cudaErrorInvalidValue;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  const dim3 block(kBlockThreads);
  const dim3 grid((unsigned)grid_blocks(p.N, kBlockThreads, sm_count));
  switch (combo) {
    case 0:
      backward_sg<MODEL_LIF, RESET_HARD, T>(p, sg, grid, block, stream);
      break;
    case 1:
      backward_sg<MODEL_LIF, RESET_SOFT, T>(p, sg, grid, block, stream);
      break;
    case 2:
      backward_sg<MODEL_IF, RESET_HARD, T>(p, sg, grid, block, stream);
      break;
    case 3:
      backward_sg<MODEL_IF, RESET_SOFT, T>(p, sg, grid, block, stream);
      break;
    case 4:
      backward_sg<MODEL_LEAKY, RESET_HARD, T>(p, sg, grid, block, stream);
      break;
    case 5:
      backward_sg<MODEL_LEAKY, RESET_SOFT, T>(p, sg, grid, block, stream);
      break;
    case 6:
      backward_sg<MODEL_LEAKY, RESET_NONE, T>(p, sg, grid, block, stream);
      break;
    default:
      return (int)cudaErrorInvalidValue;
  }
  return (int)cudaGetLastError();
}

}  // namespace detail
}  // namespace snn_launch

#define SNN_DEFINE_LAUNCHERS(SUFFIX, TYPE)                                                        \
  namespace snn_launch {                                                                          \
  int forward_##SUFFIX(const snn::FwdParams& p, int combo, int sm_count, void* stream) {          \
    return detail::forward_t<TYPE>(p, combo, sm_count, stream);                                   \
  }                                                                                               \
  int backward_##SUFFIX(const snn::BwdParams& p, int combo, int sg, int sm_count, void* stream) { \
    return detail::backward_t<TYPE>(p, combo, sg, sm_count, stream);                              \
  }                                                                                               \
  }
