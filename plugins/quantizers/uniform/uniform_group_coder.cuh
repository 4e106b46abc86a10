// uniform on CUDA: the per-group coder of the fast kernels (G = 32, bits 1/2/4/8), device code shared by uniform.cu
// and the composites' fused kernels (mixed_channel_fused_kernels.cuh). Header for nvcc only. Every function here gives
// the reference's bytes and floats (uniform_format.h's stored_group, encode_value, decode_value) bit for bit; the
// arguments are in the comments. A group is 32 values get(0..31) held in registers; its codes are BITS 32-bit words
// (code i at bits (i * BITS) % 32 of word (i * BITS) / 32: the dense and release layouts' word of a word-aligned
// group), its scale and min are stored in the metadata dtype `sd` (fp16, bf16 or fp32).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"

namespace vidkv::uniform_cuda::coder {

using group_cuda::Sections;

// --- Fast path: G = 32, bits in {1, 2, 4, 8}, whole groups (the configurations of KIVI and VidKV) ------------------
// The group's 32 values live in registers, codes are assembled in BITS words and stored whole. Every group's code
// run fills whole words there (word_aligned_groups with length % 32 == 0), so in both layouts group g's words are
// g * BITS .. g * BITS + BITS - 1 of the codes section (dense: the stream index of its first element is 32 g; release:
// rows of length * BITS / 32 words): no division finds them. Same operations per element as the reference
// (stored_group, encode_value, decode_value), so the same bytes and floats.

// Adding kRoundMagic = 1.5 * 2^23 to an fp32 v in [0, 2^22) leaves rint(v) (round half to even, the reference's
// round_half_even) in the low 22 bits of the sum, exactly: the sum lies in [2^23 + 2^22, 2^24), where the spacing
// of fp32 is 1. That replaces a round and a float-to-integer conversion per element.
constexpr float kRoundMagic = 12582912.0f;

// uniform_format::encode_value with a multiplication by the reciprocal instead of the division, and the division
// only where the two could give different codes (the argument of uniform_avx512.cpp's codes_fast): with u = 2^-24,
// d = x - mn, q = fl(d / s) and q' = fl(d * fl(1 / s)), |q - q'| <= (3u + u^2) |d / s|; clamping is 1-Lipschitz and
// rounding jumps only at k + 0.5, so below the top code (|d / s| < top + 1) the codes agree unless clamp(q') lies
// within eps = 4u (top + 1) of some k + 0.5; beyond the clamps both give top or 0. The values within eps of a
// boundary (a few in a million for continuous data; about 1e-4 per value for kivi-2's fp16 keys on the H200, where
// 20% of the warps met one) are coded again by encode_value itself, and so is every value of a group whose
// reciprocal exceeds 2^100 (an fp32 scale below 2^-100), where the bound does not hold. Scale 0: reciprocal 0, code 0.
struct FastCoder {
  float mn, reciprocal, top, limit;
  bool exact_only;

  __device__ FastCoder(const uniform_format::StoredGroup& r, unsigned b)
      : mn(r.mn), reciprocal(r.scale > 0.0f ? 1.0f / r.scale : 0.0f)  /* IEEE division: fl(1 / s) */,
        top(static_cast<float>(uniform_format::max_code(b))), limit(0.5f - 4.0f * 0x1p-24f * (top + 1.0f)),
        exact_only(reciprocal >= 0x1p100f) {}

