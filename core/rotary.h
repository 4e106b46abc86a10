// Rotary position embedding (RoPE) as transformers applies it to query and key states, for traces whose keys are
// stored before it (`rope: pre`, traces/SCHEMA.md): trace replay rotates the keys (exact and reconstructed) and the
// recorded queries by their /tokens/position before computing attention metrics (experiment_runner.cpp).
// Source: Su et al. 2021 (RoFormer, arXiv 2104.09864) Eq. 34; transformers' rotate_half (modeling_llama.py
// apply_rotary_pos_emb) for pairing half, GPT-J / the RoFormer paper for pairing interleaved; linear scaling as
// transformers' rope_type "linear" (positions divided by the factor).
//
// For a head vector x of even dim D at position p, with inv_freq_i = theta^(-2i / D) and a_i = (p / factor) * inv_freq_i,
// i in [0, D/2):
//   half:        (x_i, x_{i+D/2})  -> (x_i cos a_i - x_{i+D/2} sin a_i,  x_{i+D/2} cos a_i + x_i sin a_i)
//   interleaved: (x_{2i}, x_{2i+1}) -> (x_{2i} cos a_i - x_{2i+1} sin a_i, x_{2i+1} cos a_i + x_{2i} sin a_i)
// computed in double and rounded to fp32 (transformers computes the angles in fp32: the two agree to ~1e-6
// relative for positions below 2^16). The rotation is orthogonal, so norms, distances and inner products of two
// vectors at the same position (reconstruction errors) are unchanged by it, up to rounding.
//
// One definition for host and device: the angle (rotary_angle) and its cos / sin are computed on the host only
// (apply_rotary, and rotary_cos_sin for a table that backend: cuda uploads); the pair indices (rotary_pair) and the
// rotation of a pair (rotate_pair: each product and sum rounded once in double, then to fp32; never an FMA: explicit
// __dmul_rn / __dadd_rn on the device, -ffp-contract=off for core on the host) compile for both, so a rotation on
// the device from that table is bit-identical to apply_rotary (experiments/src/cuda_rotary.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/core/host_device.h"

namespace vidkv {

enum class RotaryPairing : std::uint8_t { half, interleaved };
enum class RotaryScaling : std::uint8_t { none, linear };

struct RotaryParams {
  double theta = 10000.0;  // base of the inverse frequencies (transformers' rope_theta)
  RotaryScaling scaling = RotaryScaling::none;
  double factor = 1.0;  // linear: positions are divided by it
  RotaryPairing pairing = RotaryPairing::half;

  // "theta 10000, half pairing" / "theta 500000, linear x 8, interleaved pairing"
  std::string str() const;
};

// The angle a_i = (position / factor) * theta^(-2i / dim) of pair i, in double (host only: std::pow).
double rotary_angle(double position, std::int64_t i, std::int64_t dim, const RotaryParams& p);

// The element indices (j0, j1) of pair i of a head vector with half = dim / 2: (i, i + half) for half pairing,
// (2i, 2i + 1) for interleaved.
VIDKV_HOST_DEVICE inline void rotary_pair(RotaryPairing pairing, std::int64_t i, std::int64_t half, std::int64_t& j0,
                                          std::int64_t& j1) {
  j0 = pairing == RotaryPairing::half ? i : 2 * i;
  j1 = pairing == RotaryPairing::half ? i + half : 2 * i + 1;
}

// (x[j0], x[j1]) <- (x0 c - x1 s, x1 c + x0 s) in double, each product and sum rounded once, then rounded to fp32.
VIDKV_HOST_DEVICE inline void rotate_pair(float* x, std::int64_t j0, std::int64_t j1, double c, double s) {
  const double x0 = x[j0], x1 = x[j1];
#if defined(__CUDA_ARCH__)
  x[j0] = __double2float_rn(__dsub_rn(__dmul_rn(x0, c), __dmul_rn(x1, s)));
  x[j1] = __double2float_rn(__dadd_rn(__dmul_rn(x1, c), __dmul_rn(x0, s)));
#else
  x[j0] = static_cast<float>(x0 * c - x1 * s);
  x[j1] = static_cast<float>(x1 * c + x0 * s);
#endif
}

// The cos / sin table of `rows` positions: out[(r * dim / 2 + i) * 2 + {0, 1}] = {cos, sin} of
// rotary_angle(positions[r], i, dim, p), the values apply_rotary uses. ShapeError for an odd dim.
std::vector<double> rotary_cos_sin(const std::int32_t* positions, std::int64_t rows, std::int64_t dim, const RotaryParams& p);

// Rotates one vector x[0..dim) (dim even) to `position`. ShapeError for an odd dim.
void apply_rotary(float* x, std::int64_t dim, double position, const RotaryParams& p);

// Rotates the rows of x [heads, rows, dim]: row r to positions[r].
void apply_rotary_rows(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim, const std::int32_t* positions,
                       const RotaryParams& p);

}  // namespace vidkv
