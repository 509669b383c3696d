// CPU Poisson encoder: the same Philox groups as the CUDA kernel.
#include <ATen/ATen.h>
#include <algorithm>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <atomic>
#include <cstdint>

#include "../host.h"
#include "isa.h"
#include "../kernels/encoder.h"

namespace {

// Elements in runs of kRun: Philox for the groups covering the run in one
// SIMD loop (the 32x32->64-bit multiplies vectorise), then the comparisons
// row segment by row segment, also vectorised. Element e's spike depends on
// e alone (lane e % 4 of group e / 4), as in poisson_group, so the spikes
// equal the CUDA kernel's for the same seed.
template <typename T>
SNN_CPU_CLONES void poisson_run(const snn::PoissonParams& p, int64_t e0, int64_t e1) {
  constexpr int64_t kRun = 1024;
  alignas(64) unsigned int lanes[4][kRun / 4 + 1];
  alignas(64) unsigned int rnd[kRun + 4];
  const T* x = (const T*)p.x;
  T* out = (T*)p.out;
  const int64_t g0 = e0 / 4, ng = (e1 + 3) / 4 - g0;
#pragma omp simd
  for (int64_t j = 0; j < ng; ++j) {
    const snn::U32x4 v = snn::philox4x32_10((unsigned long long)(g0 + j), 0ull, p.seed);
    lanes[0][j] = v.v[0];
    lanes[1][j] = v.v[1];
    lanes[2][j] = v.v[2];
    lanes[3][j] = v.v[3];
  }
  for (int64_t j = 0; j < ng; ++j)
    for (int k = 0; k < 4; ++k) rnd[4 * j + k] = lanes[k][j];
  int64_t e = e0, n = e0 % p.N;
  while (e < e1) {
    const int64_t seg = std::min<int64_t>(e1 - e, p.N - n);
    const unsigned int* rs = rnd + (e - 4 * g0);
    const T* xs = x + n;
    T* os = out + e;
#pragma omp simd
    for (int64_t i = 0; i < seg; ++i)
      os[i] = snn::store_as<T>(snn::uniform24(rs[i]) < (float)snn::to_state(xs[i]) ? 1.0f : 0.0f);
    e += seg;
    n = 0;
  }
}

// Elements in runs of 1024 (poisson_run, at most 1024 per call): Philox for
// the groups covering the run in one SIMD loop (the 32x32->64-bit multiplies
// vectorise), then the comparisons row segment by row segment. Element e's
// spike depends on e alone (lane e % 4 of group e / 4), as in poisson_group,
// so the spikes equal the CUDA kernel's for the same seed.
template <typename T>
void poisson_cpu(const snn::PoissonParams& p) {
  const int64_t total = p.T * p.N;
  constexpr int64_t kRun = 1024;
  at::parallel_for(0, (total + kRun - 1) / kRun, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) poisson_run<T>(p, r * kRun, std::min<int64_t>(total, (r + 1) * kRun));
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

// Spikes saved for a weight gradient: one pass that both checks that x is
// binary and narrows it to uint8 (the same work as torch's eq/all/to chain
// in one read of x instead of four).
template <typename T>
SNN_CPU_CLONES int narrow_run(const T* __restrict x, uint8_t* __restrict out, int64_t n) {
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (int64_t i = 0; i < n; ++i) {
    const float v = (float)snn::to_state(x[i]);
    out[i] = (uint8_t)(v != 0.0f);
    bad |= (int)((v != 0.0f) & (v != 1.0f));
  }
  return bad;
}

template <typename T>
bool narrow_binary(const T* x, uint8_t* out, int64_t n) {
  std::atomic<bool> ok{true};
  at::parallel_for(0, n, 1 << 16, [&](int64_t i0, int64_t i1) {
    if (narrow_run(x + i0, out + i0, i1 - i0)) ok.store(false, std::memory_order_relaxed);
  });
  return ok.load();
}

at::Tensor binary_to_uint8_cpu(const at::Tensor& x_in) {
  const auto dt = snn_host::dtype_code(x_in.scalar_type(), "x");
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = snn_host::alloc(x.sizes(), x.options().dtype(at::kByte));
  uint8_t* o = out.data_ptr<uint8_t>();
  const int64_t n = x.numel();
  bool ok = true;
  switch (dt) {
    case snn_host::DT_F32: ok = narrow_binary((const float*)x.data_ptr(), o, n); break;
    case snn_host::DT_F64: ok = narrow_binary((const double*)x.data_ptr(), o, n); break;
    case snn_host::DT_F16: ok = narrow_binary((const snn::half_t*)x.data_ptr(), o, n); break;
    case snn_host::DT_BF16: ok = narrow_binary((const snn::bf16_t*)x.data_ptr(), o, n); break;
  }
  return ok ? out : at::empty({0}, x.options().dtype(at::kByte));
}

template <typename T>
SNN_CPU_CLONES void widen_run(const uint8_t* __restrict x, T* __restrict out, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = snn::store_as<T>(x[i] ? 1.0f : 0.0f);
}

// The inverse of binary_to_uint8 for the weight gradient: 0/1 bytes back to
// spikes of `dtype`, multi-threaded and vectorised (torch's generic copy_
// converts uint8 element by element).
at::Tensor uint8_to_cpu(const at::Tensor& x_in, at::ScalarType dtype) {
  const auto dt = snn_host::dtype_code(dtype, "dtype");
  TORCH_CHECK_TYPE(x_in.scalar_type() == at::kByte, "snn_cuda: x must be uint8, got ", x_in.scalar_type());
  const at::Tensor x = x_in.contiguous();
  at::Tensor out = snn_host::alloc(x.sizes(), x.options().dtype(dtype));
  const uint8_t* xp = x.data_ptr<uint8_t>();
  void* o = out.data_ptr();
  at::parallel_for(0, x.numel(), 1 << 16, [&](int64_t i0, int64_t i1) {
    switch (dt) {
      case snn_host::DT_F32: widen_run(xp + i0, (float*)o + i0, i1 - i0); break;
      case snn_host::DT_F64: widen_run(xp + i0, (double*)o + i0, i1 - i0); break;
      case snn_host::DT_F16: widen_run(xp + i0, (snn::half_t*)o + i0, i1 - i0); break;
      case snn_host::DT_BF16: widen_run(xp + i0, (snn::bf16_t*)o + i0, i1 - i0); break;
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CPU, m) {
  m.impl("uint8_to", &uint8_to_cpu);
  m.impl("poisson_encode", &poisson_encode_cpu);
  m.impl("binary_to_uint8", &binary_to_uint8_cpu);
}
