// The packed format of the `uniform` quantizer (asymmetric min/max, algorithms.md 2.1): the one definition shared by
// the CPU reference (uniform.cpp) and future CUDA kernels. See uniform.h for the full description.
//
// Sections, back to back:
//   codes  code_bytes(layout, grid, bits)             dense bitstream or release uint32 rows (group_format.h)
//   scales grid.group_count() * dtype_size(scale_dtype) one per group, canonical group order (head, row, group);
//                                                      layout fragment on the channel axis with a whole 32-token tile:
//                                                      (head, group, row) (group_format::meta_index, group_major_meta)
//   mins   grid.group_count() * dtype_size(scale_dtype) same order
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::uniform_format {

using group_format::CodeLayout;
using group_format::GroupGrid;

// Bumped on any change of the bytes below. 2: layout fragment's channel-axis metadata group-major (group_major_meta).
constexpr int kFormatVersion = 2;
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

// The sections of the bytes at `out` (the order above).
template <class Byte>
VIDKV_HOST_DEVICE constexpr group_format::Sections<Byte> sections(CodeLayout layout, const GroupGrid& g, unsigned bits,
                                                                  DType scale_dtype, Byte* out) {
  return {out, out + codes_bytes(layout, g, bits), out + codes_bytes(layout, g, bits) + scales_bytes(g, scale_dtype)};
}

// 2-bit, G = 32, fp16, 32-token rows: 64 + 16 + 16 bits per 32 elements = 3.0 bits per element in both layouts.
static_assert(total_bytes(CodeLayout::dense, group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32), 2,
                          DType::f16) * 8 == 3 * 4 * 1024 * 128, "2-bit G=32 fp16 is 3.0 bits");
static_assert(total_bytes(CodeLayout::release, group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32), 2,
                          DType::f16) * 8 == 3 * 4 * 1024 * 128, "2-bit G=32 fp16 is 3.0 bits");

// Reconstruction q * scale + mn in fp32 (q = 0 gives mn exactly).
VIDKV_HOST_DEVICE inline float decode_value(unsigned code, float scale, float mn) {
  return static_cast<float>(code) * scale + mn;
}

// The stored (dtype-rounded) scale and min of one group.
struct StoredGroup {
  float scale;
  float mn;
};

// Whether a stored (scale >= 0, mn) decodes every code 0..top to a finite fp32 value: decode_value is monotone in the
// code, so checking the top code suffices; an infinite or NaN scale or min fails.
VIDKV_HOST_DEVICE inline bool decodes_finite(float scale, float mn, float top) {
  const float hi = top * scale + mn;  // decode_value of the top code, same operations
  return hi >= -0x1.fffffep127f && hi <= 0x1.fffffep127f && mn >= -0x1.fffffep127f && mn <= 0x1.fffffep127f;
}

// The largest value of dtype t in [0, v] (v >= 0, a value of t) with which the top code decodes finite next to the
// stored min mn: v itself when it does. decodes_finite is monotone in the scale (top * scale + mn grows with it, and
// scale 0 decodes to mn), so a binary search over the bit patterns of t's non-negative values returns what stepping
// down one value of t at a time would, in at most 32 steps instead of up to 2^30 (an fp32 scale near
// FLT_MAX / top beside a min saturated at FLT_MAX: minutes on a CPU core, the same on a GPU thread). A min that is
// not finite (a group holding both -inf and +inf) decodes finite with no scale: 0 is returned, where the stepping
// never ended.
VIDKV_HOST_DEVICE inline float largest_finite_scale(float v, float mn, float top, DType t) {
  if (decodes_finite(v, mn, top)) return v;
  const auto value = [t](std::uint32_t p) {
    return t == DType::f16 ? half_bits_to_float(static_cast<std::uint16_t>(p))
                           : t == DType::bf16 ? bf16_bits_to_float(static_cast<std::uint16_t>(p)) : bits_float(p);
  };
  std::uint32_t good = 0;  // value 0 (decodes to mn), taken as the answer when nothing above it decodes finite
  std::uint32_t bad = t == DType::f16 ? float_to_half_bits(v) : t == DType::bf16 ? float_to_bf16_bits(v) : float_bits(v);
  while (bad - good > 1) {
    const std::uint32_t mid = good + (bad - good) / 2;
    if (decodes_finite(value(mid), mn, top))
      good = mid;
    else
      bad = mid;
  }
  return value(good);
}

// stored_group for a group whose range does not fit the scale dtype (see there). In double:
//   S = (mx - mn) / top, capped at smax = min(max finite of t, FLT_MAX / top) (the top code must decode finite);
//   when capped, the 2^b levels are centred on the mid-range (lo = (mn + mx) / 2 - top * S / 2: the least largest
//   error), else lo = mn; the min is lo clamped to the finite range of t and rounded; the scale is then
//   (mx - min) / top (the top level reaches mx where it can), capped at smax, rounded, and stepped down while the
//   top code would decode to inf in fp32 (largest_finite_scale).
VIDKV_HOST_DEVICE inline StoredGroup saturated_group(float mn, float mx, float top, DType t) {
  const double big = dtype_max_finite(t);
  const double smax = big < 0x1.fffffep127 / top ? big : 0x1.fffffep127 / top;
  double s = (static_cast<double>(mx) - static_cast<double>(mn)) / top;
  double lo = mn;
  if (s > smax) {
    s = smax;
    lo = 0.5 * (static_cast<double>(mn) + static_cast<double>(mx)) - 0.5 * top * s;
  }
  lo = lo < -big ? -big : (lo > big ? big : lo);
  StoredGroup r{0.0f, round_to_dtype(static_cast<float>(lo), t)};
  s = (static_cast<double>(mx) - static_cast<double>(r.mn)) / top;
  s = s < 0.0 ? 0.0 : (s > smax ? smax : s);
  r.scale = round_to_dtype(static_cast<float>(s), t);
  r.scale = largest_finite_scale(r.scale, r.mn, top, t);
  return r;
}

// The stored scale and min of a group with minimum mn and maximum mx (finite fp32), top = 2^b - 1 codes, metadata
// in dtype t (the one definition every implementation tier calls):
//   scale = round_t((mx - mn) / top), min = round_t(mn), computed in fp32, whenever the top code decodes finite
//   (every group whose min and scale fit t: these bytes never change);
//   otherwise saturated_group: the min and scale saturate to t's finite range, so that decode stays finite and as
//   close to the group's values as t can hold (fp16, 1 bit, values +-60000: levels -32768 and +32736; a group of
//   [-1, 4] holding one -125000: min -65504, the -125000 decodes to -65504). scale_dtype fp32 represents such data.
VIDKV_HOST_DEVICE inline StoredGroup stored_group(float mn, float mx, float top, DType t) {
  const StoredGroup fit{round_to_dtype((mx - mn) / top, t), round_to_dtype(mn, t)};
  if (decodes_finite(fit.scale, fit.mn, top)) return fit;
  return saturated_group(mn, mx, top, t);
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

}  // namespace vidkv::uniform_format
