// Launcher interface between the torch-facing glue (neuron_cuda.cpp,
// convert_cuda.cpp) and the nvcc-compiled launchers. No torch header on the
// .cu side: it keeps each .cu compile to seconds and lets the kernels build
// with any CUDA toolkit.
#pragma once
#include "../kernels/params.h"
#include "../kernels/encoder.h"
#include "../kernels/convert.h"

namespace snn_launch {

// The device a launch runs on (the caller has made it current): its index
// keys the per-kernel occupancy cache, its SM count sizes the grid.
struct Device {
  int index;
  int sm_count;
};

// dtype: 0 f32, 1 f64, 2 f16, 3 bf16 (snn_host::DType); combo: 0..6
// (snn_host::combo_index). Return a cudaError_t value (0 = success).
int forward(const snn::FwdParams& p, int dtype, int combo, Device dev, void* stream);
int backward(const snn::BwdParams& p, int dtype, int combo, int sg, Device dev, void* stream);
int poisson(const snn::PoissonParams& p, int dtype, int sm_count, void* stream);
int narrow(const snn::NarrowParams& p, int dtype, Device dev, void* stream);
int widen(const snn::WidenParams& p, int dtype, Device dev, void* stream);
const char* error_string(int err);

// Whether this build's kernels have an image the current device (index
// `device`) can run: the cudaError_t of resolving one kernel of every
// compiled unit (cudaErrorNoKernelImageForDevice when the build's arch list
// has neither this GPU's SASS nor PTX it can JIT). Cached per device. Leaves
// no sticky error behind.
int probe_kernel_image(int device);

// blocks_per_sm (occupancy) of a representative kernel, for reports:
// neuron forward / backward (LIF, hard reset, ATan) of dtype, on the current
// device. Negative: the cudaError_t, negated.
int occupancy_fwd(int dtype, int device);
int occupancy_bwd(int dtype, int device);

#define SNN_DECLARE_LAUNCHERS(SUFFIX)                                                          \
  int forward_##SUFFIX(const snn::FwdParams& p, int combo, Device dev, void* stream);          \
  int backward_##SUFFIX(const snn::BwdParams& p, int combo, int sg, Device dev, void* stream); \
  int probe_##SUFFIX(int device);                                                              \
  int occupancy_fwd_##SUFFIX(int device);                                                      \
  int occupancy_bwd_##SUFFIX(int device);
SNN_DECLARE_LAUNCHERS(f32)
SNN_DECLARE_LAUNCHERS(f64)
SNN_DECLARE_LAUNCHERS(f16)
SNN_DECLARE_LAUNCHERS(bf16)
#undef SNN_DECLARE_LAUNCHERS
int probe_convert(int device);

}  // namespace snn_launch
