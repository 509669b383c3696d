// The CPU hot loops for AVX-512 (F/BW/VL) machines; see cpu_kernels_impl.h.
#include "cpu_isa.h"
#if SNN_CPU_MULTI_ISA
#define SNN_ROW_NS avx512
#define SNN_ROW_ISA Isa::kAvx512
#define SNN_ROW_ATTR SNN_TARGET_AVX512
#include "cpu_kernels_impl.h"
#endif
