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
#pragma once

#include <cstdint>
#include <string>

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

// Rotates one vector x[0..dim) (dim even) to `position`.
void apply_rotary(float* x, std::int64_t dim, double position, const RotaryParams& p);

// Rotates the rows of x [heads, rows, dim]: row r to positions[r].
void apply_rotary_rows(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim, const std::int32_t* positions,
                       const RotaryParams& p);

}  // namespace vidkv
