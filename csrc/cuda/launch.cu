#include <cuda_runtime.h>

#include "launch.h"

namespace snn_launch {

int forward(const snn::FwdParams& p, int dtype, int combo, int sm_count, void* stream) {
  switch (dtype) {
    case 0:
      return forward_f32(p, combo, sm_count, stream);
    case 1:
      return forward_f64(p, combo, sm_count, stream);
    case 2:
      return forward_f16(p, combo, sm_count, stream);
    case 3:
      return forward_bf16(p, combo, sm_count, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

int backward(const snn::BwdParams& p, int dtype, int combo, int sg, int sm_count, void* stream) {
  switch (dtype) {
    case 0:
      return backward_f32(p, combo, sg, sm_count, stream);
    case 1:
      return backward_f64(p, combo, sg, sm_count, stream);
    case 2:
      return backward_f16(p, combo, sg, sm_count, stream);
    case 3:
      return backward_bf16(p, combo, sg, sm_count, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

const char* error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

}  // namespace snn_launch
