// Inputs on and around the rounding boundaries of uniform quantization, shared by the tests of the fast paths
// that replace the division by a reciprocal (the AVX-512 kernels, the CUDA kernels).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"

namespace vidkv::test {

// Element j of group `group` (32 elements): j = 0 is the group's min, j = 1 its max, the others sit on or next to
// the rounding boundaries mn' + (k + 0.5) * s' computed with the stored (rounded) scale and min.
inline float boundary_value(std::uint64_t group, int j, int bits, DType sd) {
  std::mt19937_64 rng(group * 7919 + static_cast<std::uint64_t>(bits));
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  const float range = std::pow(10.0f, static_cast<float>(rng() % 8) - 3.0f) * (1.5f + unit(rng));  // 5e-4 .. 2.5e4
  const float offset = (rng() % 3 == 0) ? 0.0f : unit(rng) * range * static_cast<float>(rng() % 50);
  const float lo = offset - range / 2, hi = offset + range / 2;
  if (j == 0) return lo;
  if (j == 1) return hi;
  const auto top = static_cast<float>((1u << bits) - 1u);
  const float scale = round_to_dtype((hi - lo) / top, sd), mn = round_to_dtype(lo, sd);
  const float k = static_cast<float>(rng() % static_cast<std::uint64_t>(top));
  float x = mn + (k + 0.5f) * scale;
  for (int step = (j % 7) - 3; step != 0; step += step > 0 ? -1 : 1) x = std::nextafter(x, step > 0 ? INFINITY : -INFINITY);
  return x < lo ? lo : (x > hi ? hi : x);
}

// A block whose every group of 32 (channel axis: [2, 96, 48], 32 tokens of a channel; token axis: [2, 40, 96], 32
// channels of a token) holds boundary_value()s.
struct BoundaryBlock {
  BlockShape shape;
  std::vector<float> values;
};
inline BoundaryBlock boundary_block(int bits, bool channel_axis, DType sd) {
  BoundaryBlock b{channel_axis ? BlockShape{2, 96, 48} : BlockShape{2, 40, 96}, {}};
  const BlockShape& s = b.shape;
  b.values.resize(static_cast<std::size_t>(s.elements()));
  for (std::int64_t h = 0; h < s.heads; ++h)
    for (std::int64_t t = 0; t < s.tokens; ++t)
      for (std::int64_t c = 0; c < s.channels; ++c) {
        const std::int64_t row = channel_axis ? c : t, pos = channel_axis ? t : c;
        const auto group = static_cast<std::uint64_t>((h * 1000 + row) * 100 + pos / 32);
        b.values[static_cast<std::size_t>((h * s.tokens + t) * s.channels + c)] = boundary_value(group, static_cast<int>(pos % 32), bits, sd);
      }
  return b;
}

}  // namespace vidkv::test
