// Runtime instruction-set dispatch for the optimised CPU kernels: the default build targets baseline x86-64
// (SSE2), so each hot kernel is compiled again for AVX2 and AVX-512 and the loader picks the best one the machine
// runs (GCC/Clang target_clones, resolved once through an ifunc). The clones do the same IEEE operations in the
// same order (quantization/CMakeLists.txt and plugins/CMakeLists.txt compile with -ffp-contract=off, so no clone
// fuses a * b + c into an FMA), so their results are identical to the default clone and to the scalar reference.
// A VIDKV_NATIVE build compiles everything for the build machine and needs no clones.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(VIDKV_NATIVE_BUILD) && \
    defined(__linux__)
#define VIDKV_CPU_CLONES __attribute__((target_clones("default", "avx2", "avx512f")))
#else
#define VIDKV_CPU_CLONES
#endif
