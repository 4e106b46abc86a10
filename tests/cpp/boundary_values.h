// Inputs on and around the rounding boundaries of uniform quantization, shared by the tests of the fast paths
// that replace the division by a reciprocal (the AVX-512 kernels, the CUDA kernels).
#pragma once

#include <cmath>
#include <cstdint>
#include <random>

#include "vidkv/core/dtype.h"

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

}  // namespace vidkv::test
