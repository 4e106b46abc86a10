// RoPE (rotary.h).
#include "vidkv/core/rotary.h"

#include <cmath>
#include <cstdio>

#include "vidkv/core/error.h"

namespace vidkv {

std::string RotaryParams::str() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "theta %g%s%s, %s pairing", theta, scaling == RotaryScaling::linear ? ", linear x " : "",
                scaling == RotaryScaling::linear ? std::to_string(factor).c_str() : "",
                pairing == RotaryPairing::half ? "half" : "interleaved");
  return buf;
}

void apply_rotary(float* x, std::int64_t dim, double position, const RotaryParams& p) {
  VIDKV_REQUIRE(dim % 2 == 0, ShapeError, "rotary embedding: head_dim ", dim, " is odd");
  const std::int64_t half = dim / 2;
  const double pos = p.scaling == RotaryScaling::linear ? position / p.factor : position;
  for (std::int64_t i = 0; i < half; ++i) {
    const double inv_freq = std::pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
    const double a = pos * inv_freq, c = std::cos(a), s = std::sin(a);
    const std::int64_t j0 = p.pairing == RotaryPairing::half ? i : 2 * i;
    const std::int64_t j1 = p.pairing == RotaryPairing::half ? i + half : 2 * i + 1;
    const double x0 = x[j0], x1 = x[j1];
    x[j0] = static_cast<float>(x0 * c - x1 * s);
    x[j1] = static_cast<float>(x1 * c + x0 * s);
  }
}

void apply_rotary_rows(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim, const std::int32_t* positions,
                       const RotaryParams& p) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t r = 0; r < rows; ++r) apply_rotary(x + (h * rows + r) * dim, dim, positions[r], p);
}

}  // namespace vidkv