  // kRoundBits + the code of x through the reciprocal (the bits of kRoundMagic + rint(v), rint(v) <= top: see
  // group_codes); sets `near` when x lies too close to a boundary for it to be trusted.
  __device__ std::uint32_t biased_code(float x, bool& near) const {
    const float v = fminf(fmaxf(__fmul_rn(__fsub_rn(x, mn), reciprocal), 0.0f), top);
    const float t = __fadd_rn(v, kRoundMagic);
    near |= fabsf(__fsub_rn(v, __fsub_rn(t, kRoundMagic))) > limit;
    return __float_as_uint(t);
  }
  // biased_code without the clamps, for a group where clamps_unneeded holds, in 5 instructions instead of 6: the
  // product d * reciprocal (d = fl(x - mn)) is never rounded on its own. With w = d * reciprocal exactly,
  // t = fl(w + kRoundMagic) (one fma) is kRoundMagic + rint(w), ties to even (w + kRoundMagic lies in
  // [2^23 + 2^22, 2^24), spacing 1, and kRoundMagic is even); kRoundMagic - t = -rint(w) exactly; and the near test
  // reads e = fl(w - rint(w)) (a second fma), within 2^-26 of w - rint(w) (|w - rint(w)| <= 1/2). The codes agree
  // with the reference's rint(q), q = fl(d / s), wherever |e| <= limit: reciprocal = (1 + a) / s and q = (1 + b) d / s
  // with |a|, |b| <= u give |w - q| <= 2u |d / s| <= 2u (top + 1), and |e| <= limit puts w at least
  // 4u (top + 1) - 2^-26 > 2u (top + 1) from every half-integer, so q lies strictly between the same two. Below
  // the top code as clamps_unneeded's argument says: fl(fl(hi - mn) * reciprocal) < top + 1/2 (a representable
  // bound) implies w < top + 1/2 for every value, and d >= 0 gives w >= 0.
  // A NaN x (never one of the trees' lo / hi, so clamps_unneeded can hold beside it) gives a NaN t whose bits would
  // add into the word and change its neighbours' codes: the negated test flags it (`!(NaN <= limit)`), and the group
  // is coded again (group_codes_in_range's near path) as the clamped loop codes it.
  __device__ std::uint32_t biased_code_unclamped(float x, bool& near) const {
    const float d = __fsub_rn(x, mn);
    const float t = __fmaf_rn(d, reciprocal, kRoundMagic);
    near |= !(fabsf(__fmaf_rn(d, reciprocal, __fsub_rn(kRoundMagic, t))) <= limit);
    return __float_as_uint(t);
  }
  // Whether every value of a group with minimum lo and maximum hi (the values' own) codes the same without the
  // clamps: the stored min is at most lo, so x - mn >= 0 and v >= 0 for every value x (-0 for x = -0 and mn = +0:
  // -0 + kRoundMagic is kRoundMagic); and v_max = fl(fl(hi - mn) * reciprocal) < top + 1/2, where v <= v_max for
  // every x (the subtraction, the product by reciprocal >= 0 and their roundings are monotone in x), so
  // rint(v) <= top: a v in (top, top + 1/2) codes top as the clamped top does, and one within the near margin of
  // top + 1/2 is caught by the near test like any other boundary. The check is explicit, so where it fails only
  // speed is lost: it holds for most groups whose stored min is their own (fp16 input with fp16 metadata), not for
  // a saturated range, a scale that is subnormal in the metadata dtype (tiny ranges), or, with bf16 metadata at 8
  // bits, a scale rounded down by up to 2^-8 (v_max past 255.5). lo and hi skip a NaN (the trees' fminf /
  // __hmin2), so a group holding one can pass: biased_code_unclamped's near test sends it to the exact path.
  __device__ bool clamps_unneeded(float lo, float hi) const {
    return mn <= lo && __fmul_rn(__fsub_rn(hi, mn), reciprocal) < top + 0.5f;
  }
};

// The fp32 bits of kRoundMagic + q for an integer q in [0, 2^22) are kRoundBits + q.
constexpr std::uint32_t kRoundBits = 0x4B400000u;

// What adding biased codes (kRoundBits + q_j) << (BITS j), j < 32 / BITS, to a word adds beyond the codes:
// sum_j kRoundBits << (BITS j) modulo 2^32. The codes themselves occupy disjoint fields (q_j < 2^BITS), so their sum
// is their bitwise or, without carries: a word of biased codes minus this offset is the packed word, exactly.
template <unsigned BITS>
__host__ __device__ constexpr std::uint32_t biased_word_offset() {
  std::uint32_t sum = 0;
  for (unsigned j = 0; j < 32 / BITS; ++j) sum += kRoundBits << (BITS * j);
  return sum;
}

// The float value of a code q < 2^23 without a conversion instruction: the fp32 with exponent 2^23 and q in its
// mantissa, minus 2^23 (exact).
__device__ __forceinline__ float code_float(unsigned q) { return __fsub_rn(__uint_as_float(0x4B000000u | q), 8388608.0f); }

// uniform_format::decode_value of code q, rounded twice as the reference (product, then sum), through code_float.
__device__ __forceinline__ float decoded_value(unsigned q, float scale, float mn) {
  return __fadd_rn(__fmul_rn(code_float(q), scale), mn);
}

// The reference's scan of 32 values for their min and max, in order.
template <class Get>
__device__ inline void ordered_scan(Get get, float& mn, float& mx) {
  mn = mx = get(0);
#pragma unroll  // a run-time index into the caller's register array would move it to local memory
  for (int i = 1; i < 32; ++i) {
    const float x = get(i);
    mn = x < mn ? x : mn;
    mx = x > mx ? x : mx;
  }
}

// min and max of 32 values with the reference's results bit for bit: a tree of fminf / fmaxf gives the same value
// as its ordered scan (x < mn ? x : mn) except for the sign of a zero (-0 == +0 keeps whichever came first there),
// so a zero result is redone in order. The tree's depth is 5 instead of the scan's 31 dependent steps.
template <class Get>
__device__ inline void ordered_min_max(Get get, float& mn, float& mx) {
  float a[16], b[16];
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const float x = get(2 * i), y = get(2 * i + 1);
    a[i] = fminf(x, y);
    b[i] = fmaxf(x, y);
  }
  // Written out per level: a loop over the levels is not unrolled and would move a and b to local memory.
#define VIDKV_MIN_MAX_LEVEL(W) _Pragma("unroll") for (int i = 0; i < W; ++i) { a[i] = fminf(a[i], a[i + W]); b[i] = fmaxf(b[i], b[i + W]); }
  VIDKV_MIN_MAX_LEVEL(8) VIDKV_MIN_MAX_LEVEL(4) VIDKV_MIN_MAX_LEVEL(2) VIDKV_MIN_MAX_LEVEL(1)
#undef VIDKV_MIN_MAX_LEVEL
  mn = a[0];
  mx = b[0];
  if (mn == 0.0f || mx == 0.0f) ordered_scan(get, mn, mx);
}

