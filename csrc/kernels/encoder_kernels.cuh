// __global__ body of the Poisson encoder (see encoder.h).
#pragma once
#include "encoder.h"

namespace snn {

template <typename T>
__global__ void poisson_kernel(const PoissonParams p) {
  const i64 groups = poisson_groups(p);
  const i64 stride = (i64)blockDim.x * gridDim.x;
  i64 g = (i64)blockIdx.x * blockDim.x + threadIdx.x;
  if (g >= groups) return;
  const unsigned long long key = poisson_key(p);
  for (; g < groups; g += stride) poisson_group<T>(p, g, (g * 4) % p.N, key);
}

}  // namespace snn
