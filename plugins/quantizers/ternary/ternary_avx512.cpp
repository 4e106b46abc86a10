// ternary: AVX-512 kernels (ternary_avx512.h), 16 channels per vector, per head and group of 32 tokens.
// Bit-identical to the reference (ternary.cpp):
//   * mean |x| is each channel's sum of fabs(double(x)) in token order (simd::add_abs) divided by 32.0 in double,
//     the dead zone a = gamma * mean in double, as the reference;
//   * t = +1 if x > a, -1 if x < -a: compared in float against fa = a rounded toward -inf (vcvtpd2ps with
//     round-down: the largest float <= a). For a float x, x > a exactly when x > fa (no float lies in (fa, a]),
//     and x < -a exactly when x < -fa;
//   * slots t + 1 are OR-ed 2 bits each into two uint32 lanes per channel (tokens 0-15, 16-31), which is the dense
//     2-bit run of that channel (packing slots2: the codes section itself; runs start on a word because the
//     tokens are a multiple of 32). Packing base3 builds that slots2 stream in per-thread scratch, then packs
//     it 5 slots per byte in canonical order (byte k = sum over d < 5 of slot[5k + d] * 3^d) with a table of the
//     1024 ten-bit slot patterns; decode runs the inverse table first.
//   * decode: float(t) * 1.0f, which is float(t).
#include "vidkv/plugins/quantizers/ternary/ternary_avx512.h"

#include <array>
#include <cstring>

#include "vidkv/core/bit_packing.h"
#include "vidkv/core/thread_scratch.h"
#include "vidkv/quantization/simd/avx512_support.h"
#include "vidkv/quantization/simd/cpu_features.h"

