// sign: AVX-512 kernels (sign_avx512.h), 16 columns (channels or FFT components) per vector, per head and group of
// 32 tokens. Bit-identical to the reference (sign.cpp): each column's sum of |x| is accumulated in double in token
// order (simd::add_abs: the reference's `sum += fabs(double(x))`), divided by 32.0 in double and converted to
// float with the default rounding (static_cast<float>), then rounded to the scale dtype with vcvtps2ph (IEEE RNE,
// as put_scalar); bit t of a column's run is (x >= 0) (_CMP_GE_OQ: true for -0, as the reference), OR-ed into one
// uint32 lane per column, which is the dense / release stream of that run (runs start on a word: the tokens are a
// multiple of 32). The release's zero mins are zero bytes, already there. Decode: bit ? s : (symmetric ? -s : 0).
#include "vidkv/plugins/quantizers/sign/sign_avx512.h"

#include <algorithm>

#include "vidkv/quantization/simd/avx512_support.h"
#include "vidkv/quantization/simd/cpu_features.h"

namespace vidkv::sign_avx512 {

using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;

#if defined(VIDKV_HAVE_AVX512_KERNELS) && defined(__AVX512F__)

namespace {
constexpr int kGroup = 32;
}  // namespace

bool applies(const GroupGrid& g, GroupAxis axis, DType scale_dtype) {
  return simd::avx512_kernels() && axis == GroupAxis::channel && g.group == kGroup && g.length % kGroup == 0 &&
         g.elements() > 0 && (scale_dtype == DType::f16 || scale_dtype == DType::f32) &&
         g.rows * group_format::release_row_words(g, 1) < (std::int64_t{1} << 25);
}

void encode(const float* values, const GroupGrid& g, DType sd, CodeLayout layout, std::uint8_t* out) {
  auto* words = reinterpret_cast<std::uint32_t*>(out);  // x86: little-endian
  std::uint8_t* scales = out + sign_format::codes_bytes(layout, g);
  const std::int64_t width = g.rows, gpr = g.groups_per_row();
  const __m512i index = simd::lane_offsets(group_format::code_word(layout, g, 1, 0, 1, 0));
  const __m512d count = _mm512_set1_pd(static_cast<double>(kGroup));
  // Scale and bits of one strip of 16 columns, from its sums of |x| and its run of sign bits.
  auto finish_strip = [&](std::int64_t h, std::int64_t gi, std::int64_t c0, std::int64_t n, __m512d sum_lo,
                          __m512d sum_hi, __m512i run) {
    const __mmask16 lanes = simd::first_lanes(n);
    const __m512 mean = simd::to_float<_MM_FROUND_CUR_DIRECTION>(_mm512_div_pd(sum_lo, count), _mm512_div_pd(sum_hi, count));
    __m256i half = _mm256_setzero_si256();
    const __m512 scale = simd::round_to_stored(  // saturated as group_format::put_scalar does (a NaN mean stays NaN)
        _mm512_min_ps(_mm512_set1_ps(dtype_max_finite(sd)), mean), sd, &half);
    _mm512_mask_i32scatter_epi32(words + group_format::code_word(layout, g, 1, h, c0, gi * kGroup), lanes, index, run, 4);
    simd::store_scalars(scales, (h * width + c0) * gpr + gi, gpr, sd, scale, half, n);
  };
  // One pass: bit t of a column is (x >= 0), independent of the scale.
  auto add_row = [&](const float* x, __mmask16 lanes, int t, __m512d* sum_lo, __m512d* sum_hi, __m512i* run) {
    const __m512 v = _mm512_maskz_loadu_ps(lanes, x);
    simd::add_abs(v, sum_lo, sum_hi);
    const __mmask16 bit = _mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_GE_OQ);
    *run = _mm512_mask_or_epi32(*run, bit, *run, _mm512_set1_epi32(static_cast<int>(1u << t)));
  };
  // Row by row over up to 8 strips (the strip count a constant, so that the accumulators stay in registers).
  simd::for_each_strip_block(g.heads, g.length, width, kGroup, [&](std::int64_t h, std::int64_t gi, std::int64_t row0,
                                                                   std::int64_t b0, const simd::StripBlock& block) {
    const float* tile = values + row0 * width + b0;
    simd::with_strip_count(block.strips, [&]<int S>() {
      __m512d lo[S], hi[S];
      __m512i run[S];
      for (int k = 0; k < S; ++k) {
        lo[k] = hi[k] = _mm512_setzero_pd();
        run[k] = _mm512_setzero_si512();
      }
      for (int t = 0; t < kGroup; ++t)
        for (int k = 0; k < S; ++k) add_row(tile + t * width + 16 * k, block.lanes[k], t, &lo[k], &hi[k], &run[k]);
      for (int k = 0; k < S; ++k)
        finish_strip(h, gi, b0 + 16 * k, std::min<std::int64_t>(16, width - b0 - 16 * k), lo[k], hi[k], run[k]);
    });
  });
}

