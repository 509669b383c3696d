// The CPU hot loops for any CPU (baseline x86-64: SSE2; elsewhere the plain
// build), and the choice of a variant's table.
#define SNN_ROW_NS baseline
#define SNN_ROW_ISA Isa::kDefault
#define SNN_ROW_ATTR
#include "cpu_kernels_impl.h"

namespace snn_cpu {
#if SNN_CPU_MULTI_ISA
namespace avx512 {
const Kernels& table();
}
namespace avx2 {
const Kernels& table();
}
#endif

const Kernels& kernels_for(Isa v) {
  switch (v) {
#if SNN_CPU_MULTI_ISA
    case Isa::kAvx512:
      return avx512::table();
    case Isa::kAvx2:
      return avx2::table();
#endif
    default:
      return baseline::table();
  }
}
}  // namespace snn_cpu
