// uniform: AVX-512 kernels (see uniform_avx512.h). Bit-identical to the reference (uniform.cpp) because every
// per-element operation is the reference's IEEE operation on the same operands:
//   axis channel: 16 channels per vector; a group's min and max are running _mm512_min_ps / _mm512_max_ps over its
//     32 tokens in token order, which is the reference's sequential `x < mn ? x : mn` lane by lane (simd/
//     avx512_support.h), signed zeros included; scale = (mx - mn) / (2^b - 1) and both are rounded to the scale
//     dtype with vcvtps2ph (IEEE RNE); codes are round_half_even(clamp((x - mn') / scale', 0, top)), the quotient
//     by a reciprocal multiply with a proven fallback to the true division near rounding boundaries (codes_fast),
//     max/min for the clamp (-0 becomes +0, same code 0) and vcvtps2dq in RNE; a zero scale gives code 0.
//     The 32 codes of a channel's group are OR-ed into `bits` uint32 lanes (token t at bit bits * (t % (32 / bits))
//     of word t / (32 / bits)), which is the dense / release stream of that run (group_format.h: LSB first, runs
//     start on a word because the grouped axis is a multiple of 32).
//   axis token: every row is `length / 32` whole groups and rows are contiguous, so the block is a sequence of
//     groups in canonical group order whose codes are the stream in memory order. 16 groups at a time: the two
//     halves of each group are combined, then a transposing reduction gives the 16 minima (maxima). The min over a
//     group does not depend on the order of the comparisons except for the sign of a zero result, so a group
//     whose min or max is zero is redone sequentially (as group_kernels::min_max does). Codes as above, narrowed
//     to bytes in stream order and packed 8 / bits per byte.
//   decode: q * scale + mn as a multiply then an add (no FMA), as the reference.
#include "vidkv/plugins/quantizers/uniform/uniform_avx512.h"

#include <algorithm>

#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/simd/avx512_support.h"
#include "vidkv/quantization/simd/cpu_features.h"

namespace vidkv::uniform_avx512 {

using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;

#if defined(VIDKV_HAVE_AVX512_KERNELS) && defined(__AVX512F__)

namespace {

constexpr std::int64_t kGroup = 32;

// Stored scale and min of 16 groups from their min and max; `live` marks the groups with scale > 0.
struct GroupMeta {
  __m512 scale, mn, divisor, reciprocal;
  __m256i scale_half, mn_half;
  __mmask16 live, exact_only;
};

inline GroupMeta group_meta(__m512 mn, __m512 mx, float top, DType sd) {
  GroupMeta m{};
  const __m512 raw_scale = _mm512_div_ps(_mm512_sub_ps(mx, mn), _mm512_set1_ps(top));
  m.scale = simd::round_to_stored(raw_scale, sd, &m.scale_half);
  m.mn = simd::round_to_stored(mn, sd, &m.mn_half);
  const __m512 top_value = _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(top), m.scale), m.mn);  // decodes_finite
  const __m512 finite = _mm512_set1_ps(0x1.fffffep127f);
  if (__builtin_expect(_mm512_cmp_ps_mask(_mm512_abs_ps(top_value), finite, _CMP_LE_OQ) != 0xFFFF, 0)) {
    alignas(64) float lo[16], hi[16], scale[16], stored_mn[16];  // groups that do not fit sd: uniform_format.h
    _mm512_store_ps(lo, mn), _mm512_store_ps(hi, mx), _mm512_store_ps(scale, m.scale), _mm512_store_ps(stored_mn, m.mn);
    for (int k = 0; k < 16; ++k) {
      if (uniform_format::decodes_finite(scale[k], stored_mn[k], top)) continue;
      const auto stored = uniform_format::saturated_group(lo[k], hi[k], top, sd);
      scale[k] = stored.scale, stored_mn[k] = stored.mn;
    }
    m.scale = simd::round_to_stored(_mm512_load_ps(scale), sd, &m.scale_half);  // exact: already in sd
    m.mn = simd::round_to_stored(_mm512_load_ps(stored_mn), sd, &m.mn_half);
  }
  m.live = _mm512_cmp_ps_mask(m.scale, _mm512_setzero_ps(), _CMP_GT_OQ);
  m.divisor = _mm512_mask_blend_ps(m.live, _mm512_set1_ps(1.0f), m.scale);  // no 0/0 in lanes forced to code 0
  m.reciprocal = _mm512_maskz_div_ps(m.live, _mm512_set1_ps(1.0f), m.divisor);
  // A reciprocal near the top of the float range (an fp32 scale below 2^-100) voids the bound of codes_fast.
  m.exact_only = _mm512_cmp_ps_mask(m.reciprocal, _mm512_set1_ps(0x1p100f), _CMP_GE_OQ);
  return m;
}

