// The per-channel scores of the channel selectors as functions of one channel's values, shared by the CUDA kernels
// (one thread per score) and the [cpu] tests that compare them with the reference score() of each selector.
//
// Why sequential: variance and outlier accumulate sums of doubles in the reference's order (heads of the scope,
// then tokens, one value at a time). Floating-point addition is not associative, so a parallel (tree) reduction
// would round differently and could change which channels top-k picks; these functions repeat the reference's
// operations in its order, each rounded as on the host (add_rn / mul_rn keep nvcc from contracting a * b + c into
// one FMA, as -ffp-contract=off does for the plugins on the host). The cost is one thread per score reading its
// channel's heads * tokens values in turn: latency-bound (by count, a dependent chain of 2 x 131072 double
// additions per score at 4 x 32768 tokens: a few milliseconds, not measured here), for the Table 1 ablations only;
// range, the paper's and the presets' selector, is order-free and reduced in parallel (column_scores.cu).
// C++17, no CUDA headers: included by .cu files and by host code.
#pragma once

#include <cmath>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

// On the device, unroll the sequential loops so that a thread has many independent loads in flight before the
// dependent chain of additions consumes them (the loops are latency-bound, one thread per score).
#if defined(__CUDA_ARCH__)
#define VIDKV_COLUMN_UNROLL _Pragma("unroll 16")
#else
#define VIDKV_COLUMN_UNROLL
#endif

namespace vidkv::column_scores {

// Double addition and multiplication rounded once each (no contraction into an FMA on the device).
VIDKV_HOST_DEVICE inline double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
VIDKV_HOST_DEVICE inline double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}

// Channel c of the heads [h0, h0 + heads) of a [*, tokens, channels] block of dtype t at `data`, as the sequence
// x(0), x(1), ... of its heads * tokens values in the reference's order (head, then token), converted to fp32.
struct Column {
  const void* data;
  DType dtype;
  std::int64_t first;   // element offset of (h0, token 0, c)
  std::int64_t stride;  // channels
  VIDKV_HOST_DEVICE float operator()(std::int64_t i) const {
    return load_as_float(data, dtype, static_cast<std::size_t>(first + i * stride));
  }
};
VIDKV_HOST_DEVICE inline Column column(const void* data, DType dtype, std::int64_t tokens, std::int64_t channels,
                                       std::int64_t h0, std::int64_t c) {
  return Column{data, dtype, h0 * tokens * channels + c, channels};
}

// variance.cpp: m = sum(x) / n, score = sum((x - m)^2) / n, sums in double in order; 0 when n == 0.
template <class X>
VIDKV_HOST_DEVICE double variance(const X& x, std::int64_t n) {
  if (n <= 0) return 0.0;
  const double dn = static_cast<double>(n);
  double mean = 0.0;
  VIDKV_COLUMN_UNROLL
  for (std::int64_t i = 0; i < n; ++i) mean = add_rn(mean, static_cast<double>(x(i)));
  mean /= dn;
  double var = 0.0;
  VIDKV_COLUMN_UNROLL
  for (std::int64_t i = 0; i < n; ++i) {
    const double d = static_cast<double>(x(i)) - mean;
    var = add_rn(var, mul_rn(d, d));
  }
  return var / dn;
}

// outlier.cpp: a = sum(v) / n with v = |x| (absolute) or x (signed), score = #{v > multiplier * a}; 0 when n == 0.
template <class X>
VIDKV_HOST_DEVICE double outlier_count(const X& x, std::int64_t n, double multiplier, bool absolute) {
  if (n <= 0) return 0.0;
  double mean = 0.0;
  VIDKV_COLUMN_UNROLL
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x(i));
    mean = add_rn(mean, absolute ? std::fabs(v) : v);
  }
  mean /= static_cast<double>(n);
  const double threshold = mul_rn(multiplier, mean);
  double count = 0.0;  // an integer count (exact in a double), so its order does not matter
  VIDKV_COLUMN_UNROLL
  for (std::int64_t i = 0; i < n; ++i) {
    const double v = static_cast<double>(x(i));
    if ((absolute ? std::fabs(v) : v) > threshold) count += 1.0;
  }
  return count;
}

// range.cpp's running extrema, `x < lo ? x : lo` and `hi < x ? x : hi` in value order: combining the extrema of
// consecutive runs of values with the same expressions, earlier run first, gives the sequential result exactly
// (the earlier of two equal values wins, which matters only for the sign of a zero), so range may reduce in
// parallel over runs taken in order.
struct Extrema {
  float lo, hi;
};
VIDKV_HOST_DEVICE inline Extrema extrema_add(Extrema acc, float x) {
  return Extrema{x < acc.lo ? x : acc.lo, acc.hi < x ? x : acc.hi};
}
// acc holds the extrema of the earlier run, later those of the run right after it.
VIDKV_HOST_DEVICE inline Extrema extrema_merge(Extrema acc, Extrema later) {
  return Extrema{later.lo < acc.lo ? later.lo : acc.lo, acc.hi < later.hi ? later.hi : acc.hi};
}
// range.cpp's score from the extrema of all values; 0 for an empty channel. +0 for an all-zero channel whatever the
// signs of its two ends (the ordered scan keeps the first zero at both ends, so hi - lo is +0 there; the CUDA pass's
// packed min / max may end with -0 and +0, whose difference could be -0).
VIDKV_HOST_DEVICE inline double range_score(Extrema e, std::int64_t n) {
  if (n <= 0 || (e.hi == 0.0f && e.lo == 0.0f)) return 0.0;
  return static_cast<double>(e.hi) - static_cast<double>(e.lo);
}

}  // namespace vidkv::column_scores
