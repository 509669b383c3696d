#include "cpu_isa.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

#include <cstdlib>
#include <mutex>
#include <string>

namespace snn_cpu {

bool isa_supported(Isa v) {
  switch (v) {
    case Isa::kDefault:
      return true;
#if SNN_CPU_MULTI_ISA
    case Isa::kAvx2:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::kAvx512:
      __builtin_cpu_init();
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl");
#endif
    default:
      return false;
  }
}

const char* isa_name(Isa v) {
  switch (v) {
    case Isa::kAvx512:
      return "avx512";
    case Isa::kAvx2:
      return "avx2";
    default:
      return "default";
  }
}

namespace {

Isa widest() {
  if (isa_supported(Isa::kAvx512)) return Isa::kAvx512;
  if (isa_supported(Isa::kAvx2)) return Isa::kAvx2;
  return Isa::kDefault;
}

// The error is kept, not thrown from a static initialiser, so that every call
// raises it again (a failed static init would be retried and could race).
struct Choice {
  Isa isa = Isa::kDefault;
  std::string error;
};

Choice choose() {
  Choice c;
  const char* var = "SNN_CUDA_CPU_ISA";
  const char* env = std::getenv(var);
  if (env == nullptr || *env == '\0') {
    const char* old = std::getenv("SNN_CUDA_SPIKE_LINEAR_ISA");
    if (old != nullptr && *old != '\0') {
      TORCH_WARN_ONCE("snn_cuda: SNN_CUDA_SPIKE_LINEAR_ISA is deprecated; use SNN_CUDA_CPU_ISA (it now selects ",
                      "the variant of every CPU kernel)");
      var = "SNN_CUDA_SPIKE_LINEAR_ISA";
      env = old;
    }
  }
  if (env == nullptr || *env == '\0') {
    c.isa = widest();
    return c;
  }
  const std::string v(env);
  Isa want;
  if (v == "avx512") {
    want = Isa::kAvx512;
  } else if (v == "avx2") {
    want = Isa::kAvx2;
  } else if (v == "default") {
    want = Isa::kDefault;
  } else {
    c.error = std::string("snn_cuda: ") + var + " must be avx512, avx2 or default, got '" + v + "'";
    return c;
  }
  if (!isa_supported(want)) {
    c.error = std::string("snn_cuda: ") + var + "=" + v + " but this CPU" +
#if SNN_CPU_MULTI_ISA
              " lacks it" +
#else
              " (or this build: not x86-64 with GCC/clang) lacks it" +
#endif
              " (avx512 needs AVX-512 F/BW/VL, avx2 needs AVX2 and FMA); its widest variant is '" + isa_name(widest()) +
              "'";
    return c;
  }
  c.isa = want;
  return c;
}

}  // namespace

Isa isa() {
  static const Choice c = choose();
  TORCH_CHECK_VALUE(c.error.empty(), c.error);
  return c.isa;
}

}  // namespace snn_cpu

namespace {
std::string cpu_isa_op() { return snn_cpu::isa_name(snn_cpu::isa()); }
}  // namespace

TORCH_LIBRARY_FRAGMENT(snn_cuda, m) {
  // The CPU kernels' instruction-set variant ("avx512", "avx2" or "default").
  m.def("cpu_isa() -> str", &cpu_isa_op);
}