// encode_value of uniform_format.h for 16 lanes: round_half_even(clamp((x - mn) / scale, 0, top)) as int32.
// The quotient is taken as (x - mn) * fl(1 / scale); the exact division is done only where that could round
// differently. With u = 2^-24, d = x - mn (the same float in both), q = fl(d / s), q' = fl(d * fl(1 / s)):
//   |q - q'| <= |q - d/s| + |d/s - d * fl(1/s)| + |d * fl(1/s) - q'| <= (3u + u^2) |d / s|.
// Clamping is 1-Lipschitz and rounding jumps only at k + 0.5, so the codes agree unless clamp(q') lies within that
// bound of some k + 0.5. Where it can (clamp(q') < top, hence |d / s| < top + 1) the bound is below
// eps = 4u (top + 1); beyond the clamps both give top (q' > top + 1) or 0 (q' <= 0). So lanes with
// |frac(clamp(q')) - 0.5| >= eps (|clamp(q') - round(clamp(q'))| <= 0.5 - eps) keep q'; codes_fast marks the others
// in *near, and the caller redoes the whole strip or batch with codes_exact when any lane was marked (a few lanes
// in a million on smooth data), or when a group's reciprocal voids the bound (exact_only). Lanes with scale 0 have
// reciprocal 0, hence quotient 0, code 0 and no mark.
inline __m512i codes_fast(__m512 x, const GroupMeta& m, __m512 top, __m512 eps, __mmask16* near) {
  const __m512 v = _mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(_mm512_sub_ps(x, m.mn), m.reciprocal), _mm512_setzero_ps()), top);
  const __m512i code = _mm512_cvt_roundps_epi32(v, simd::kRne);
  // |v - round(v)| is 0.5 - |frac(v) - 0.5|: within eps of 0.5 means within eps of a boundary k + 0.5.
  const __m512 to_code = _mm512_abs_ps(_mm512_sub_ps(v, _mm512_cvtepi32_ps(code)));
  *near |= _mm512_cmp_ps_mask(to_code, _mm512_sub_ps(_mm512_set1_ps(0.5f), eps), _CMP_GT_OQ);
  return code;
}

// The same with the true division (the reference's operations), code 0 where the scale is 0.
inline __m512i codes_exact(__m512 x, const GroupMeta& m, __m512 top) {
  const __m512 q = _mm512_min_ps(_mm512_max_ps(_mm512_div_ps(_mm512_sub_ps(x, m.mn), m.divisor), _mm512_setzero_ps()), top);
  return _mm512_maskz_mov_epi32(m.live, _mm512_cvt_roundps_epi32(q, simd::kRne));
}

// eps of codes_fast for codes up to top.
inline __m512 boundary_margin(float top) { return _mm512_set1_ps(4.0f * 0x1p-24f * (top + 1.0f)); }

// decode_value for 16 lanes.
inline __m512 values_of(__m512i q, __m512 scale, __m512 mn) {
  return _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(q), scale), mn);
}

