// ternary: AVX-512 kernels of the optimised CPU path for VidKV's value configuration (axis channel, G = 32, every
// group full, magnitude_free reconstruction, packing base3 or slots2). Same bytes and floats as the reference
// (ternary.cpp); ternary_avx512.cpp says why. The "avx512" entry of ternary_kernels.h, chosen where applies().
#pragma once

#include <cstdint>

#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::ternary_avx512 {

bool applies(const group_format::GroupGrid& g, group_format::GroupAxis axis, ternary_format::Reconstruction reconstruction,
             ternary_format::Packing packing);

// in [heads, tokens, channels] -> the codes section of `packing` (zeroed on entry).
void encode(const float* in, const group_format::GroupGrid& g, double gamma, ternary_format::Packing packing,
            std::uint8_t* codes);
// codes -> [heads, tokens, channels] of t in {-1, 0, +1}.
void decode(const std::uint8_t* codes, const group_format::GroupGrid& g, ternary_format::Packing packing, float* out);

}  // namespace vidkv::ternary_avx512
