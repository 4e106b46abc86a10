// Helpers shared by the AVX-512 kernels of the grouped quantizers (plugins/quantizers/: uniform/uniform_avx512.cpp,
// sign/sign_avx512.cpp, ternary/ternary_avx512.cpp). Included only by *_avx512.cpp files, which plugins/CMakeLists.txt
// compiles with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mf16c; nothing here runs unless cpu_features.h says
// the processor has those instruction sets.
//
// Why these helpers keep the reference's bits (the kernels' equivalence arguments build on them):
//   * _mm512_min_ps(x, m) is `x < m ? x : m` and _mm512_max_ps(x, m) is `x > m ? x : m` lane by lane (Intel SDM,
//     MINPS/MAXPS: the second operand is returned when the first is not strictly smaller/larger, zeros of either
//     sign and NaN included), which is exactly the reference's sequential update, so a column-wise running
//     extremum is bit-identical, signed zeros included.
//   * vcvtps2ph with round-to-nearest-even is the IEEE fp32 -> fp16 conversion (subnormals and overflow to inf
//     included) that core/dtype.h float_to_half_bits computes for every non-NaN value; inputs are finite here.
//   * _mm512_cvt_roundps_epi32 with _MM_FROUND_TO_NEAREST_INT is round half to even, which is what
//     group_format::round_half_even computes for finite non-negative values below 2^23.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__)

#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "vidkv/core/dtype.h"
#include "vidkv/core/thread_scratch.h"

namespace vidkv::simd {

constexpr int kRne = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

// The first n (<= 16) of 16 lanes.
inline __mmask16 first_lanes(std::int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << n) - 1u);
}

// v rounded to `t` (fp16: round to nearest even; fp32: v itself), as the value stored in a group's metadata;
// `half` receives the fp16 bits (unused for fp32).
inline __m512 round_to_stored(__m512 v, DType t, __m256i* half) {
  if (t != DType::f16) return v;
  *half = _mm512_cvtps_ph(v, kRne);
  return _mm512_cvtph_ps(*half);
}

// Writes lanes [0, n) of a group-scalar vector as elements first + k * stride of a little-endian scalar array of
// dtype t (fp16 from `half`, fp32 from `v`); byte-wise stores, so any section offset works.
inline void store_scalars(std::uint8_t* bytes, std::int64_t first, std::int64_t stride, DType t, __m512 v, __m256i half,
                          std::int64_t n) {
  if (stride == 1) {  // consecutive groups (token axis): one masked vector store
    if (t == DType::f16) return _mm256_mask_storeu_epi16(bytes + 2 * first, first_lanes(n), half);
    return _mm512_mask_storeu_ps(bytes + 4 * first, first_lanes(n), v);
  }
  if (t == DType::f16) {
    alignas(32) std::uint16_t h[16];
    _mm256_store_si256(reinterpret_cast<__m256i*>(h), half);
    for (std::int64_t k = 0; k < n; ++k) std::memcpy(bytes + 2 * (first + k * stride), &h[k], 2);
    return;
  }
  alignas(64) float f[16];
  _mm512_store_ps(f, v);
  for (std::int64_t k = 0; k < n; ++k) std::memcpy(bytes + 4 * (first + k * stride), &f[k], 4);
}

// Reads elements first + k * stride, k in [0, n), of a little-endian fp16 or fp32 scalar array as fp32 lanes
// (lanes >= n are 0).
inline __m512 load_scalars(const std::uint8_t* bytes, std::int64_t first, std::int64_t stride, DType t, std::int64_t n) {
  if (stride == 1) {  // consecutive groups: one masked vector load
    if (t == DType::f16) return _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(first_lanes(n), bytes + 2 * first));
    return _mm512_maskz_loadu_ps(first_lanes(n), bytes + 4 * first);
  }
  if (t == DType::f16) {
    alignas(32) std::uint16_t h[16] = {};
    for (std::int64_t k = 0; k < n; ++k) std::memcpy(&h[k], bytes + 2 * (first + k * stride), 2);
    return _mm512_cvtph_ps(_mm256_load_si256(reinterpret_cast<const __m256i*>(h)));
  }
  alignas(64) float f[16] = {};
  for (std::int64_t k = 0; k < n; ++k) std::memcpy(&f[k], bytes + 4 * (first + k * stride), 4);
  return _mm512_load_ps(f);
}

// Running sums of |x| in double, lanes 0-7 in lo and 8-15 in hi: `sum += fabs(double(x))` lane by lane, as the
// reference accumulates a group's mean |x| (exact conversion, the same additions in the same order).
inline void add_abs(__m512 x, __m512d* lo, __m512d* hi) {
  const __m512 a = _mm512_abs_ps(x);
  *lo = _mm512_add_pd(*lo, _mm512_cvtps_pd(_mm512_castps512_ps256(a)));
  *hi = _mm512_add_pd(*hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1))));
}