template <unsigned Bits>
void encode_channel(const float* in, const GroupGrid& g, DType sd, CodeLayout layout, std::uint8_t* codes,
                    std::uint8_t* scales, std::uint8_t* mins) {
  constexpr int kPerWord = 32 / Bits;
  const float top_f = static_cast<float>(uniform_format::max_code(Bits));
  const __m512 top = _mm512_set1_ps(top_f), eps = boundary_margin(top_f);
  const std::int64_t width = g.rows, gpr = g.groups_per_row();
  const std::int64_t run_stride = group_format::code_word(layout, g, Bits, 0, 1, 0) - group_format::code_word(layout, g, Bits, 0, 0, 0);
  auto* words = reinterpret_cast<std::uint32_t*>(codes);  // x86: little-endian, unaligned access allowed below
  const __m512i index = simd::lane_offsets(run_stride);
  simd::for_each_channel_tile<simd::Extrema>(
      in, g.heads, g.length, width, kGroup,
      [&](const float* strips, const simd::StripBlock& block, simd::Extrema* stats) {
        simd::strip_extrema(strips, kGroup, width, block, stats);
      },
      [&](std::int64_t h, std::int64_t gi, std::int64_t c0, std::int64_t n, const simd::Extrema& e) {
        // Codes, words and metadata of one strip of 16 channels from its min and max.
        const std::int64_t j0 = gi * kGroup;
        const __mmask16 lanes = simd::first_lanes(n);
        const float* x = in + h * g.head_stride + j0 * width + c0;
        const GroupMeta m = group_meta(e.mn, e.mx, top_f, sd);
        __m512i acc[Bits];
        __mmask16 near = m.exact_only;
        for (unsigned w = 0; w < Bits; ++w) acc[w] = _mm512_setzero_si512();
#pragma GCC unroll 32
        for (int t = 0; t < kGroup; ++t) {
          const __m512i q = codes_fast(_mm512_maskz_loadu_ps(lanes, x + t * width), m, top, eps, &near);
          acc[t / kPerWord] = _mm512_or_si512(acc[t / kPerWord], _mm512_slli_epi32(q, Bits * (t % kPerWord)));
        }
        if (__builtin_expect(near != 0, 0)) {  // a lane near a rounding boundary: the strip again, dividing
          for (unsigned w = 0; w < Bits; ++w) acc[w] = _mm512_setzero_si512();
          for (int t = 0; t < kGroup; ++t) {
            const __m512i q = codes_exact(_mm512_maskz_loadu_ps(lanes, x + t * width), m, top);
            acc[t / kPerWord] = _mm512_or_si512(acc[t / kPerWord], _mm512_slli_epi32(q, Bits * (t % kPerWord)));
          }
        }
        const std::int64_t first_word = group_format::code_word(layout, g, Bits, h, c0, j0);
        for (unsigned w = 0; w < Bits; ++w)
          _mm512_mask_i32scatter_epi32(words + first_word + w, lanes, index, acc[w], 4);
        const std::int64_t first = (h * width + c0) * gpr + gi;  // group_index of channel c0's group gi
        simd::store_scalars(scales, first, gpr, sd, m.scale, m.scale_half, n);
        simd::store_scalars(mins, first, gpr, sd, m.mn, m.mn_half, n);
      });
}

template <unsigned Bits, bool Stream>
void decode_channel(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, const GroupGrid& g,
                    DType sd, CodeLayout layout, float* out) {
  constexpr int kPerWord = 32 / Bits;
  const __m512i mask = _mm512_set1_epi32(static_cast<int>(uniform_format::max_code(Bits)));
  const std::int64_t width = g.rows, gpr = g.groups_per_row();
  const std::int64_t run_stride = group_format::code_word(layout, g, Bits, 0, 1, 0) - group_format::code_word(layout, g, Bits, 0, 0, 0);
  const auto* words = reinterpret_cast<const std::uint32_t*>(codes);
  const __m512i index = simd::lane_offsets(run_stride);
  // Up to 8 strips of 16 channels at a time: their scalars and code words first, then the tile row by row, so that
  // the stores run through memory in address order.
  simd::for_each_strip_block(g.heads, g.length, width, kGroup, [&](std::int64_t h, std::int64_t gi, std::int64_t row0,
                                                                   std::int64_t b0, const simd::StripBlock& block) {
    const std::int64_t j0 = gi * kGroup;
    float* tile = out + row0 * width + b0;
    __m512 scale[simd::kStrips], mn[simd::kStrips];
    __m512i acc[simd::kStrips][Bits];
    for (int s = 0; s < block.strips; ++s) {
      const std::int64_t c0 = b0 + 16 * s, n = std::min<std::int64_t>(16, width - c0);
      const std::int64_t first = (h * width + c0) * gpr + gi;
      scale[s] = simd::load_scalars(scales, first, gpr, sd, n);
      mn[s] = simd::load_scalars(mins, first, gpr, sd, n);
      const std::int64_t first_word = group_format::code_word(layout, g, Bits, h, c0, j0);
      for (unsigned w = 0; w < Bits; ++w)
        acc[s][w] = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), block.lanes[s], index, words + first_word + w, 4);
    }
    for (int t = 0; t < kGroup; ++t)
      for (int s = 0; s < block.strips; ++s) {
        const __m512i q = _mm512_and_si512(_mm512_srli_epi32(acc[s][t / kPerWord], Bits * (t % kPerWord)), mask);
        simd::store16<Stream>(tile + t * width + 16 * s, block.lanes[s], values_of(q, scale[s], mn[s]));
      }
  });
}

