// ternary: the portable optimised CPU tier (ternary_kernels.h "optimized") of the 1.58-bit quantizer. Same bytes as the
// reference in ternary.cpp:
//   axis channel: per head and group of G tokens, the [G, channels] tile is read row by row; each channel's
//                 sum of |x| (and, when scaled, of the kept |x|) is accumulated in double in token order (the
//                 reference's order, vectorised across channels); the dead-zone tests are the reference's, in
//                 double; each channel's G trits are packed in one run (code_stream.h);
//   axis token:   sequential double sums per group (the reference's order), a row's trits packed in one run.
// Adding 0.0 for a zero trit to the kept sum leaves a sum of non-negative values unchanged, so the branch-free
// kept sum equals the reference's conditional one.
#include <algorithm>
#include <cmath>
#include <vector>

#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/plugins/quantizers/ternary/ternary_kernels.h"
#include "vidkv/quantization/code_stream.h"
#include "vidkv/quantization/cpu_dispatch.h"
#include "vidkv/quantization/group_kernels.h"

namespace vidkv {

namespace {

using group_format::GroupAxis;
using ternary_format::Packing;
using ternary_format::Reconstruction;

// slots[i] = ternarize(x[i], dead_zone[i]) + 1; when `kept_sum` is given, also kept_sum[i] += |x| and
// kept_count[i] += 1 for non-zero trits.
// The dead-zone test in float: for a float x and a double a >= 0, x > a exactly when x > fa, and x < -a exactly
// when x < -fa, where fa is the largest float <= a (no float lies in (fa, a]). So comparing float lanes with fa
// gives the reference's double comparisons bit for bit, twice as many lanes per instruction.
float float_below(double a) {
  float f = static_cast<float>(a);
  if (static_cast<double>(f) > a) f = std::nextafter(f, -INFINITY);
  return f;
}

VIDKV_CPU_CLONES
void trit_slots(const float* __restrict x, const float* __restrict dead_zone, std::int64_t n, std::uint8_t* __restrict slots) {
  constexpr std::int64_t kChunk = 64;  // int32 lanes first, bytes second: one loop of both does not vectorise
  std::int32_t slot[kChunk];
  for (std::int64_t i0 = 0; i0 < n; i0 += kChunk) {
    const std::int64_t m = std::min(kChunk, n - i0);
    for (std::int64_t i = 0; i < m; ++i) {
      const float v = x[i0 + i], a = dead_zone[i0 + i];
      const std::int32_t above = v > a;
      const std::int32_t below = v < -a;
      slot[i] = 1 + above - below;
    }
    for (std::int64_t i = 0; i < m; ++i) slots[i0 + i] = static_cast<std::uint8_t>(slot[i]);
  }
}

VIDKV_CPU_CLONES
void kept_sums(const float* __restrict x, const std::uint8_t* __restrict slots, std::int64_t n, double* __restrict kept_sum,
               std::int64_t* __restrict kept_count) {
  for (std::int64_t i = 0; i < n; ++i) {
    const bool kept = slots[i] != 1;
    kept_sum[i] += kept ? std::fabs(static_cast<double>(x[i])) : 0.0;
    kept_count[i] += kept;
  }
}

VIDKV_CPU_CLONES
void trit_values(const std::uint8_t* __restrict slots, const float* __restrict u, std::int64_t n, float* __restrict out) {
  for (std::int64_t i = 0; i < n; ++i) out[i] = static_cast<float>(static_cast<int>(slots[i]) - 1) * u[i];
}

// Packs n slots of element (h, r, j0) onward in the codes section of packing p.
void put_run(Packing p, std::uint8_t* codes, const group_format::GroupGrid& g, std::int64_t h, std::int64_t r,
             std::int64_t j0, const std::uint8_t* slots, std::int64_t n) {
  if (p == Packing::base3) return code_stream::write_trits(codes, g.stream_index(h, r, j0), slots, n);
  const auto layout = p == Packing::slots2 ? group_format::CodeLayout::dense : group_format::CodeLayout::release;
  code_stream::write_codes(codes, code_stream::code_bit(layout, g, ternary_format::kSlotBits, h, r, j0), slots, n,
                           ternary_format::kSlotBits);
}

void get_run(Packing p, const std::uint8_t* codes, const group_format::GroupGrid& g, std::int64_t h, std::int64_t r,
             std::int64_t j0, std::uint8_t* slots, std::int64_t n) {
  if (p == Packing::base3) return code_stream::read_trits(codes, g.stream_index(h, r, j0), slots, n);
  const auto layout = p == Packing::slots2 ? group_format::CodeLayout::dense : group_format::CodeLayout::release;
  code_stream::read_codes(codes, code_stream::code_bit(layout, g, ternary_format::kSlotBits, h, r, j0), slots, n,
                          ternary_format::kSlotBits);
}

}  // namespace

void ternary_kernels::encode_optimized(const TernaryParams& params, const group_format::GroupGrid& g, const float* in,
                                       std::uint8_t* out) {
  const DType sd = params.scale_dtype;
  const Packing p = params.packing;
  const Reconstruction rec = params.reconstruction;
  const auto sec = ternary_format::sections(p, rec, g, sd, out);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const bool has_scales = ternary_format::has_scales(p, rec);
  const bool scaled = rec == Reconstruction::scaled;
  // Per group: the scale the reference stores (scaled: mean kept |x|; release: the unused mean |x|).
  auto put_group_meta = [&](std::int64_t h, std::int64_t r, std::int64_t gi, double mean_abs, double kept_sum,
                            std::int64_t kept) {
    if (has_scales) {
      const double scale = scaled ? (kept ? kept_sum / static_cast<double>(kept) : 0.0) : mean_abs;
      group_format::put_scalar(scales, g.group_index(h, r, gi), sd, static_cast<float>(scale));
    }
    if (p == Packing::release) group_format::put_scalar(mins, g.group_index(h, r, gi), sd, ternary_format::kReleaseMin);
  };
  if (params.axis == GroupAxis::channel) {
    const std::int64_t width = g.rows;  // rows of the grid = channels, contiguous in a token row
    const auto w = static_cast<std::size_t>(width);
    std::vector<double> sums(w), kept_sum(w);
    std::vector<float> dead_zone(w);
    std::vector<std::int64_t> kept(w);
    std::vector<std::uint8_t> tile(static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width));
    std::vector<std::uint8_t> run(static_cast<std::size_t>(g.group));
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        const float* base = in + h * g.head_stride + j0 * width;
        std::fill(sums.begin(), sums.end(), 0.0);
        group_kernels::column_abs_sum(base, n, width, width, sums.data());
        for (std::size_t c = 0; c < w; ++c) dead_zone[c] = float_below(params.gamma * (sums[c] / static_cast<double>(n)));
        std::fill(kept_sum.begin(), kept_sum.end(), 0.0);
        std::fill(kept.begin(), kept.end(), 0);
        for (std::int64_t t = 0; t < n; ++t) {
          trit_slots(base + t * width, dead_zone.data(), width, tile.data() + t * width);
          if (scaled) kept_sums(base + t * width, tile.data() + t * width, width, kept_sum.data(), kept.data());
        }
        for (std::int64_t c = 0; c < width; ++c) {
          const auto i = static_cast<std::size_t>(c);
          put_group_meta(h, c, gi, sums[i] / static_cast<double>(n), kept_sum[i], kept[i]);
          for (std::int64_t t = 0; t < n; ++t) run[static_cast<std::size_t>(t)] = tile[static_cast<std::size_t>(t * width + c)];
          put_run(p, codes, g, h, c, j0, run.data(), n);
        }
      }
    }
    return;
  }
  std::vector<std::uint8_t> row(static_cast<std::size_t>(g.length));
  std::vector<float> dead_zone(static_cast<std::size_t>(g.length));
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      const float* x = in + g.block_offset(h, r, 0);
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        double sum_abs = 0.0;
        for (std::int64_t j = j0; j < j0 + n; ++j) sum_abs += std::fabs(static_cast<double>(x[j]));
        const double mean_abs = sum_abs / static_cast<double>(n);
        std::fill(dead_zone.begin() + j0, dead_zone.begin() + j0 + n, float_below(params.gamma * mean_abs));
        trit_slots(x + j0, dead_zone.data() + j0, n, row.data() + j0);
        double kept_sum = 0.0;
        std::int64_t kept = 0;
        if (scaled)
          for (std::int64_t j = j0; j < j0 + n; ++j)
            if (row[static_cast<std::size_t>(j)] != 1) {
              kept_sum += std::fabs(static_cast<double>(x[j]));
              ++kept;
            }
        put_group_meta(h, r, gi, mean_abs, kept_sum, kept);
      }
      put_run(p, codes, g, h, r, 0, row.data(), g.length);
    }
  }
}

