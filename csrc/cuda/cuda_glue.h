// What the torch-facing CUDA registration files (neuron_cuda.cpp,
// model_cuda.cpp, convert_cuda.cpp) share: the device description a launcher
// takes, and the check of a launcher's result with the message for a build
// that has no image for this GPU.
#pragma once
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <cuda_runtime_api.h>

#include <string>

#include "launch.h"

namespace snn_cuda_glue {

// The SM count of a device, cached (the launchers size their grid by it).
inline int sm_count(int device) {
  static int cached[64] = {0};
  if (device >= 0 && device < 64 && cached[device]) return cached[device];
  int n = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device));
  if (device >= 0 && device < 64) cached[device] = n;
  return n;
}

inline snn_launch::Device launch_device(int device) { return snn_launch::Device{device, sm_count(device)}; }

// The compute capability as "major.minor", for messages.
inline std::string capability(int device) {
  int major = 0, minor = 0;
  if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess) {
    (void)cudaGetLastError();
    return "?";
  }
  return std::to_string(major) + "." + std::to_string(minor);
}

// device < 0: unknown (the message then names no GPU).
inline void check_launch(int err, const char* what, int device = -1) {
  if (err == (int)cudaErrorNoKernelImageForDevice) {
    TORCH_CHECK(false, "snn_cuda: the ", what, " kernel has no image for this GPU (cuda:", device,
                ", compute capability ", device >= 0 ? capability(device) : std::string("?"),
                "): snn_cuda was built for other GPUs (snn_cuda.build_info()['built_with']['cuda_arch_list']). "
                "Rebuild with TORCH_CUDA_ARCH_LIST including ",
                device >= 0 ? capability(device) : std::string("it"),
                ", or run the layers with backend='auto' (falls back to the CuPy path or the reference) or "
                "backend='cupy'");
  }
  TORCH_CHECK(err == 0, "snn_cuda: launching the ", what, " kernel failed: ", snn_launch::error_string(err));
}

}  // namespace snn_cuda_glue