// Two halves of double lanes (0-7, 8-15) converted to 16 float lanes with rounding `mode`.
template <int Mode>
inline __m512 to_float(__m512d lo, __m512d hi) {
  return _mm512_insertf32x8(_mm512_castps256_ps512(_mm512_cvt_roundpd_ps(lo, Mode)), _mm512_cvt_roundpd_ps(hi, Mode), 1);
}

// lane k = k * step, as the int32 indexes of a gather or scatter whose lanes are `step` elements apart.
inline __m512i lane_offsets(std::int64_t step) {
  return _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                            _mm512_set1_epi32(static_cast<int>(step)));
}

// Strips of 16 columns whose first pass over a [rows, width] tile is made row by row (8 strips = one 512-byte
// row of 128 channels): the tile is then read in address order, which the hardware prefetchers follow, instead
// of one 64-byte column of every row at a time.
constexpr int kStrips = 8;

// The 16-column strips [b0, b0 + 16 * strips) of a row `width` floats wide, strips <= kStrips: how many, and the
// valid lanes of each (the last strip of a row may be partial).
struct StripBlock {
  int strips = 0;
  __mmask16 lanes[kStrips] = {};
  StripBlock(std::int64_t b0, std::int64_t width) {
    strips = static_cast<int>((width - b0 + 15) / 16 < kStrips ? (width - b0 + 15) / 16 : kStrips);
    for (int s = 0; s < strips; ++s) lanes[s] = first_lanes(width - b0 - 16 * s);
  }
};

// Running column min / max of the strips of `block` starting at `tile` (rows `width` floats apart), in row
// order: lane by lane the reference's sequential `x < mn ? x : mn` (see the top of this file). S is the strip
// count as a constant, so that the accumulators stay in registers.
template <int S>
inline void strip_extrema_n(const float* tile, int rows, std::int64_t width, const StripBlock& block, __m512* mn, __m512* mx) {
  for (int s = 0; s < S; ++s) mn[s] = mx[s] = _mm512_maskz_loadu_ps(block.lanes[s], tile + 16 * s);
  for (int t = 1; t < rows; ++t)
    for (int s = 0; s < S; ++s) {
      const __m512 v = _mm512_maskz_loadu_ps(block.lanes[s], tile + t * width + 16 * s);
      mn[s] = _mm512_min_ps(v, mn[s]);
      mx[s] = _mm512_max_ps(v, mx[s]);
    }
}

// Running column sums of |x| in double (add_abs), row by row.
template <int S>
inline void strip_abs_sums_n(const float* tile, int rows, std::int64_t width, const StripBlock& block, __m512d* lo, __m512d* hi) {
  for (int s = 0; s < S; ++s) lo[s] = hi[s] = _mm512_setzero_pd();
  for (int t = 0; t < rows; ++t)
    for (int s = 0; s < S; ++s) add_abs(_mm512_maskz_loadu_ps(block.lanes[s], tile + t * width + 16 * s), &lo[s], &hi[s]);
}

// Software prefetch, during the second pass over strip s of a tile (codes computed from L1), of the part of the
// next tile (the next `rows` rows, contiguous after this tile) that strip s will read: 2 KiB a strip, so the
// memory traffic of the next tile overlaps this tile's arithmetic instead of following it. Prefetches never fault.
inline void prefetch_next_tile(const float* tile, int rows, std::int64_t width, int s, const float* end) {
  const char* next = reinterpret_cast<const char*>(tile + rows * width) + s * 2048;
  for (int k = 0; k < 32 && next + 64 * k < reinterpret_cast<const char*>(end); ++k) _mm_prefetch(next + 64 * k, _MM_HINT_T0);
}

// The loop of every channel-axis kernel: each group of `group` tokens of each head of a block [heads, tokens, width],
// in blocks of up to kStrips strips of 16 channels; f(h, gi, row0, b0, block) with row0 = (h * tokens + gi * group)
// the group's first token row and b0 the block's first channel.
template <class F>
inline void for_each_strip_block(std::int64_t heads, std::int64_t tokens, std::int64_t width, int group, F&& f) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t gi = 0; gi < tokens / group; ++gi)
      for (std::int64_t b0 = 0; b0 < width; b0 += 16 * kStrips) f(h, gi, h * tokens + gi * group, b0, StripBlock(b0, width));
}

// The two-pass channel-axis encoders (uniform: min / max then codes; ternary: |x| sums then trits) on that loop:
// first(tile + b0, block, stats) fills stats[s] for each strip of the block (row by row); then
// second(h, gi, c0, n, stats[s]) runs strip by strip while the next tile's part is prefetched (n: the strip's
// valid channels).
template <class Stats, class First, class Second>
inline void for_each_channel_tile(const float* in, std::int64_t heads, std::int64_t tokens, std::int64_t width,
                                  int group, First&& first, Second&& second) {
  const float* end = in + heads * tokens * width;
  for_each_strip_block(heads, tokens, width, group,
                       [&](std::int64_t h, std::int64_t gi, std::int64_t row0, std::int64_t b0, const StripBlock& block) {
                         const float* tile = in + row0 * width;
                         Stats stats[kStrips];
                         first(tile + b0, block, stats);
                         for (int s = 0; s < block.strips; ++s) {
                           prefetch_next_tile(tile + b0, group, width, s, end);
                           const std::int64_t c0 = b0 + 16 * s;
                           second(h, gi, c0, width - c0 < 16 ? width - c0 : 16, stats[s]);
                         }
                       });
}