void ternary_kernels::decode_optimized(const TernaryParams& params, const group_format::GroupGrid& g, const std::uint8_t* in,
                                       float* out) {
  const DType sd = params.scale_dtype;
  const Packing p = params.packing;
  const auto sec = ternary_format::sections(p, params.reconstruction, g, sd, in);  // named pointers, not bindings: clang before 16 cannot capture bindings in lambdas
  [[maybe_unused]] const auto codes = sec.codes;
  [[maybe_unused]] const auto scales = sec.scales;
  [[maybe_unused]] const auto mins = sec.mins;
  const bool scaled = params.reconstruction == Reconstruction::scaled;
  if (params.axis == GroupAxis::channel) {
    const std::int64_t width = g.rows;  // the channels
    std::vector<float> u(static_cast<std::size_t>(width), 1.0f);
    std::vector<std::uint8_t> tile(static_cast<std::size_t>(std::min<std::int64_t>(g.group, g.length) * width));
    std::vector<std::uint8_t> run(static_cast<std::size_t>(g.group));
    for (std::int64_t h = 0; h < g.heads; ++h) {
      for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
        const std::int64_t j0 = gi * g.group, n = g.group_size(gi);
        for (std::int64_t c = 0; c < width; ++c) {
          if (scaled) u[static_cast<std::size_t>(c)] = group_format::get_scalar(scales, g.group_index(h, c, gi), sd);
          get_run(p, codes, g, h, c, j0, run.data(), n);
          for (std::int64_t t = 0; t < n; ++t) tile[static_cast<std::size_t>(t * width + c)] = run[static_cast<std::size_t>(t)];
        }
        float* base = out + h * g.head_stride + j0 * width;
        for (std::int64_t t = 0; t < n; ++t) trit_values(tile.data() + t * width, u.data(), width, base + t * width);
      }
    }
    return;
  }
  std::vector<std::uint8_t> row(static_cast<std::size_t>(g.length));
  std::vector<float> u(static_cast<std::size_t>(g.length), 1.0f);
  for (std::int64_t h = 0; h < g.heads; ++h) {
    for (std::int64_t r = 0; r < g.rows; ++r) {
      get_run(p, codes, g, h, r, 0, row.data(), g.length);
      if (scaled)
        for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi)
          std::fill(u.begin() + gi * g.group, u.begin() + gi * g.group + g.group_size(gi),
                    group_format::get_scalar(scales, g.group_index(h, r, gi), sd));
      trit_values(row.data(), u.data(), g.length, out + g.block_offset(h, r, 0));
    }
  }
}

}  // namespace vidkv
