#include "vidkv/quantization/simd/cpu_features.h"

#include "vidkv/core/env_switch.h"

namespace vidkv::simd {

bool avx512_kernels() {
  static const bool usable = [] {
#if defined(VIDKV_HAVE_AVX512_KERNELS) && (defined(__GNUC__) || defined(__clang__))
    if (env_equals("VIDKV_CPU_KERNELS", "portable")) return false;
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
  }();
  return usable;
}

}  // namespace vidkv::simd
