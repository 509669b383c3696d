// CPU Poisson encoder (the same Philox groups as the CUDA kernel) and the
// spike <-> byte conversions; their loops are in cpu_kernels_impl.h.
#include <ATen/ATen.h>
#include <algorithm>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>

#include "../host.h"
#include "cpu_kernels.h"
#include "../kernels/encoder.h"

namespace {

// Elements in runs of 1024 (poisson_run, at most 1024 per call): Philox for
// the groups covering the run in one SIMD loop (the 32x32->64-bit multiplies
// vectorise), then the comparisons row segment by row segment. Element e's
// spike depends on e alone (lane e % 4 of group e / 4), as in poisson_group,
// so the spikes equal the CUDA kernel's for the same seed.
template <typename T>
void poisson_cpu(const snn::PoissonParams& p) {
  const int64_t total = p.T * p.N;
  constexpr int64_t kRun = 1024;  // the most poisson_run takes (cpu_kernels_impl.h)
  const auto run = snn_cpu::kernels().elem<T>().poisson;
  at::parallel_for(0, (total + kRun - 1) / kRun, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) run(p, r * kRun, std::min<int64_t>(total, (r + 1) * kRun));
  });
}

at::Tensor poisson_encode_cpu(const at::Tensor& x, int64_t T, const at::Tensor& seed) {
  auto e = snn_host::prepare_poisson(x, T, seed);
  switch (e.dt) {
    case snn_host::DT_F32:
      poisson_cpu<float>(e.p);
      break;
    case snn_host::DT_F64:
      poisson_cpu<double>(e.p);
      break;
    case snn_host::DT_F16:
      poisson_cpu<snn::half_t>(e.p);
      break;
    case snn_host::DT_BF16:
      poisson_cpu<snn::bf16_t>(e.p);
      break;
  }
  return e.out;
}

// Spikes saved for a weight gradient: x != 0 as bytes, one multi-threaded
// vectorised pass. Whether x holds spikes is the caller's knowledge (the
// layer producing x), never looked up here: a check would be a host
// synchronisation on a GPU, and the CPU op keeps the same contract.
template <typename T>
void narrow(const T* x, uint8_t* out, int64_t n) {
  const auto narrow_run = snn_cpu::kernels().elem<T>().narrow;
  at::parallel_for(0, n, 1 << 16, [&](int64_t i0, int64_t i1) { narrow_run(x + i0, out + i0, i1 - i0); });
}

at::Tensor binary_to_uint8_cpu(const at::Tensor& x_in) {
  auto c = snn_host::prepare_narrow(x_in);
  uint8_t* o = (uint8_t*)c.p.out;
  const int64_t n = c.p.n;
  switch (c.dt) {
    case snn_host::DT_F32:
      narrow((const float*)c.p.x, o, n);
      break;
    case snn_host::DT_F64:
      narrow((const double*)c.p.x, o, n);
      break;
    case snn_host::DT_F16:
      narrow((const snn::half_t*)c.p.x, o, n);
      break;
    case snn_host::DT_BF16:
      narrow((const snn::bf16_t*)c.p.x, o, n);
      break;
  }
  return c.out;
}

// The inverse of binary_to_uint8 for the weight gradient: 0/1 bytes back to
// spikes of `dtype`, multi-threaded and vectorised (torch's generic copy_
// converts uint8 element by element).
at::Tensor uint8_to_cpu(const at::Tensor& x_in, at::ScalarType dtype) {
  auto c = snn_host::prepare_widen(x_in, dtype);
  const uint8_t* xp = (const uint8_t*)c.p.x;
  void* o = c.p.out;
  const auto dt = c.dt;
  const int64_t n = c.p.n;
  const snn_cpu::Kernels& k = snn_cpu::kernels();
  at::parallel_for(0, n, 1 << 16, [&](int64_t i0, int64_t i1) {
    switch (dt) {
      case snn_host::DT_F32:
        k.e_f32.widen(xp + i0, (float*)o + i0, i1 - i0);
        break;
      case snn_host::DT_F64:
        k.e_f64.widen(xp + i0, (double*)o + i0, i1 - i0);
        break;
      case snn_host::DT_F16:
        k.e_f16.widen(xp + i0, (snn::half_t*)o + i0, i1 - i0);
        break;
      case snn_host::DT_BF16:
        k.e_bf16.widen(xp + i0, (snn::bf16_t*)o + i0, i1 - i0);
        break;
    }
  });
  return c.out;
}

}  // namespace

TORCH_LIBRARY_IMPL(snn_cuda, CPU, m) {
  m.impl("uint8_to", &uint8_to_cpu);
  m.impl("poisson_encode", &poisson_encode_cpu);
  m.impl("binary_to_uint8", &binary_to_uint8_cpu);
}