// Minimum and maximum of N packed pairs of 2-byte values (N = 16 or 32), half by half, as a tree of __hmin2 /
// __hmax2 (one instruction per pair, no conversion; like fminf / fmaxf they return the other operand for a NaN, and
// callers redo a zero result in order, as ordered_min_max does). Results widened exactly to fp32.
template <DType T, int N, class Raw>
__device__ inline void packed_min_max(const Raw& raw, float2& mn, float2& mx) {
  static_assert(T != DType::f32 && (N == 16 || N == 32), "2-byte pairs");
  using P = std::conditional_t<T == DType::f16, __half2, __nv_bfloat162>;
  const auto at = [&](int i) { return *reinterpret_cast<const P*>(&raw[i]); };
  P a[N / 2], b[N / 2];
#pragma unroll
  for (int i = 0; i < N / 2; ++i) {
    a[i] = __hmin2(at(2 * i), at(2 * i + 1));
    b[i] = __hmax2(at(2 * i), at(2 * i + 1));
  }
#define VIDKV_PAIR_LEVEL(W) _Pragma("unroll") for (int i = 0; i < W; ++i) { a[i] = __hmin2(a[i], a[i + W]); b[i] = __hmax2(b[i], b[i + W]); }
  if constexpr (N == 32) {  // braces: without them nvcc 13 ran the loop for N = 16 too (past a[]; the [cuda] tests failed)
    VIDKV_PAIR_LEVEL(8)
  }
  VIDKV_PAIR_LEVEL(4) VIDKV_PAIR_LEVEL(2) VIDKV_PAIR_LEVEL(1)
#undef VIDKV_PAIR_LEVEL
  mn = group_cuda::raw2_to_float2<T>(*reinterpret_cast<const std::uint32_t*>(&a[0]));
  mx = group_cuda::raw2_to_float2<T>(*reinterpret_cast<const std::uint32_t*>(&b[0]));
}

// ordered_min_max of two groups at once, held as 32 pairs (group x in the low halves, group y in the high halves:
// a channel pair over 32 tokens).
template <DType T, class Raw>
__device__ inline void pair_min_max(const Raw& raw, float2& mn, float2& mx) {
  packed_min_max<T, 32>(raw, mn, mx);
  if (mn.x == 0.0f || mx.x == 0.0f) ordered_scan([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).x; }, mn.x, mx.x);
  if (mn.y == 0.0f || mx.y == 0.0f) ordered_scan([&](int i) { return group_cuda::raw2_to_float2<T>(raw[i]).y; }, mn.y, mx.y);
}

// ordered_min_max of one group of 32 consecutive values held as 16 pairs (value i in half i % 2 of pair i / 2).
template <DType T, class Raw, class Get>
__device__ inline void group_min_max(const Raw& raw, Get get, float& mn, float& mx) {
  float2 lo, hi;
  packed_min_max<T, 16>(raw, lo, hi);
  mn = fminf(lo.x, lo.y);
  mx = fmaxf(hi.x, hi.y);
  if (mn == 0.0f || mx == 0.0f) ordered_scan(get, mn, mx);
}

