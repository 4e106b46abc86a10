// When uniform's decode to fp16 can run in fp16 arithmetic, bit for bit: the condition that the CUDA fast decoders'
// fused-half path checks per group (uniform.cu, decode_channel_half / decode_token_half). Host and device, so
// that a [cpu] test checks the condition itself (tests/cpp/test_uniform_half_decode.cpp).
//
// The reference (uniform_format::decode_value, then the output's conversion) gives code q of a group with stored
// fp16 scale s >= 0 and min m the fp16 value RN16(fl32(fl32(q s) + m)). A fused fp16 multiply-add (PTX fma.rn.f16x2,
// subnormals supported) gives RN16(q s + m): the exact value rounded once. The two are the same value, sign of zero
// and overflow to inf included, whenever both fp32 steps are exact, and half_decode_exact(s, m, top) is a sufficient
// condition for that over every code q <= top (top = 2^bits - 1 <= 255):
//   * s and m are finite fp16 values, so s = S 2^a and m = M 2^b with |S|, |M| < 2^11 and 2^a, 2^b at least the
//     spacing of fp16's grid at their exponents (grid(v) = 2^(max(E, 1) - 25) for biased exponent E; a zero puts
//     no constraint). q s = (q S) 2^a with q S < 2^19: exact in fp32.
//   * Let L be the smaller grid of the nonzero ones among s and m. q s + m is an integer N times L, and
//     |N| <= (top s + |m|) / L. When RN32(top s + |m|) < 2^24 L (the test below: RN is monotone and 2^24 L is an
//     fp32 value, so the rounded sum below it means the exact one is below it), |N| < 2^24 and q s + m is an fp32
//     value (L >= 2^-24 is far above fp32's subnormal range), so fl32(q s + m) = q s + m.
//   * Both zero: every q decodes to +0 or m exactly.
// It fails where |m| is far above the scale's own spacing (a range of a few fp16 steps at 8 bits, saturated or
// hand-made metadata); the kernels decode such a group through fp32 as before. The [cpu] test checks soundness over
// sampled and edge-case (s, m) pairs and how often it holds for groups the reference encodes.
// fp16 only: bf16 metadata with bf16 output would need the same argument for bf16 (8 significant bits) and the
// bf16 fma's subnormal behaviour; not done.
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

namespace vidkv::uniform_format {

// 2^24 times the spacing of fp16's grid at the exponent of a finite fp16 magnitude a = bits & 0x7fff, i.e.
// 2^(max(E, 1) - 1) for biased exponent E = a >> 10 in 0..30, as an fp32 power of two; +inf for a zero (no constraint).
VIDKV_HOST_DEVICE inline float half_exact_limit(std::uint32_t a) {
  const std::uint32_t e = a >> 10;
  return a == 0 ? bits_float(0x7f800000u) : bits_float(((e > 1 ? e : 1u) + 126u) << 23);
}

// The value of a finite fp16 magnitude a (bits & 0x7fff) in fp32, exactly and without branches: its bits shifted
// into fp32's field are the value times 2^-112 (a subnormal fp16 becomes an fp32 denormal), so one multiplication by
// 2^112 restores it (exact: a power of two, the product normal or zero; no flush-to-zero in these builds).
VIDKV_HOST_DEVICE inline float half_magnitude(std::uint32_t a) { return bits_float(a << 13) * 0x1p112f; }

// Whether the fused fp16 multiply-add decodes every code q <= top of a group with stored fp16 scale bits
// `scale_bits` and min bits `min_bits` to the reference's fp16 value (see above). False for a non-finite or
// negative scale and a non-finite min.
VIDKV_HOST_DEVICE inline bool half_decode_exact(std::uint16_t scale_bits, std::uint16_t min_bits, unsigned top) {
  const std::uint32_t sa = scale_bits & 0x7fffu, ma = min_bits & 0x7fffu;
  if (sa >= 0x7c00u || ma >= 0x7c00u) return false;            // inf or NaN
  if ((scale_bits & 0x8000u) != 0 && sa != 0) return false;     // negative scale
  const float ls = half_exact_limit(sa), lm = half_exact_limit(ma);
  const float limit = ls < lm ? ls : lm;
  // top s is exact (at most 8 + 11 significant bits); the sum is rounded once (or not at all, when contracted)
  return static_cast<float>(top) * half_magnitude(sa) + half_magnitude(ma) < limit;
}

}  // namespace vidkv::uniform_format
