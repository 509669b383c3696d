// Launcher interface of the declared-model kernels (kernels/model_kernels.cuh)
// between the torch glue (model_cuda.cpp) and the nvcc-compiled units
// (model_<dtype>.cu, one per storage dtype so that nvcc compiles them in
// parallel). No torch header: see launch.h.
#pragma once
#include "../kernels/models.h"
#include "launch.h"

namespace snn_launch {

// model / variant index model_list.h; the backward's surrogate is
// p.surrogate. Return a cudaError_t value (0 = success; cudaErrorInvalidValue
// for an index out of range, which the host checks have already excluded).
#define SNN_DECLARE_MODEL_LAUNCHERS(SUFFIX)                                                                \
  int model_forward_##SUFFIX(const snn::MFwdParams& p, int model, int variant, Device dev, void* stream);  \
  int model_backward_##SUFFIX(const snn::MBwdParams& p, int model, int variant, Device dev, void* stream); \
  int probe_model_##SUFFIX(int device);
SNN_DECLARE_MODEL_LAUNCHERS(f32)
SNN_DECLARE_MODEL_LAUNCHERS(f64)
SNN_DECLARE_MODEL_LAUNCHERS(f16)
SNN_DECLARE_MODEL_LAUNCHERS(bf16)
#undef SNN_DECLARE_MODEL_LAUNCHERS

}  // namespace snn_launch
