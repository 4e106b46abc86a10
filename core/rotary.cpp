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

double rotary_angle(double position, std::int64_t i, std::int64_t dim, const RotaryParams& p) {
  const double pos = p.scaling == RotaryScaling::linear ? position / p.factor : position;
  const double inv_freq = std::pow(p.theta, -2.0 * static_cast<double>(i) / static_cast<double>(dim));
  return pos * inv_freq;
}

namespace {

// {cos, sin} of pair i's angle into cs[0, 2): the one place both are computed, for apply_rotary and the table alike
// (so a compiler that fuses them into one sincos call does it for both).
void angle_cos_sin(double position, std::int64_t i, std::int64_t dim, const RotaryParams& p, double* cs) {
  const double a = rotary_angle(position, i, dim, p);
  cs[0] = std::cos(a);
  cs[1] = std::sin(a);
}

}  // namespace

std::vector<double> rotary_cos_sin(const std::int32_t* positions, std::int64_t rows, std::int64_t dim, const RotaryParams& p) {
  VIDKV_REQUIRE(dim % 2 == 0, ShapeError, "rotary embedding: head_dim ", dim, " is odd");
  const std::int64_t half = dim / 2;
  std::vector<double> out(static_cast<std::size_t>(rows * half * 2));
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t i = 0; i < half; ++i)
      angle_cos_sin(positions[r], i, dim, p, out.data() + static_cast<std::size_t>((r * half + i) * 2));
  return out;
}

void apply_rotary(float* x, std::int64_t dim, double position, const RotaryParams& p) {
  VIDKV_REQUIRE(dim % 2 == 0, ShapeError, "rotary embedding: head_dim ", dim, " is odd");
  const std::int64_t half = dim / 2;
  for (std::int64_t i = 0; i < half; ++i) {
    double cs[2];
    angle_cos_sin(position, i, dim, p, cs);
    std::int64_t j0 = 0, j1 = 0;
    rotary_pair(p.pairing, i, half, j0, j1);
    rotate_pair(x, j0, j1, cs[0], cs[1]);
  }
}

void apply_rotary_rows(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim, const std::int32_t* positions,
                       const RotaryParams& p) {
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t r = 0; r < rows; ++r) apply_rotary(x + (h * rows + r) * dim, dim, positions[r], p);
}

}  // namespace vidkv
