// Element types of tensors and traces (fp16, bf16, fp32) and exact scalar conversions between them.
//
// The conversions are written out (no compiler intrinsics) so that host and device code share one definition and
// round identically: fp32 -> fp16/bf16 rounds to nearest, ties to even, with IEEE overflow to infinity.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include "vidkv/core/host_device.h"

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

namespace vidkv {

enum class DType : std::uint8_t { f16, bf16, f32 };

// Size in bytes of one element.
VIDKV_HOST_DEVICE constexpr int dtype_size(DType t) { return t == DType::f32 ? 4 : 2; }

// "fp16", "bf16", "fp32".
std::string dtype_name(DType t);
// Parses "fp16"/"float16", "bf16"/"bfloat16", "fp32"/"float32"; throws ConfigError naming `what` otherwise.
DType parse_dtype(const std::string& text, const std::string& what);

VIDKV_HOST_DEVICE inline std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
VIDKV_HOST_DEVICE inline float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// fp32 -> IEEE binary16 bits, round to nearest even; NaN stays NaN (quiet), overflow gives +-inf.
VIDKV_HOST_DEVICE inline std::uint16_t float_to_half_bits(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u;
  const std::uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u) return static_cast<std::uint16_t>(sign | (abs > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (abs >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520 -> inf
  if (abs < 0x38800000u) {  // result is subnormal (or zero) in fp16
    if (abs < 0x33000000u) return static_cast<std::uint16_t>(sign);  // below half the smallest subnormal
    const std::uint32_t mant = (abs & 0x7fffffu) | 0x800000u;
    const int shift = 126 - static_cast<int>(abs >> 23);  // 14..24 ... bits to drop to get units of 2^-24
    const std::uint32_t q = mant >> shift;
    const std::uint32_t rem = mant & ((1u << shift) - 1u);
    const std::uint32_t half = 1u << (shift - 1);
    const std::uint32_t r = q + ((rem > half || (rem == half && (q & 1u))) ? 1u : 0u);
    return static_cast<std::uint16_t>(sign | r);
  }
  // normal: rebias exponent 127 -> 15, keep 10 mantissa bits, round to nearest even on the 13 dropped bits
  std::uint32_t h = ((abs >> 13) - ((127u - 15u) << 10));
  const std::uint32_t rem = abs & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;  // may carry into the exponent: still correct
  return static_cast<std::uint16_t>(sign | h);
}

// IEEE binary16 bits -> fp32 (exact).
VIDKV_HOST_DEVICE inline float half_bits_to_float(std::uint16_t h) {
  const std::uint32_t sign = (static_cast<std::uint32_t>(h) & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1fu;
  const std::uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // zero or subnormal: mant * 2^-24
    const float v = static_cast<float>(mant) * 5.9604644775390625e-08f;
    return sign ? -v : v;
  }
  if (exp == 31) return bits_float(sign | 0x7f800000u | (mant << 13));
  return bits_float(sign | ((exp + 112u) << 23) | (mant << 13));
}

// fp32 -> bfloat16 bits, round to nearest even; NaN stays NaN.
VIDKV_HOST_DEVICE inline std::uint16_t float_to_bf16_bits(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((x >> 16) | 0x40u);
  const std::uint32_t rounding = 0x7fffu + ((x >> 16) & 1u);
  return static_cast<std::uint16_t>((x + rounding) >> 16);
}
VIDKV_HOST_DEVICE inline float bf16_bits_to_float(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

// Largest finite value of `t`: fp16 65504, bf16 (2 - 2^-7) * 2^127, fp32 FLT_MAX.
VIDKV_HOST_DEVICE constexpr float dtype_max_finite(DType t) {
  return t == DType::f16 ? 0x1.ffcp15f : (t == DType::bf16 ? 0x1.fep127f : 0x1.fffffep127f);
}

// Rounds an fp32 value to the nearest value representable in `t` (identity for fp32).
VIDKV_HOST_DEVICE inline float round_to_dtype(float f, DType t) {
#if defined(__CUDA_ARCH__)
  // The hardware conversions round to nearest even with IEEE overflow: the same values as the written-out ones.
  if (t == DType::f16) return __half2float(__float2half_rn(f));
  if (t == DType::bf16) return __bfloat162float(__float2bfloat16_rn(f));
  return f;
#endif
  if (t == DType::f16) return half_bits_to_float(float_to_half_bits(f));
  if (t == DType::bf16) return bf16_bits_to_float(float_to_bf16_bits(f));
  return f;
}

// Reads element i of a buffer of dtype t as fp32.
// On the device the widening is the hardware conversion: exact, so the same value as the written-out one for every
// finite or infinite input (a NaN stays a NaN, its payload unspecified).
VIDKV_HOST_DEVICE inline float load_as_float(const void* data, DType t, std::size_t i) {
  if (t == DType::f32) return static_cast<const float*>(data)[i];
  const std::uint16_t b = static_cast<const std::uint16_t*>(data)[i];
#if defined(__CUDA_ARCH__)
  return t == DType::f16 ? __half2float(__ushort_as_half(b)) : __uint_as_float(static_cast<std::uint32_t>(b) << 16);
#else
  return t == DType::f16 ? half_bits_to_float(b) : bf16_bits_to_float(b);
#endif
}

// Writes fp32 value v into element i of a buffer of dtype t (rounding to nearest even).
VIDKV_HOST_DEVICE inline void store_from_float(void* data, DType t, std::size_t i, float v) {
  if (t == DType::f32) {
    static_cast<float*>(data)[i] = v;
  } else {
    static_cast<std::uint16_t*>(data)[i] = t == DType::f16 ? float_to_half_bits(v) : float_to_bf16_bits(v);
  }
}

}  // namespace vidkv