namespace vidkv::ternary_avx512 {

using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;
using ternary_format::Packing;
using ternary_format::Reconstruction;

#if defined(VIDKV_HAVE_AVX512_KERNELS) && defined(__AVX512F__)

namespace {

constexpr int kGroup = 32;

// base3 byte of five 2-bit slots (10 bits, slot d at bits 2d) and the inverse.
struct Base3Tables {
  std::array<std::uint8_t, 1024> byte_of{};
  std::array<std::uint16_t, 256> slots_of{};
  Base3Tables() {
    for (unsigned v = 0; v < 1024; ++v) {
      unsigned b = 0, w = 1;
      for (unsigned d = 0; d < 5; ++d, w *= 3u) b += ((v >> (2 * d)) & 3u) * w;
      byte_of[v] = static_cast<std::uint8_t>(b);  // patterns with a slot of 3 never occur
    }
    for (unsigned b = 0; b < 243; ++b) {
      unsigned v = b, s = 0;
      for (unsigned d = 0; d < 5; ++d, v /= 3u) s |= (v % 3u) << (2 * d);
      slots_of[b] = static_cast<std::uint16_t>(s);
    }
  }
};

const Base3Tables& tables() {
  static const Base3Tables t;
  return t;
}

// slots2 stream of n slots (n * 2 bits, readable 8 bytes past the end) -> base3 bytes (zeroed on entry).
void slots_to_base3(const std::uint8_t* slots, std::int64_t n, std::uint8_t* out) {
  const auto& byte_of = tables().byte_of;
  std::int64_t i = 0;
  for (; i + 20 <= n; i += 20) {  // 20 slots = 40 bits = 5 bytes in, 4 bytes out
    std::uint64_t w;
    std::memcpy(&w, slots + i / 4, 8);
    std::uint8_t* o = out + i / 5;
    o[0] = byte_of[w & 1023u];
    o[1] = byte_of[(w >> 10) & 1023u];
    o[2] = byte_of[(w >> 20) & 1023u];
    o[3] = byte_of[(w >> 30) & 1023u];
  }
  static constexpr unsigned kWeight[5] = {1, 3, 9, 27, 81};
  for (; i < n; ++i) {
    const unsigned slot = (slots[i / 4] >> (2 * (i % 4))) & 3u;
    out[i / 5] = static_cast<std::uint8_t>(out[i / 5] + slot * kWeight[i % 5]);
  }
}

// base3 bytes of n slots -> slots2 stream (written 8 bytes past ceil(n / 4)).
void base3_to_slots(const std::uint8_t* in, std::int64_t n, std::uint8_t* slots) {
  const auto& slots_of = tables().slots_of;
  std::int64_t i = 0;
  for (; i + 20 <= n; i += 20) {
    const std::uint8_t* b = in + i / 5;
    const std::uint64_t w = std::uint64_t{slots_of[b[0]]} | (std::uint64_t{slots_of[b[1]]} << 10) |
                            (std::uint64_t{slots_of[b[2]]} << 20) | (std::uint64_t{slots_of[b[3]]} << 30);
    std::memcpy(slots + i / 4, &w, 8);  // the 3 bytes past the 5 are overwritten by the next step
  }
  if (i < n) std::memset(slots + i / 4, 0, static_cast<std::size_t>((n - i + 3) / 4 + 8));
  for (; i < n; ++i) {
    const unsigned slot = static_cast<unsigned>(bits::trit_get(in[i / 5], static_cast<unsigned>(i % 5)) + 1);
    slots[i / 4] = static_cast<std::uint8_t>(slots[i / 4] | (slot << (2 * (i % 4))));
  }
}

// The slots2 stream of the whole block (2 bits per element) into `stream`.
void encode_slots(const float* in, const GroupGrid& g, double gamma, std::uint8_t* stream) {
  auto* words = reinterpret_cast<std::uint32_t*>(stream);
  const std::int64_t width = g.rows;
  const __m512i index = simd::lane_offsets(group_format::code_word(CodeLayout::dense, g, 2, 0, 1, 0));
  const __m512d count = _mm512_set1_pd(static_cast<double>(kGroup)), gamma_v = _mm512_set1_pd(gamma);
  const __m512i one = _mm512_set1_epi32(1);
  simd::for_each_channel_tile<simd::AbsSums>(
      in, g.heads, g.length, width, kGroup,
      [&](const float* strips, const simd::StripBlock& block, simd::AbsSums* stats) {
        simd::strip_abs_sums(strips, kGroup, width, block, stats);
      },
      [&](std::int64_t h, std::int64_t gi, std::int64_t c0, std::int64_t n, const simd::AbsSums& sums) {
        // Slots of one strip of 16 channels from its sums of |x|.
        const std::int64_t j0 = gi * kGroup;
        const __mmask16 lanes = simd::first_lanes(n);
        const float* x = in + h * g.head_stride + j0 * width + c0;
        const __m512d a_lo = _mm512_mul_pd(gamma_v, _mm512_div_pd(sums.lo, count));
        const __m512d a_hi = _mm512_mul_pd(gamma_v, _mm512_div_pd(sums.hi, count));
        const __m512 fa = simd::to_float<_MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC>(a_lo, a_hi);
        const __m512 neg_fa = _mm512_sub_ps(_mm512_setzero_ps(), fa);
        __m512i run[2] = {_mm512_setzero_si512(), _mm512_setzero_si512()};
#pragma GCC unroll 32
        for (int t = 0; t < kGroup; ++t) {
          const __m512 v = _mm512_maskz_loadu_ps(lanes, x + t * width);
          const __mmask16 above = _mm512_cmp_ps_mask(v, fa, _CMP_GT_OQ);
          const __mmask16 below = _mm512_cmp_ps_mask(v, neg_fa, _CMP_LT_OQ);
          __m512i slot = _mm512_mask_add_epi32(one, above, one, one);  // 2 above the dead zone
          slot = _mm512_mask_sub_epi32(slot, below, slot, one);         // 0 below it
          run[t / 16] = _mm512_or_si512(run[t / 16], _mm512_slli_epi32(slot, 2 * (t % 16)));
        }
        std::uint32_t* first = words + group_format::code_word(CodeLayout::dense, g, 2, h, c0, j0);
        _mm512_mask_i32scatter_epi32(first, lanes, index, run[0], 4);
        _mm512_mask_i32scatter_epi32(first + 1, lanes, index, run[1], 4);
      });
}

template <bool Stream>
void decode_runs(const std::uint8_t* stream, const GroupGrid& g, float* out) {
  const auto* words = reinterpret_cast<const std::uint32_t*>(stream);
  const std::int64_t width = g.rows;
  const __m512i index = simd::lane_offsets(group_format::code_word(CodeLayout::dense, g, 2, 0, 1, 0));
  const __m512i three = _mm512_set1_epi32(3), one = _mm512_set1_epi32(1);
  // Up to 8 strips at a time: their runs first, then the tile row by row (stores in address order).
  simd::for_each_strip_block(g.heads, g.length, width, kGroup, [&](std::int64_t h, std::int64_t gi, std::int64_t row0,
                                                                   std::int64_t b0, const simd::StripBlock& block) {
    float* tile = out + row0 * width + b0;
    __m512i run[simd::kStrips][2];
    for (int s = 0; s < block.strips; ++s) {
      const std::uint32_t* first = words + group_format::code_word(CodeLayout::dense, g, 2, h, b0 + 16 * s, gi * kGroup);
      run[s][0] = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), block.lanes[s], index, first, 4);
      run[s][1] = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), block.lanes[s], index, first + 1, 4);
    }
    for (int t = 0; t < kGroup; ++t)
      for (int s = 0; s < block.strips; ++s) {
        const __m512i slot = _mm512_and_si512(_mm512_srli_epi32(run[s][t / 16], 2 * (t % 16)), three);
        simd::store16<Stream>(tile + t * width + 16 * s, block.lanes[s], _mm512_cvtepi32_ps(_mm512_sub_epi32(slot, one)));
      }
  });
}

