// sign: AVX-512 kernels of the optimised CPU path for channel-axis groups of 32 with every group full (the
// tokens a multiple of 32), on the values to quantize (the block or its FFT components). Same bytes and floats as
// the reference (sign.cpp); sign_avx512.cpp says why. The "avx512" group entry of sign_kernels.h, chosen where
// applies().
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::sign_avx512 {

// Whether the kernels handle grid `g` (over the quantized values) with this axis and scale dtype.
bool applies(const group_format::GroupGrid& g, group_format::GroupAxis axis, DType scale_dtype);

// values [heads, tokens, width] -> the sign_format sections; `out` zeroed (codes, scales, the release's zero mins).
void encode(const float* values, const group_format::GroupGrid& g, DType scale_dtype, group_format::CodeLayout layout,
            std::uint8_t* out);
void decode(const std::uint8_t* in, const group_format::GroupGrid& g, DType scale_dtype, group_format::CodeLayout layout,
            sign_format::Reconstruction reconstruction, float* values);

}  // namespace vidkv::sign_avx512