namespace {

template <bool Stream>
void decode_runs(const std::uint8_t* in, const GroupGrid& g, DType sd, CodeLayout layout, sign_format::Reconstruction rec,
            float* values) {
  const auto* words = reinterpret_cast<const std::uint32_t*>(in);
  const std::uint8_t* scales = in + sign_format::codes_bytes(layout, g);
  const std::int64_t width = g.rows, gpr = g.groups_per_row();
  const __m512i index = simd::lane_offsets(group_format::code_word(layout, g, 1, 0, 1, 0));
  const bool symmetric = rec == sign_format::Reconstruction::symmetric;
  // Up to 8 strips at a time: scales and runs first, then the tile row by row (stores in address order).
  simd::for_each_strip_block(g.heads, g.length, width, kGroup, [&](std::int64_t h, std::int64_t gi, std::int64_t row0,
                                                                   std::int64_t b0, const simd::StripBlock& block) {
    float* tile = values + row0 * width + b0;
    __m512 one_bit[simd::kStrips], zero_bit[simd::kStrips];
    __m512i run[simd::kStrips];
    for (int k = 0; k < block.strips; ++k) {
      const std::int64_t c0 = b0 + 16 * k, n = std::min<std::int64_t>(16, width - c0);
      one_bit[k] = simd::load_scalars(scales, (h * width + c0) * gpr + gi, gpr, sd, n);
      // -s flips the sign bit, as the reference's unary minus does (0 - s would give +0 for s = 0).
      zero_bit[k] = symmetric ? _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(one_bit[k]), _mm512_set1_epi32(INT32_MIN)))
                              : _mm512_setzero_ps();
      run[k] = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), block.lanes[k], index,
                                           words + group_format::code_word(layout, g, 1, h, c0, gi * kGroup), 4);
    }
    for (int t = 0; t < kGroup; ++t)
      for (int k = 0; k < block.strips; ++k) {
        const __mmask16 bit = _mm512_test_epi32_mask(run[k], _mm512_set1_epi32(static_cast<int>(1u << t)));
        simd::store16<Stream>(tile + t * width + 16 * k, block.lanes[k], _mm512_mask_blend_ps(bit, zero_bit[k], one_bit[k]));
      }
  });
}

}  // namespace

void decode(const std::uint8_t* in, const GroupGrid& g, DType sd, CodeLayout layout, sign_format::Reconstruction rec,
            float* values) {
  if (!simd::stream_output(values, g.elements(), g.rows)) return decode_runs<false>(in, g, sd, layout, rec, values);
  decode_runs<true>(in, g, sd, layout, rec, values);
  simd::finish_stores();
}

#else

bool applies(const GroupGrid&, GroupAxis, DType) { return false; }
void encode(const float*, const GroupGrid&, DType, CodeLayout, std::uint8_t*) {}
void decode(const std::uint8_t*, const GroupGrid&, DType, CodeLayout, sign_format::Reconstruction, float*) {}

#endif

}  // namespace vidkv::sign_avx512
