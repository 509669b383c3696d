// The instruction-set variant of every CPU kernel. The hot loops (neuron
// rows, encoder, byte conversions, spike_linear) are compiled once per
// variant with a function-level target attribute and reached through tables
// picked once per process, so one portable build runs AVX-512 where it
// exists, and SNN_CUDA_CPU_ISA can force a narrower variant to reproduce or
// test another machine's path. Never -march=native: others install this.
//
// One feature definition for every kernel:
//   avx512   AVX-512 F + BW + VL (zmm registers, mask registers)
//   avx2     AVX2 on hardware that also has FMA (every AVX2 CPU shipped so
//            far); the neuron rows use no FMA, so that every variant rounds
//            alike (spike_linear's products are exact, so its FMAs do too)
//   default  baseline x86-64 (SSE2), or the plain build on other CPUs
#pragma once

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__) && !defined(SNN_NO_MULTI_ISA)
#define SNN_CPU_MULTI_ISA 1
// Target strings of the variants (no "fma" for the neuron rows: see above).
#if defined(__clang__)
#define SNN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl")))
#else
// 512-bit vectors even where a tuning would prefer 256 (the rows are
// memory-bound; the widest loads and stores issue fewest instructions).
#define SNN_TARGET_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,prefer-vector-width=512")))
#endif
#define SNN_TARGET_AVX2 __attribute__((target("avx2")))
#else
#define SNN_CPU_MULTI_ISA 0
#endif

namespace snn_cpu {

enum class Isa : int { kDefault = 0, kAvx2 = 1, kAvx512 = 2 };

// Whether this CPU (and this build) can run the variant.
bool isa_supported(Isa v);

// The variant in use: SNN_CUDA_CPU_ISA (avx512 | avx2 | default; the
// deprecated SNN_CUDA_SPIKE_LINEAR_ISA is read when it is unset), else the
// widest supported one. Decided on the first call; a requested variant the
// CPU lacks, or a misspelt one, raises a ValueError naming the variable on
// every call.
Isa isa();

// "avx512", "avx2" or "default": the spelling of SNN_CUDA_CPU_ISA.
const char* isa_name(Isa v);

}  // namespace snn_cpu
