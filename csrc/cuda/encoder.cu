#include <cuda_runtime.h>

#include "../kernels/encoder_kernels.cuh"
#include "launch.h"

namespace snn_launch {
namespace {

template <typename T>
int poisson_t(const snn::PoissonParams& p, int sm_count, cudaStream_t stream) {
  const snn::i64 groups = snn::poisson_groups(p);
  if (groups == 0) return 0;
  const dim3 block(snn::kBlockThreads);
  const dim3 grid((unsigned)snn::grid_blocks(groups, snn::kBlockThreads, sm_count));
  snn::poisson_kernel<T><<<grid, block, 0, stream>>>(p);
  return (int)cudaGetLastError();
}

}  // namespace

int poisson(const snn::PoissonParams& p, int dtype, int sm_count, void* stream_ptr) {
  cudaStream_t stream = (cudaStream_t)stream_ptr;
  switch (dtype) {
    case 0:
      return poisson_t<float>(p, sm_count, stream);
    case 1:
      return poisson_t<double>(p, sm_count, stream);
    case 2:
      return poisson_t<snn::half_t>(p, sm_count, stream);
    case 3:
      return poisson_t<snn::bf16_t>(p, sm_count, stream);
    default:
      return (int)cudaErrorInvalidValue;
  }
}

}  // namespace snn_launch
