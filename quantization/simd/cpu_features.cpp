#include "vidkv/quantization/simd/cpu_features.h"

#include <cstdlib>
#include <cstring>

#include "vidkv/core/error.h"

namespace vidkv::simd {

bool avx512_kernels() {
  static const bool usable = [] {
    const char* kernels = std::getenv("VIDKV_CPU_KERNELS");
    const bool portable = kernels != nullptr && std::strcmp(kernels, "portable") == 0;
    if (kernels != nullptr && kernels[0] != '\0' && !portable)
      // a typo would otherwise run the AVX-512 kernels silently (VIDKV_SIGN_FFT is refused the same way)
      VIDKV_THROW(ConfigError, "environment variable VIDKV_CPU_KERNELS: '", kernels,
                  "' is not a valid value (portable: the portable kernels; unset or empty: the AVX-512 kernels where "
                  "the CPU has them)");
#if defined(VIDKV_HAVE_AVX512_KERNELS) && (defined(__GNUC__) || defined(__clang__))
    if (portable) return false;
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