// Scalar encode of one token-axis group of 32 (the reference's loop), for the groups left after the 16-group
// batches and for groups whose min or max is a zero.
void sequential_min_max(const float* x, float* mn, float* mx) {
  float lo = x[0], hi = x[0];
  for (int j = 1; j < kGroup; ++j) {
    lo = x[j] < lo ? x[j] : lo;
    hi = x[j] > hi ? x[j] : hi;
  }
  *mn = lo;
  *mx = hi;
}

// Narrows 4 x 16 int32 codes (each < 256) to 64 bytes in order q[0] lanes 0..15, q[1] lanes 0..15, ...
inline __m512i narrow64(const __m512i* q) {
  const __m512i w01 = _mm512_packus_epi32(q[0], q[1]);
  const __m512i w23 = _mm512_packus_epi32(q[2], q[3]);
  const __m512i b = _mm512_packus_epi16(w01, w23);  // 128-bit lane L: q0[4L..4L+3] q1[..] q2[..] q3[..]
  return _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b);
}

// Packs 64 byte codes into 64 * Bits / 8 bytes of stream (LSB first) at p.
template <unsigned Bits>
inline void pack64(__m512i bytes, std::uint8_t* p) {
  if constexpr (Bits == 8) {
    _mm512_storeu_si512(p, bytes);
  } else if constexpr (Bits == 4) {
    const __m512i pairs = _mm512_maddubs_epi16(bytes, _mm512_set1_epi16(0x1001));  // c0 + 16 c1
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi16_epi8(pairs));
  } else if constexpr (Bits == 2) {
    const __m512i pairs = _mm512_maddubs_epi16(bytes, _mm512_set1_epi16(0x0401));        // c0 + 4 c1
    const __m512i quads = _mm512_madd_epi16(pairs, _mm512_set1_epi32(0x00100001));       // + 16 (c2 + 4 c3)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm512_cvtepi32_epi8(quads));
  } else {
    const std::uint64_t m = _mm512_test_epi8_mask(bytes, bytes);
    std::memcpy(p, &m, 8);
  }
}

// 16 codes of Bits bits starting at stream element e (e * Bits a multiple of 8): as int32 lanes.
template <unsigned Bits>
inline __m512i unpack16(const std::uint8_t* codes, std::int64_t e) {
  constexpr int kBytes = 2 * Bits;  // 16 codes
  const __m128i raw = _mm_maskz_loadu_epi8(static_cast<__mmask16>((1u << kBytes) - 1u), codes + e * Bits / 8);
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i bit = _mm512_mullo_epi32(lane, _mm512_set1_epi32(Bits));
  const __m512i word = _mm512_permutexvar_epi32(_mm512_srli_epi32(bit, 5), _mm512_castsi128_si512(raw));
  return _mm512_and_si512(_mm512_srlv_epi32(word, _mm512_and_si512(bit, _mm512_set1_epi32(31))),
                          _mm512_set1_epi32(static_cast<int>(uniform_format::max_code(Bits))));
}

