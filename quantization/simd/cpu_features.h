// Which hand-written SIMD kernels the processor running this process can execute. The default build targets
// baseline x86-64; the AVX-512 kernels (plugins/quantizers/*/*_avx512.cpp) are compiled for AVX-512 F/BW/DQ/VL
// and are only called when avx512_kernels() is true. VIDKV_CPU_KERNELS=portable in the environment turns them off
// (the portable optimised paths then run), for comparisons and for machines where they misbehave.
#pragma once

namespace vidkv::simd {

// True when the AVX-512 kernels were compiled in, the CPU has AVX-512 F, BW, DQ and VL, and
// VIDKV_CPU_KERNELS is not "portable". Evaluated once per process. Throws ConfigError when VIDKV_CPU_KERNELS holds
// anything else than "portable" or nothing.
bool avx512_kernels();

}  // namespace vidkv::simd
