#include <cuda_runtime.h>

#include <atomic>

#include "launch.h"
#include "model_launch.h"

namespace snn_launch {

int forward(const snn::FwdParams& p, int dtype, int combo, Device dev, void* stream) {
  switch (dtype) {
    case 0:
      return forward_f32(p, combo, dev, stream);
    case 1:
      return forward_f64(p, combo, dev, stream);
    case 2:
      return forward_f16(p, combo, dev, stream);
    case 3:
      return forward_bf16(p, combo, dev, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

int backward(const snn::BwdParams& p, int dtype, int combo, int sg, Device dev, void* stream) {
  switch (dtype) {
    case 0:
      return backward_f32(p, combo, sg, dev, stream);
    case 1:
      return backward_f64(p, combo, sg, dev, stream);
    case 2:
      return backward_f16(p, combo, sg, dev, stream);
    case 3:
      return backward_bf16(p, combo, sg, dev, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

int probe_kernel_image(int device) {
  // Every unit is compiled for the same arch list, but each carries its own
  // fatbinary, so each is asked once; the first failure is the answer.
  static std::atomic<int> done[64];
  if (device >= 0 && device < 64 && done[device].load(std::memory_order_relaxed)) return 0;
  int (*const units[])(int) = {probe_f32,       probe_f64,       probe_f16,       probe_bf16,      probe_convert,
                               probe_model_f32, probe_model_f64, probe_model_f16, probe_model_bf16};
  for (auto probe : units) {
    const int err = probe(device);
    if (err) return err;
  }
  if (device >= 0 && device < 64) done[device].store(1, std::memory_order_relaxed);
  return 0;
}

int occupancy_fwd(int dtype, int device) {
  int (*const f[])(int) = {occupancy_fwd_f32, occupancy_fwd_f64, occupancy_fwd_f16, occupancy_fwd_bf16};
  return dtype >= 0 && dtype < 4 ? f[dtype](device) : -(int)cudaErrorInvalidValue;
}

int occupancy_bwd(int dtype, int device) {
  int (*const f[])(int) = {occupancy_bwd_f32, occupancy_bwd_f64, occupancy_bwd_f16, occupancy_bwd_bf16};
  return dtype >= 0 && dtype < 4 ? f[dtype](device) : -(int)cudaErrorInvalidValue;
}

const char* error_string(int err) { return cudaGetErrorString((cudaError_t)err); }

}  // namespace snn_launch