// Calls f.template operator()<S>() with S = block.strips (1..kStrips) as a constant.
template <class F>
inline void with_strip_count(int strips, F&& f) {
  switch (strips) {
    case 1: return f.template operator()<1>();
    case 2: return f.template operator()<2>();
    case 3: return f.template operator()<3>();
    case 4: return f.template operator()<4>();
    case 5: return f.template operator()<5>();
    case 6: return f.template operator()<6>();
    case 7: return f.template operator()<7>();
    default: return f.template operator()<8>();
  }
}

// Per-strip statistics of the first passes.
struct Extrema {
  __m512 mn, mx;
};
struct AbsSums {
  __m512d lo, hi;  // lanes 0-7, 8-15
};

inline void strip_extrema(const float* tile, int rows, std::int64_t width, const StripBlock& block, Extrema* out) {
  with_strip_count(block.strips, [&]<int S>() {
    __m512 mn[S], mx[S];
    strip_extrema_n<S>(tile, rows, width, block, mn, mx);
    for (int s = 0; s < S; ++s) out[s] = {mn[s], mx[s]};
  });
}

inline void strip_abs_sums(const float* tile, int rows, std::int64_t width, const StripBlock& block, AbsSums* out) {
  with_strip_count(block.strips, [&]<int S>() {
    __m512d lo[S], hi[S];
    strip_abs_sums_n<S>(tile, rows, width, block, lo, hi);
    for (int s = 0; s < S; ++s) out[s] = {lo[s], hi[s]};
  });
}

// Stores of decoded values. A decoded block larger than the caches is written with streaming (non-temporal)
// stores: a normal store first reads the line it writes (read for ownership), so a block that goes to memory
// anyway costs its bytes twice; streaming stores write whole lines without reading them. Blocks that fit the
// caches (below kStreamBytes) keep normal stores, so that the metrics reading them next find them there, and so
// do the parts a composite decodes into per-thread scratch (core/thread_scratch.h) and reads right back. Full
// 16-lane stores stream only at 64-byte aligned addresses: stream_output() checks the block's start and row
// length; partial (masked) stores are normal stores. A kernel that streamed calls finish_stores() before it returns.
constexpr std::int64_t kStreamBytes = std::int64_t{8} << 20;

inline bool stream_output(const float* out, std::int64_t floats, std::int64_t row_floats) {
  return floats * 4 >= kStreamBytes && reinterpret_cast<std::uintptr_t>(out) % 64 == 0 && row_floats % 16 == 0 &&
         !ThreadScratch::holds(out);
}

template <bool Stream>
inline void store16(float* p, __mmask16 lanes, __m512 v) {
  if constexpr (Stream) {
    if (lanes == static_cast<__mmask16>(0xFFFF)) return _mm512_stream_ps(p, v);
  }
  _mm512_mask_storeu_ps(p, lanes, v);
}

inline void finish_stores() { _mm_sfence(); }

// Transposing reduction: lane i of the result is op over the 16 lanes of v[i] (i < 16). Four levels of
// permute-and-combine, 15 combines in all.
template <class Op>
inline __m512 reduce16(__m512* v, Op op) {
  const __m512i a1 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i b1 = _mm512_setr_epi32(8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31);
  const __m512i a2 = _mm512_setr_epi32(0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27);
  const __m512i b2 = _mm512_setr_epi32(4, 5, 6, 7, 12, 13, 14, 15, 20, 21, 22, 23, 28, 29, 30, 31);
  const __m512i a3 = _mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 16, 17, 20, 21, 24, 25, 28, 29);
  const __m512i b3 = _mm512_setr_epi32(2, 3, 6, 7, 10, 11, 14, 15, 18, 19, 22, 23, 26, 27, 30, 31);
  const __m512i a4 = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i b4 = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
  auto level = [&](const __m512* in, __m512* out, int n, __m512i a, __m512i b) {
    for (int k = 0; k < n; ++k)
      out[k] = op(_mm512_permutex2var_ps(in[2 * k], a, in[2 * k + 1]), _mm512_permutex2var_ps(in[2 * k], b, in[2 * k + 1]));
  };
  __m512 l1[8], l2[4], l3[2], l4[1];
  level(v, l1, 8, a1, b1);   // l1[k]: lanes 0-7 fold v[2k], 8-15 fold v[2k+1]
  level(l1, l2, 4, a2, b2);  // 4 lanes per vector
  level(l2, l3, 2, a3, b3);  // 2 lanes per vector
  level(l3, l4, 1, a4, b4);  // one lane per vector, in order
  return l4[0];
}

}  // namespace vidkv::simd

#endif