void decode_slots(const std::uint8_t* stream, const GroupGrid& g, float* out) {
  if (!simd::stream_output(out, g.elements(), g.rows)) return decode_runs<false>(stream, g, out);
  decode_runs<true>(stream, g, out);
  simd::finish_stores();
}

}  // namespace

bool applies(const GroupGrid& g, GroupAxis axis, Reconstruction reconstruction, Packing packing) {
  return simd::avx512_kernels() && axis == GroupAxis::channel && g.group == kGroup && g.length % kGroup == 0 &&
         g.elements() > 0 && reconstruction == Reconstruction::magnitude_free &&
         (packing == Packing::base3 || packing == Packing::slots2) && g.rows * g.length / 16 < (std::int64_t{1} << 30);
}

void encode(const float* in, const GroupGrid& g, double gamma, Packing packing, std::uint8_t* codes) {
  if (packing == Packing::slots2) return encode_slots(in, g, gamma, codes);
  const auto stream_bytes = static_cast<std::size_t>(g.elements() / 4 + 1);
  const ThreadScratch scratch(stream_bytes / sizeof(float) + 1);  // +16 floats of padding: 8-byte reads past the end
  auto* stream = reinterpret_cast<std::uint8_t*>(scratch.data());
  encode_slots(in, g, gamma, stream);  // every word of the stream is written (whole groups, whole strips)
  slots_to_base3(stream, g.elements(), codes);
}

void decode(const std::uint8_t* codes, const GroupGrid& g, Packing packing, float* out) {
  if (packing == Packing::slots2) return decode_slots(codes, g, out);
  const auto stream_bytes = static_cast<std::size_t>(g.elements() / 4 + 1);
  const ThreadScratch scratch(stream_bytes / sizeof(float) + 1);
  auto* stream = reinterpret_cast<std::uint8_t*>(scratch.data());
  base3_to_slots(codes, g.elements(), stream);
  decode_slots(stream, g, out);
}

#else

bool applies(const GroupGrid&, GroupAxis, Reconstruction, Packing) { return false; }
void encode(const float*, const GroupGrid&, double, Packing, std::uint8_t*) {}
void decode(const std::uint8_t*, const GroupGrid&, Packing, float*) {}

#endif

}  // namespace vidkv::ternary_avx512