template <unsigned Bits>
void encode_token(const float* in, const GroupGrid& g, DType sd, std::uint8_t* codes, std::uint8_t* scales,
                  std::uint8_t* mins) {
  const float top_f = static_cast<float>(uniform_format::max_code(Bits));
  const __m512 top = _mm512_set1_ps(top_f), eps = boundary_margin(top_f);
  const std::int64_t groups = g.group_count();
  std::int64_t g0 = 0;
  for (; g0 + 16 <= groups; g0 += 16) {
    const float* x = in + g0 * kGroup;
    __m512 lo[16], hi[16];
    for (int i = 0; i < 16; ++i) {
      const __m512 a = _mm512_loadu_ps(x + i * kGroup), b = _mm512_loadu_ps(x + i * kGroup + 16);
      lo[i] = _mm512_min_ps(a, b);
      hi[i] = _mm512_max_ps(a, b);
    }
    __m512 mn = simd::reduce16(lo, [](__m512 a, __m512 b) { return _mm512_min_ps(a, b); });
    __m512 mx = simd::reduce16(hi, [](__m512 a, __m512 b) { return _mm512_max_ps(a, b); });
    const __mmask16 zero = _mm512_cmp_ps_mask(mn, _mm512_setzero_ps(), _CMP_EQ_OQ) |
                           _mm512_cmp_ps_mask(mx, _mm512_setzero_ps(), _CMP_EQ_OQ);
    if (zero) {  // the sign of a zero extremum depends on the order: take the reference's sequential scan
      alignas(64) float lo_s[16], hi_s[16];
      _mm512_store_ps(lo_s, mn);
      _mm512_store_ps(hi_s, mx);
      for (int i = 0; i < 16; ++i)
        if (zero & (1u << i)) sequential_min_max(x + i * kGroup, &lo_s[i], &hi_s[i]);
      mn = _mm512_load_ps(lo_s);
      mx = _mm512_load_ps(hi_s);
    }
    const GroupMeta m = group_meta(mn, mx, top_f, sd);
    simd::store_scalars(scales, g0, 1, sd, m.scale, m.scale_half, 16);
    simd::store_scalars(mins, g0, 1, sd, m.mn, m.mn_half, 16);
    // Group i + k's metadata in every lane.
    auto one_group = [&](int i) {
      const __m512i sel = _mm512_set1_epi32(i);
      GroupMeta one;
      one.mn = _mm512_permutexvar_ps(sel, m.mn);
      one.divisor = _mm512_permutexvar_ps(sel, m.divisor);
      one.reciprocal = _mm512_permutexvar_ps(sel, m.reciprocal);
      one.live = (m.live >> i) & 1u ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>(0);
      return one;
    };
    __mmask16 near = m.exact_only;
    for (int i = 0; i < 16; i += 2) {  // two groups = 64 codes per packed chunk
      __m512i q[4];
      for (int k = 0; k < 2; ++k) {
        const GroupMeta one = one_group(i + k);
        q[2 * k] = codes_fast(_mm512_loadu_ps(x + (i + k) * kGroup), one, top, eps, &near);
        q[2 * k + 1] = codes_fast(_mm512_loadu_ps(x + (i + k) * kGroup + 16), one, top, eps, &near);
      }
      pack64<Bits>(narrow64(q), codes + (g0 + i) * kGroup * Bits / 8);
    }
    if (__builtin_expect(near != 0, 0)) {  // a lane near a rounding boundary: the batch again, dividing
      for (int i = 0; i < 16; i += 2) {
        __m512i q[4];
        for (int k = 0; k < 2; ++k) {
          const GroupMeta one = one_group(i + k);
          q[2 * k] = codes_exact(_mm512_loadu_ps(x + (i + k) * kGroup), one, top);
          q[2 * k + 1] = codes_exact(_mm512_loadu_ps(x + (i + k) * kGroup + 16), one, top);
        }
        pack64<Bits>(narrow64(q), codes + (g0 + i) * kGroup * Bits / 8);
      }
    }
  }
  for (; g0 < groups; ++g0) {  // the last groups one at a time, with the same vector arithmetic on 16 lanes
    const float* x = in + g0 * kGroup;
    float lo_s, hi_s;
    sequential_min_max(x, &lo_s, &hi_s);
    const GroupMeta m = group_meta(_mm512_set1_ps(lo_s), _mm512_set1_ps(hi_s), top_f, sd);
    simd::store_scalars(scales, g0, 1, sd, m.scale, m.scale_half, 1);
    simd::store_scalars(mins, g0, 1, sd, m.mn, m.mn_half, 1);
    alignas(64) std::int32_t q[kGroup];
    __mmask16 near = m.exact_only;
    _mm512_store_si512(q, codes_fast(_mm512_loadu_ps(x), m, top, eps, &near));
    _mm512_store_si512(q + 16, codes_fast(_mm512_loadu_ps(x + 16), m, top, eps, &near));
    if (near) {
      _mm512_store_si512(q, codes_exact(_mm512_loadu_ps(x), m, top));
      _mm512_store_si512(q + 16, codes_exact(_mm512_loadu_ps(x + 16), m, top));
    }
    for (int j = 0; j < kGroup; ++j) {
      const std::int64_t bit = (g0 * kGroup + j) * Bits;
      codes[bit >> 3] = static_cast<std::uint8_t>(codes[bit >> 3] | (q[j] << (bit & 7)));
    }
  }
}

