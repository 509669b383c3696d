// The CPU hot loops for AVX2 machines; see cpu_kernels_impl.h.
#include "cpu_isa.h"
#if SNN_CPU_MULTI_ISA
#define SNN_ROW_NS avx2
#define SNN_ROW_ISA Isa::kAvx2
#define SNN_ROW_ATTR SNN_TARGET_AVX2
#include "cpu_kernels_impl.h"
#endif
