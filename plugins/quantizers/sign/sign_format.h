// The packed format of the `sign` quantizer (VidKV 1-bit, algorithms.md 2.2): the one definition shared by the CPU
// reference (sign.cpp) and future CUDA kernels. See sign.h for the full description.
//
// The grid (group_format.h) is over the quantized values: the block itself (fft off) or its per-token FFT
// components [heads, tokens, fft_components] (fft complex / real). Sections, back to back:
//   codes       code_bytes(layout, grid, 1)                  1 bit per value, bit = (x >= 0)
//   scales      grid.group_count() * sizeof(scale_dtype)      s = mean |x| per group
//   zero_points grid.group_count() * sizeof(scale_dtype)      layout release only: the constant 0 min the release stores
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::sign_format {

using group_format::CodeLayout;
using group_format::GroupGrid;

constexpr int kFormatVersion = 1;
constexpr unsigned kBits = 1;

enum class Reconstruction : std::uint8_t { zero_one, symmetric };

VIDKV_HOST_DEVICE constexpr std::size_t codes_bytes(CodeLayout layout, const GroupGrid& g) {
  return group_format::code_bytes(layout, g, kBits);
}
VIDKV_HOST_DEVICE constexpr std::size_t scales_bytes(const GroupGrid& g, DType scale_dtype) {
  return static_cast<std::size_t>(g.group_count() * dtype_size(scale_dtype));
}
// The release stores a zero min beside each scale; the dense layout does not.
VIDKV_HOST_DEVICE constexpr std::size_t zero_points_bytes(CodeLayout layout, const GroupGrid& g, DType scale_dtype) {
  return layout == CodeLayout::release ? scales_bytes(g, scale_dtype) : 0;
}
VIDKV_HOST_DEVICE constexpr std::size_t total_bytes(CodeLayout layout, const GroupGrid& g, DType scale_dtype) {
  return codes_bytes(layout, g) + scales_bytes(g, scale_dtype) + zero_points_bytes(layout, g, scale_dtype);
}
// The sections of the bytes at `out` (the order above; zero points = mins, no bytes in layout dense).
template <class Byte>
VIDKV_HOST_DEVICE constexpr group_format::Sections<Byte> sections(CodeLayout layout, const GroupGrid& g, DType scale_dtype,
                                                                  Byte* out) {
  return {out, out + codes_bytes(layout, g), out + codes_bytes(layout, g) + scales_bytes(g, scale_dtype)};
}

// Dense, G = 32, fp16: 1 + 16/32 = 1.5 bits per value. Release with the complex FFT (2 values per element):
// 2 * (1 + 16/32 + 16/32) = 4.0 bits per element.
static_assert(total_bytes(CodeLayout::dense, group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32),
                          DType::f16) * 16 == 3 * (4 * 1024 * 128), "dense is 1.5 bits per element");
static_assert(total_bytes(CodeLayout::release, group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 256, 32),
                          DType::f16) * 8 == 4 * (4 * 1024 * 128), "complex FFT release is 4.0 bits per element");

VIDKV_HOST_DEVICE inline unsigned encode_value(float x) { return x >= 0.0f ? 1u : 0u; }

VIDKV_HOST_DEVICE inline float decode_value(unsigned bit, float scale, Reconstruction r) {
  if (bit) return scale;
  return r == Reconstruction::symmetric ? -scale : 0.0f;
}

// One group of an encoder that writes whole code words (the CUDA kernels, sign.cu): value(j) gives element j of
// the group's row, j0 <= j < j0 + n. The sum of |x| is accumulated in double in position order, the mean rounded
// to fp32 and then to the scale dtype (put_scalar), the release's 0 min written when `mins` is not null: the
// reference's loop in sign.cpp, so the same bytes. With kWords (group_format::word_aligned_groups) the group's bits
// go out through a WordRunWriter in the same pass, store(word_index, word) called once per word from first_word on.
template <bool kWords, class Store, class Value>
VIDKV_HOST_DEVICE inline void encode_group(Store store, std::uint8_t* scales, std::uint8_t* mins, std::int64_t gidx,
                                           DType scale_dtype, std::int64_t first_word, std::int64_t j0, std::int64_t n,
                                           Value value) {
  double sum_abs = 0.0;
  group_format::WordRunWriter<Store> w(store, first_word, kBits);
#if defined(__CUDA_ARCH__)
#pragma unroll 8  // several loads in flight ahead of the (sequential, reference-order) sum
#endif
  for (std::int64_t j = j0; j < j0 + n; ++j) {
    const float x = value(j);
    sum_abs += fabs(static_cast<double>(x));
    if constexpr (kWords) w.put(encode_value(x));
  }
  if constexpr (kWords) w.flush();
  group_format::put_scalar(scales, gidx, scale_dtype, static_cast<float>(sum_abs / static_cast<double>(n)));
  if (mins) group_format::put_scalar(mins, gidx, scale_dtype, 0.0f);
}

}  // namespace vidkv::sign_format
