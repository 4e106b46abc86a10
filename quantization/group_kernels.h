// Vectorisable building blocks shared by the optimised CPU paths of the grouped quantizers (uniform, sign,
// ternary). Each computes, for a run of elements, exactly what the scalar reference computes element by element;
// the comments say why the result is bit-identical.
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::group_kernels {

// Rounds v to `t`, writes it as element i of the scalar array at `bytes` and returns the stored value: the same
// bytes and value as put_scalar(bytes, i, t, round_to_dtype(v, t)) (group_format.h), with one fp16 conversion
// instead of three (a finite fp16 value converts back to its own bits).
inline float store_rounded(std::uint8_t* bytes, std::int64_t i, DType t, float v) {
  if (t == DType::f16) {
    const std::uint16_t h = float_to_half_bits(v);
    bytes[2 * i] = static_cast<std::uint8_t>(h);
    bytes[2 * i + 1] = static_cast<std::uint8_t>(h >> 8);
    return half_bits_to_float(h);
  }
  const float r = round_to_dtype(v, t);
  group_format::put_scalar(bytes, i, t, r);
  return r;
}

// Round half to even of 0 <= v <= 255 as an integer, without branches (so loops calling it vectorise with
// SSE2 cvttps2dq and compare masks). Equal to group_format::round_half_even on that range: both take
// lo = trunc(v) and frac = v - lo (both exact) and round up when frac > 0.5, or frac == 0.5 and lo is odd.
// (Comparisons are taken as ints before they are combined: GCC 12 if-converts that form, not bool & bool.)
inline int round_half_even_small(float v) {
  const int lo = static_cast<int>(v);
  const float frac = v - static_cast<float>(lo);
  const int above = frac > 0.5f;
  const int tie = frac == 0.5f;
  return lo + (above | (tie & lo));
}

// clamp(v, 0, top) written as the max/min the vector units have. For finite v it gives the reference's
// `v < 0 ? 0 : (v > top ? top : v)` except that -0.0 becomes +0.0, which rounds to the same code 0.
inline float clamp_code(float v, float top) {
  v = v > 0.0f ? v : 0.0f;
  return v < top ? v : top;
}

// out[0..n) = v, as a loop the compiler vectorises (std::fill of a float range stays scalar in GCC 12 here).
inline void fill(float* __restrict out, std::int64_t n, float v) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = v;
}

// Minimum and maximum of x[0..n), n >= 1, equal (as bit patterns) to the reference's sequential
// `mn = x < mn ? x : mn` scan: lane-wise partial extrema are order-independent except for the sign of zero (the
// sequential scan keeps the first of -0 and +0), so a result of zero is recomputed sequentially.
void min_max(const float* x, std::int64_t n, float* mn, float* mx);

// Column-wise running min/max over `rows` rows of `width` floats, rows `stride` floats apart, in row order (the
// reference's order along the token axis, so identical including signed zeros).
void column_min_max(const float* x, std::int64_t rows, std::int64_t width, std::int64_t stride, float* mn, float* mx);

// Column-wise sum of |x| in double over `rows` rows, in row order (the reference's order): sums[c] += |x[r][c]|.
void column_abs_sum(const float* x, std::int64_t rows, std::int64_t width, std::int64_t stride, double* sums);

}  // namespace vidkv::group_kernels
