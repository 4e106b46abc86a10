// uniform: AVX-512 kernels of the optimised CPU path for the configurations KIVI and VidKV use (G = 32, bits in
// {1, 2, 4, 8}, every group full: the grouped axis a multiple of 32). Same bytes and floats as the reference
// (uniform.cpp); uniform_avx512.cpp says why. The "avx512" entry of uniform_kernels.h, chosen where applies().
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::uniform_avx512 {

// Whether the kernels handle grid `g` with these parameters (and were compiled in).
bool applies(const group_format::GroupGrid& g, unsigned bits, DType scale_dtype);

// The whole block: `in` [heads, tokens, channels] fp32, `out` the uniform_format sections (codes | scales | mins),
// codes section zeroed. Only when applies().
void encode(const float* in, const group_format::GroupGrid& g, group_format::GroupAxis axis, unsigned bits,
            DType scale_dtype, group_format::CodeLayout layout, std::uint8_t* out);
void decode(const std::uint8_t* in, const group_format::GroupGrid& g, group_format::GroupAxis axis, unsigned bits,
            DType scale_dtype, group_format::CodeLayout layout, float* out);

}  // namespace vidkv::uniform_avx512
