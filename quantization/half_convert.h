// fp32 <-> fp16 conversion of whole arrays for the optimised CPU paths (group scales and mins), bit-identical to
// core/dtype.h float_to_half_bits / half_bits_to_float: on CPUs with F16C the hardware converts 8 values per
// instruction (vcvtps2ph with round-to-nearest-even is the IEEE conversion, subnormals and overflow to inf
// included, which is exactly what float_to_half_bits computes for every non-NaN input; NaN lanes are redone by
// the scalar function so their bits match too); elsewhere the scalar functions run element by element.
#pragma once

#include <cstdint>

namespace vidkv::half_convert {

// bits[i] = float_to_half_bits(v[i]); rounded[i] = half_bits_to_float(bits[i]).
void to_half(const float* v, std::int64_t n, std::uint16_t* bits, float* rounded);
// out[i] = half_bits_to_float(bits[i]).
void from_half(const std::uint16_t* bits, std::int64_t n, float* out);

}  // namespace vidkv::half_convert
