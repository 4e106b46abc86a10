// The packed format of the `uniform` quantizer (asymmetric min/max, algorithms.md 2.1): the one definition shared by
// the CPU reference (uniform.cpp) and future CUDA kernels. See uniform.h for the full description.
//
// Sections, back to back:
//   codes  code_bytes(layout, grid, bits)             dense bitstream or release uint32 rows (group_format.h)
//   scales grid.group_count() * dtype_size(scale_dtype) one per group, canonical group order (head, row, group)
//   mins   grid.group_count() * dtype_size(scale_dtype) same order
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"
#include "vidkv/plugins/quantizers/group_format.h"

namespace vidkv::uniform_format {

using group_format::CodeLayout;
using group_format::GroupGrid;

// Bumped on any change of the bytes below.
constexpr int kFormatVersion = 1;
constexpr unsigned kMaxBits = 8;

VIDKV_HOST_DEVICE constexpr unsigned max_code(unsigned bits) { return (1u << bits) - 1u; }

VIDKV_HOST_DEVICE constexpr std::size_t codes_bytes(CodeLayout layout, const GroupGrid& g, unsigned bits) {
  return group_format::code_bytes(layout, g, bits);
}
VIDKV_HOST_DEVICE constexpr std::size_t scales_bytes(const GroupGrid& g, DType scale_dtype) {
  return static_cast<std::size_t>(g.group_count() * dtype_size(scale_dtype));
}
VIDKV_HOST_DEVICE constexpr std::size_t total_bytes(CodeLayout layout, const GroupGrid& g, unsigned bits, DType scale_dtype) {
  return codes_bytes(layout, g, bits) + 2 * scales_bytes(g, scale_dtype);
}

// 2-bit, G = 32, fp16, 32-token rows: 64 + 16 + 16 bits per 32 elements = 3.0 bits per element in both layouts.
static_assert(total_bytes(CodeLayout::dense, group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32), 2,
                          DType::f16) * 8 == 3 * 4 * 1024 * 128, "2-bit G=32 fp16 is 3.0 bits");
static_assert(total_bytes(CodeLayout::release, group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32), 2,
                          DType::f16) * 8 == 3 * 4 * 1024 * 128, "2-bit G=32 fp16 is 3.0 bits");

// The stored (scale_dtype-rounded) scale and min of a group whose values span [mn, mx]: the values every
// implementation stores AND encodes against. scale = round((mx - mn) / (2^b - 1)), min = round(mn), fp32
// arithmetic, rounding to nearest even (core/dtype.h).
struct StoredRange {
  float scale;
  float min;
};
VIDKV_HOST_DEVICE inline StoredRange stored_range(float mn, float mx, unsigned bits, DType scale_dtype) {
  return StoredRange{round_to_dtype((mx - mn) / static_cast<float>(max_code(bits)), scale_dtype),
                     round_to_dtype(mn, scale_dtype)};
}

// Code of x given the STORED (dtype-rounded) scale and min: round_half_even(clamp((x - mn) / scale, 0, 2^b - 1)),
// in that order, fp32 arithmetic. scale == 0 (constant group, or a range that rounds to 0) gives code 0.
VIDKV_HOST_DEVICE inline unsigned encode_value(float x, float scale, float mn, unsigned bits) {
  if (!(scale > 0.0f)) return 0;
  float v = (x - mn) / scale;
  const float top = static_cast<float>(max_code(bits));
  v = v < 0.0f ? 0.0f : (v > top ? top : v);
  return static_cast<unsigned>(group_format::round_half_even(v));
}

// Reconstruction q * scale + mn in fp32 (q = 0 gives mn exactly).
VIDKV_HOST_DEVICE inline float decode_value(unsigned code, float scale, float mn) {
  return static_cast<float>(code) * scale + mn;
}

}  // namespace vidkv::uniform_format