template <unsigned Bits, bool Stream>
void decode_token(const std::uint8_t* codes, const std::uint8_t* scales, const std::uint8_t* mins, const GroupGrid& g,
                  DType sd, float* out) {
  const std::int64_t groups = g.group_count();
  for (std::int64_t g0 = 0; g0 < groups; g0 += 16) {
    const std::int64_t n = groups - g0 < 16 ? groups - g0 : 16;
    const __m512 scale = simd::load_scalars(scales, g0, 1, sd, n);
    const __m512 mn = simd::load_scalars(mins, g0, 1, sd, n);
    for (std::int64_t i = 0; i < n; ++i) {
      const __m512i sel = _mm512_set1_epi32(static_cast<int>(i));
      const __m512 s = _mm512_permutexvar_ps(sel, scale), m = _mm512_permutexvar_ps(sel, mn);
      const std::int64_t e = (g0 + i) * kGroup;
      simd::store16<Stream>(out + e, 0xFFFF, values_of(unpack16<Bits>(codes, e), s, m));
      simd::store16<Stream>(out + e + 16, 0xFFFF, values_of(unpack16<Bits>(codes, e + 16), s, m));
    }
  }
}

template <unsigned Bits>
void encode_bits(const float* in, const GroupGrid& g, GroupAxis axis, DType sd, CodeLayout layout, std::uint8_t* out) {
  const auto sec = uniform_format::sections(layout, g, Bits, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  if (axis == GroupAxis::channel) return encode_channel<Bits>(in, g, sd, layout, codes, scales, mins);
  encode_token<Bits>(in, g, sd, codes, scales, mins);  // release rows of whole words are the dense stream
}

template <unsigned Bits>
void decode_bits(const std::uint8_t* in, const GroupGrid& g, GroupAxis axis, DType sd, CodeLayout layout, float* out) {
  const auto sec = uniform_format::sections(layout, g, Bits, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const std::int64_t row = axis == GroupAxis::channel ? g.rows : g.length;  // floats per token row of `out`
  if (simd::stream_output(out, g.elements(), row)) {
    if (axis == GroupAxis::channel) {
      decode_channel<Bits, true>(codes, scales, mins, g, sd, layout, out);
    } else {
      decode_token<Bits, true>(codes, scales, mins, g, sd, out);
    }
    return simd::finish_stores();
  }
  if (axis == GroupAxis::channel) return decode_channel<Bits, false>(codes, scales, mins, g, sd, layout, out);
  decode_token<Bits, false>(codes, scales, mins, g, sd, out);
}

}  // namespace

bool applies(const GroupGrid& g, unsigned bits, DType scale_dtype) {
  return simd::avx512_kernels() && g.group == kGroup && g.length % kGroup == 0 && g.elements() > 0 &&
         (bits == 1 || bits == 2 || bits == 4 || bits == 8) && (scale_dtype == DType::f16 || scale_dtype == DType::f32) &&
         g.rows * group_format::release_row_words(g, bits) < (std::int64_t{1} << 31) / 64;  // int32 gather indexes
}

void encode(const float* in, const GroupGrid& g, GroupAxis axis, unsigned bits, DType sd, CodeLayout layout, std::uint8_t* out) {
  switch (bits) {
    case 1: return encode_bits<1>(in, g, axis, sd, layout, out);
    case 2: return encode_bits<2>(in, g, axis, sd, layout, out);
    case 4: return encode_bits<4>(in, g, axis, sd, layout, out);
    default: return encode_bits<8>(in, g, axis, sd, layout, out);
  }
}

void decode(const std::uint8_t* in, const GroupGrid& g, GroupAxis axis, unsigned bits, DType sd, CodeLayout layout, float* out) {
  switch (bits) {
    case 1: return decode_bits<1>(in, g, axis, sd, layout, out);
    case 2: return decode_bits<2>(in, g, axis, sd, layout, out);
    case 4: return decode_bits<4>(in, g, axis, sd, layout, out);
    default: return decode_bits<8>(in, g, axis, sd, layout, out);
  }
}

#else  // no AVX-512 kernels in this build: the portable optimised path runs

bool applies(const GroupGrid&, unsigned, DType) { return false; }
void encode(const float*, const GroupGrid&, GroupAxis, unsigned, DType, CodeLayout, std::uint8_t*) {}
void decode(const std::uint8_t*, const GroupGrid&, GroupAxis, unsigned, DType, CodeLayout, float*) {}

#endif

}  // namespace vidkv::uniform_avx512
