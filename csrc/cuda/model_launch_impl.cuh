// Template launchers of the declared-model kernels, instantiated once per
// storage dtype by model_<dtype>.cu. Every model x variant of model_list.h
// is generated from the list with index sequences: adding a model to the
// list adds its kernels here with no edit.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "../kernels/model_kernels.cuh"
#include "model_launch.h"
#include "occupancy.cuh"

namespace snn_launch {
namespace detail {

using namespace snn;

template <typename T, class M, int... Vs>
int model_fwd_variant(const MFwdParams& p, int v, Device dev, cudaStream_t stream, std::integer_sequence<int, Vs...>) {
  int err = (int)cudaErrorInvalidValue;
  ((v == Vs ? (void)(err = launch<model_fwd_kernel<M, Vs, T>>(p, p.N, dev, stream)) : (void)0), ...);
  return err;
}

// One backward per model, variant and dtype, the surrogate chosen at run time
// (SG_ANY: p.surrogate, a uniform switch in a memory-bound loop). One per
// surrogate as well made 9x the backward kernels: 63 per dtype for the four
// models, about 64 CPU-s per unit for the default arch list, the build's
// longest units; at SG_ANY no backward spills more (sm_90 -Xptxas -v).
template <typename T, class M, int... Vs>
int model_bwd_variant(const MBwdParams& p, int v, Device dev, cudaStream_t stream, std::integer_sequence<int, Vs...>) {
  int err = (int)cudaErrorInvalidValue;
  ((v == Vs ? (void)(err = launch<model_bwd_kernel<M, Vs, SG_ANY, T>>(p, p.N, dev, stream)) : (void)0), ...);
  return err;
}

template <typename T>
int model_forward_t(const MFwdParams& p, int model, int variant, Device dev, void* stream_ptr) {
  if (p.N == 0) return 0;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (model) {
#define SNN_CASE(id, M, ...) \
  case id:                   \
    return model_fwd_variant<T, M>(p, variant, dev, stream, std::make_integer_sequence<int, M::kVariants>{});
    SNN_MODEL_LIST(SNN_CASE)
#undef SNN_CASE
    default:
      return (int)cudaErrorInvalidValue;
  }
}

template <typename T>
int model_backward_t(const MBwdParams& p, int model, int variant, Device dev, void* stream_ptr) {
  if (p.N == 0) return 0;
  if (p.surrogate < 0 || p.surrogate >= SG_COUNT) return (int)cudaErrorInvalidValue;
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (model) {
#define SNN_CASE(id, M, ...) \
  case id:                   \
    return model_bwd_variant<T, M>(p, variant, dev, stream, std::make_integer_sequence<int, M::kVariants>{});
    SNN_MODEL_LIST(SNN_CASE)
#undef SNN_CASE
    default:
      return (int)cudaErrorInvalidValue;
  }
}

// Model id -> struct, for the probe (one kernel of the unit: model 0).
template <int ID>
struct ModelById;
#define SNN_BY_ID(id, M, ...) \
  template <>                 \
  struct ModelById<id> {      \
    typedef M type;           \
  };
SNN_MODEL_LIST(SNN_BY_ID)
#undef SNN_BY_ID

}  // namespace detail
}  // namespace snn_launch

#define SNN_DEFINE_MODEL_LAUNCHERS(SUFFIX, TYPE)                                                            \
  namespace snn_launch {                                                                                    \
  int model_forward_##SUFFIX(const snn::MFwdParams& p, int model, int variant, Device dev, void* stream) {  \
    return detail::model_forward_t<TYPE>(p, model, variant, dev, stream);                                   \
  }                                                                                                         \
  int model_backward_##SUFFIX(const snn::MBwdParams& p, int model, int variant, Device dev, void* stream) { \
    return detail::model_backward_t<TYPE>(p, model, variant, dev, stream);                                  \
  }                                                                                                         \
  int probe_model_##SUFFIX(int device) {                                                                    \
    return detail::probe<snn::model_fwd_kernel<detail::ModelById<0>::type, 0, TYPE>>(device);               \
  }                                                                                                         \
  }
