// CPU Poisson encoder: the same Philox groups as the CUDA kernel.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../host.h"
#include "../kernels/encoder.h"

namespace {

template <typename T>
void poisson_cpu(const snn::PoissonParams& p) {
  const int64_t groups = (p.T * p.N + 3) / 4;
  at::parallel_for(0, groups, 16384, [&](int64_t g0, int64_t g1) {
    int64_t n = (g0 * 4) % p.N;
    for (int64_t g = g0; g < g1; ++g) {
      snn::poisson_group<T>(p, g, n);
      n += 4;
      while (n >= p.N) n -= p.N;
    }
  });
}

at::Tensor poisson_encode_cpu(const at::Tensor& x, int64_t T, int64_t seed) {
  auto e = snn_host::prepare_poisson(x, T, seed);
  switch (e.dt) {
    case snn_host::DT_F32: poisson_cpu<float>(e.p); break;
    case snn_host::DT_F64: poisson_cpu<double>(e.p); break;
    case snn_host::DT_F16: poisson_cpu<snn::half_t>(e.p); break;
    case snn_host::DT_BF16: poisson_cpu<snn::bf16_t>(e.p); break;
  }
  return e.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CPU, m) { m.impl("poisson_encode", &poisson_encode_cpu); }