// The stored scale and min and the code words of one group of 32 values get(0..31).
template <unsigned BITS>
struct GroupCodes {
  std::uint32_t words[BITS];
  float scale, mn;
};

// group_codes for a group whose minimum mn and maximum mx (ordered_min_max's) are known. Each word is summed from
// biased codes (one add per value instead of a mask, a shift and an or) and corrected by biased_word_offset.
template <unsigned BITS, class Get>
__device__ inline GroupCodes<BITS> group_codes_in_range(Get get, float mn, float mx, DType sd) {
  const uniform_format::StoredGroup range = uniform_format::stored_group(mn, mx, static_cast<float>(uniform_format::max_code(BITS)), sd);
  const FastCoder coder(range, BITS);
  GroupCodes<BITS> r;
  r.scale = range.scale;
  r.mn = range.mn;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) r.words[k] = 0u - biased_word_offset<BITS>();
  bool near = coder.exact_only;
  // Without the clamps, and the product folded into two fmas (5 instructions per value against the clamped loop's
  // 8, before the word's shift and add), when every group of the warp's converged lanes allows it: a warp-uniform
  // choice, so that lanes do not run both loops one after the other.
  if (__all_sync(__activemask(), coder.clamps_unneeded(mn, mx))) {
#pragma unroll
    for (unsigned i = 0; i < 32; ++i) r.words[(i * BITS) / 32] += coder.biased_code_unclamped(get(i), near) << ((i * BITS) % 32);
  } else {
#pragma unroll
    for (unsigned i = 0; i < 32; ++i) r.words[(i * BITS) / 32] += coder.biased_code(get(i), near) << ((i * BITS) % 32);
  }
  if (near) {
    // Rare: some value lies too close to a boundary (or the reciprocal is unusable). The words are rebuilt from
    // scratch (a NaN's bits may have been added into them): every value's code through the reciprocal with the
    // clamps (biased_code: the same code as either loop above wherever its own near test stays clear; a NaN gives
    // v = 0, code 0, as the reference's encode_value on the device), and the reference's division only for the values
    // whose own near test fires (the branch is per lane and value: a warp runs the division for value i only if
    // one of its lanes needs it there). The first version divided all 32 values of such a group: on an H200, 20% of
    // the warps of kivi-2's keys encode ran that path (fp16 values fall on a boundary k + 0.5 exactly more often
    // than random reals do), and its 32 dependent divisions held their blocks at the next barrier.
#pragma unroll
    for (unsigned k = 0; k < BITS; ++k) r.words[k] = 0;
#pragma unroll
    for (unsigned i = 0; i < 32; ++i) {
      bool value_near = coder.exact_only;
      unsigned q = coder.biased_code(get(i), value_near) - kRoundBits;
      if (value_near) q = uniform_format::encode_value(get(i), range.scale, range.mn, BITS);
      r.words[(i * BITS) / 32] |= q << ((i * BITS) % 32);
    }
  }
  return r;
}

template <unsigned BITS, class Get>
__device__ inline GroupCodes<BITS> group_codes(Get get, DType sd) {
  float mn, mx;
  ordered_min_max(get, mn, mx);
  return group_codes_in_range<BITS>(get, mn, mx, sd);
}

// A group's codes stored: words at word gidx * BITS, scale and min at gidx.
template <unsigned BITS>
__device__ inline void store_group_codes(const GroupCodes<BITS>& r, DType sd, std::int64_t gidx, const Sections& s) {
  group_cuda::store_scalar(s.scales, gidx, sd, r.scale);
  group_cuda::store_scalar(s.mins, gidx, sd, r.mn);
  std::uint32_t* dst = reinterpret_cast<std::uint32_t*>(s.codes) + gidx * BITS;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) dst[k] = r.words[k];
}

template <unsigned BITS>
__device__ inline void decode_group_to_registers(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins,
                                                 DType sd, std::int64_t gidx, float (&x)[32]) {
  const float scale = group_cuda::load_scalar(scales, gidx, sd), mn = group_cuda::load_scalar(mins, gidx, sd);
  std::uint32_t words[BITS];
  const std::uint32_t* src = reinterpret_cast<const std::uint32_t*>(codes) + gidx * BITS;
#pragma unroll
  for (unsigned k = 0; k < BITS; ++k) words[k] = src[k];
#pragma unroll
  for (unsigned i = 0; i < 32; ++i) {
    const unsigned q = (words[(i * BITS) / 32] >> ((i * BITS) % 32)) & ((1u << BITS) - 1u);
    x[i] = decoded_value(q, scale, mn);
  }
}

}  // namespace vidkv::uniform_cuda::coder
