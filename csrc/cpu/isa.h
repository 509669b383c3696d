// Multi-ISA builds of the CPU hot loops: GCC's target_clones compiles a
// function for AVX-512, AVX2 and baseline x86-64 and picks one at load time,
// so a portable build runs the widest vectors the machine has (never
// -march=native in a package others install). Elsewhere (clang, aarch64,
// non-Linux) a plain build.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) && \
    !defined(SNN_NO_CLONES)
#define SNN_CPU_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#define SNN_CPU_ISA_CLONES 1
#else
#define SNN_CPU_CLONES
#define SNN_CPU_ISA_CLONES 0
#endif
