// mixed_channel: AVX-512 gather and scatter of the high / normal channel sets (vcompressps / vexpandps per 16
// channels). Pure data movement, so the split blocks are the same as mixed_channel.cpp's scalar loops give.
#pragma once

#include <cstdint>

namespace vidkv::mixed_channel_avx512 {

// True when the kernels were compiled in and the CPU runs them (simd::avx512_kernels()).
bool available();

// `rows` rows of `channels` floats at `in` -> rows of the channels with is_high[c] != 0 (ascending) at hi_out and
// of the others at lo_out. hi_out and lo_out may be written up to 16 floats past their last row.
void gather(const float* in, std::int64_t rows, std::int64_t channels, const std::uint8_t* is_high, float* hi_out,
            float* lo_out);
// The inverse; hi_in and lo_in may be read up to 16 floats past their last row.
void scatter(const float* hi_in, const float* lo_in, std::int64_t rows, std::int64_t channels,
             const std::uint8_t* is_high, float* out);

}  // namespace vidkv::mixed_channel_avx512
