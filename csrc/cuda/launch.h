// Launcher interface between the torch-facing glue (neuron_cuda.cpp) and the
// nvcc-compiled launchers. No torch header on the .cu side: it keeps each
// .cu compile to seconds and lets the kernels build with any CUDA toolkit.
#pragma once
#include "../kernels/params.h"
#include "../kernels/encoder.h"

namespace snn_launch {

// dtype: 0 f32, 1 f64, 2 f16, 3 bf16 (snn_host::DType); combo: 0..6
// (snn_host::combo_index). Return a cudaError_t value (0 = success).
int forward(const snn::FwdParams& p, int dtype, int combo, int sm_count, void* stream);
int backward(const snn::BwdParams& p, int dtype, int combo, int sg, int sm_count, void* stream);
int poisson(const snn::PoissonParams& p, int dtype, int sm_count, void* stream);
const char* error_string(int err);

#define SNN_DECLARE_LAUNCHERS(SUFFIX)                                                   \
  int forward_##SUFFIX(const snn::FwdParams& p, int combo, int sm_count, void* stream); \
  int backward_##SUFFIX(const snn::BwdParams& p, int combo, int sg, int sm_count, void* stream);
SNN_DECLARE_LAUNCHERS(f32)
SNN_DECLARE_LAUNCHERS(f64)
SNN_DECLARE_LAUNCHERS(f16)
SNN_DECLARE_LAUNCHERS(bf16)
#undef SNN_DECLARE_LAUNCHERS

}  // namespace snn_launch
