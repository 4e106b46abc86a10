#include "vidkv/quantization/half_convert.h"

#include "vidkv/core/dtype.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#include <immintrin.h>
#define VIDKV_HAVE_F16C_PATH 1
#endif

namespace vidkv::half_convert {

namespace {

void to_half_scalar(const float* v, std::int64_t n, std::uint16_t* bits, float* rounded) {
  for (std::int64_t i = 0; i < n; ++i) {
    bits[i] = float_to_half_bits(v[i]);
    rounded[i] = half_bits_to_float(bits[i]);
  }
}

void from_half_scalar(const std::uint16_t* bits, std::int64_t n, float* out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = half_bits_to_float(bits[i]);
}

#ifdef VIDKV_HAVE_F16C_PATH
__attribute__((target("avx,f16c"))) void to_half_f16c(const float* v, std::int64_t n, std::uint16_t* bits, float* rounded) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(v + i), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(bits + i), h);
    _mm256_storeu_ps(rounded + i, _mm256_cvtph_ps(h));
  }
  to_half_scalar(v + i, n - i, bits + i, rounded + i);
  for (std::int64_t j = 0; j < i; ++j)
    if (v[j] != v[j]) {  // NaN: the hardware keeps the payload, float_to_half_bits returns the canonical quiet NaN
      bits[j] = float_to_half_bits(v[j]);
      rounded[j] = half_bits_to_float(bits[j]);
    }
}

__attribute__((target("avx,f16c"))) void from_half_f16c(const std::uint16_t* bits, std::int64_t n, float* out) {
  std::int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(bits + i))));
  from_half_scalar(bits + i, n - i, out + i);
}

bool has_f16c() {
  // F16C is CPUID leaf 1, ECX bit 29 (Intel SDM vol. 2A, CPUID); __builtin_cpu_supports("f16c") is GCC-only.
  // __builtin_cpu_supports("avx") also checks that the OS saves the AVX state (XGETBV).
  static const bool yes = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __builtin_cpu_supports("avx") && __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & (1u << 29)) != 0;
  }();
  return yes;
}
#endif

}  // namespace

void to_half(const float* v, std::int64_t n, std::uint16_t* bits, float* rounded) {
#ifdef VIDKV_HAVE_F16C_PATH
  if (has_f16c()) return to_half_f16c(v, n, bits, rounded);
#endif
  to_half_scalar(v, n, bits, rounded);
}

void from_half(const std::uint16_t* bits, std::int64_t n, float* out) {
#ifdef VIDKV_HAVE_F16C_PATH
  if (has_f16c()) return from_half_f16c(bits, n, out);
#endif
  from_half_scalar(bits, n, out);
}

}  // namespace vidkv::half_convert
