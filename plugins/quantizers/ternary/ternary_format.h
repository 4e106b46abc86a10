// The packed format of the `ternary` quantizer (VidKV 1.58-bit values, algorithms.md 2.3): the one definition
// shared by the CPU reference (ternary.cpp) and future CUDA kernels. See ternary.h for the full description.
//
// Sections, back to back (grid and canonical orders from group_format.h):
//   codes  base3:   trit_bytes(elements), 5 trits per byte in canonical stream order (core/bit_packing.h trits)
//          slots2:  dense 2-bit stream of t + 1
//          release: per row uint32 words of 16 2-bit slots holding t + 1 (core/bit_packing.h release_*)
//          fragment: slots2's bytes with every slot moved to where decode attention's values operand wants it
//                   (group_format.h's fragment layout in form kFragmentForm: values, 2 bits, on either axis;
//                   channels a multiple of 64)
//   scales one scale_dtype per group when reconstruction is scaled, or always with packing release (packing fragment
//          with a whole 32-token tile on the channel axis: group-major, group_format::group_major_meta)
//   mins   packing release only: one scale_dtype constant per group (kReleaseMin), never read
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/bit_packing.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv::ternary_format {

using group_format::GroupGrid;

constexpr int kFormatVersion = 1;
constexpr unsigned kSlotBits = 2;
// The constant min written beside each scale in packing release (slot + min = t); decode never reads it.
constexpr float kReleaseMin = -1.0f;

enum class Packing : std::uint8_t { base3, slots2, release, fragment };
enum class Reconstruction : std::uint8_t { magnitude_free, scaled };

// Packing fragment's form: the values' A operand (out = A p, A = slots [16 channels x 16 tokens]) whatever the
// grouped axis (VidKV's values are per-channel), 2-bit slots.
constexpr group_format::FragmentForm kFragmentForm{group_format::FragmentOperand::values, kSlotBits};

// The code layout of group_format that a slot packing's codes are in (base3 has none).
VIDKV_HOST_DEVICE constexpr group_format::CodeLayout slot_layout(Packing p) {
  return p == Packing::release    ? group_format::CodeLayout::release
         : p == Packing::fragment ? group_format::CodeLayout::fragment
                                  : group_format::CodeLayout::dense;
}

VIDKV_HOST_DEVICE constexpr std::size_t codes_bytes(Packing p, const GroupGrid& g) {
  return p == Packing::base3 ? bits::trit_bytes(static_cast<std::size_t>(g.elements()))
                             : group_format::code_bytes(slot_layout(p), g, kSlotBits);
}
// Whether packing fragment can hold a grid: channels a multiple of 64 (group_format::fragment_ok).
VIDKV_HOST_DEVICE constexpr bool packing_ok(Packing p, const GroupGrid& g) {
  return p != Packing::fragment || group_format::fragment_ok(g, kSlotBits);
}
// Index of the scale of group gi of row r of head h: canonical, or group-major in packing fragment
// (group_format::meta_index of layout fragment).
VIDKV_HOST_DEVICE constexpr std::int64_t scale_index(Packing p, const GroupGrid& g, std::int64_t h, std::int64_t r,
                                                     std::int64_t gi) {
  return group_format::meta_index(slot_layout(p), g, h, r, gi);
}
VIDKV_HOST_DEVICE constexpr bool has_scales(Packing p, Reconstruction r) {
  return p == Packing::release || r == Reconstruction::scaled;
}
VIDKV_HOST_DEVICE constexpr std::size_t scales_bytes(Packing p, Reconstruction r, const GroupGrid& g, DType scale_dtype) {
  return has_scales(p, r) ? static_cast<std::size_t>(g.group_count() * dtype_size(scale_dtype)) : 0;
}
VIDKV_HOST_DEVICE constexpr std::size_t mins_bytes(Packing p, const GroupGrid& g, DType scale_dtype) {
  return p == Packing::release ? static_cast<std::size_t>(g.group_count() * dtype_size(scale_dtype)) : 0;
}
VIDKV_HOST_DEVICE constexpr std::size_t total_bytes(Packing p, Reconstruction r, const GroupGrid& g, DType scale_dtype) {
  return codes_bytes(p, g) + scales_bytes(p, r, g, scale_dtype) + mins_bytes(p, g, scale_dtype);
}
// The sections of the bytes at `out` (the order above; a section not stored has no bytes).
template <class Byte>
VIDKV_HOST_DEVICE constexpr group_format::Sections<Byte> sections(Packing p, Reconstruction r, const GroupGrid& g,
                                                                  DType scale_dtype, Byte* out) {
  return {out, out + codes_bytes(p, g), out + codes_bytes(p, g) + scales_bytes(p, r, g, scale_dtype)};
}

// [4 x 1024 x 128], G = 32, fp16, magnitude_free: base3 1.6, slots2 and fragment 2.0, release 3.0 bits per element.
static_assert(total_bytes(Packing::base3, Reconstruction::magnitude_free,
                          group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32), DType::f16) ==
                  (4 * 1024 * 128 + 4) / 5, "base3 is 1.6 bits (one byte per 5 trits, last byte partial)");
static_assert(total_bytes(Packing::release, Reconstruction::magnitude_free,
                          group_format::make_group_grid(group_format::GroupAxis::channel, 4, 1024, 128, 32), DType::f16) * 8 ==
                  3 * (4 * 1024 * 128), "release is 3.0 bits");

// The five base3 digits of a code byte as 2-bit slots t + 1: digit i at bits [2 i, 2 i + 2), i = 0..4, for any byte
// value (the digits bits::trit_get reads: byte % 3, then byte / 3 and so on). The CUDA kernels keep a table of the
// kByteSlotEntries entries in shared memory (one read per byte instead of a division per trit); the tests build it
// on the host.
constexpr int kByteSlotEntries = 256;
VIDKV_HOST_DEVICE inline std::uint16_t base3_byte_slots(unsigned byte) {
  std::uint16_t s = 0;
  for (unsigned i = 0; i < 5; ++i, byte /= 3u) s = static_cast<std::uint16_t>(s | ((byte % 3u) << (2 * i)));
  return s;
}

// t in {-1, 0, +1} from x and the dead zone a = gamma * mean |x| (compared in double).
VIDKV_HOST_DEVICE inline int ternarize(double x, double dead_zone) { return x > dead_zone ? 1 : (x < -dead_zone ? -1 : 0); }

// Writes/reads trit t of the canonical stream index i in the codes section of `packing` (section starts zeroed).
// base3 digit i % 5 of byte i / 5 has weight 3^(i % 5), the same bytes as core/bit_packing.h trit_pack5.
VIDKV_HOST_DEVICE inline void put_trit(Packing p, std::uint8_t* codes, const GroupGrid& g, std::int64_t h, std::int64_t r,
                                       std::int64_t j, int t) {
  if (p == Packing::base3) {
    const std::int64_t i = g.stream_index(h, r, j);
    unsigned weight = 1;
    for (std::int64_t k = 0; k < i % 5; ++k) weight *= 3u;
    codes[i / 5] = static_cast<std::uint8_t>(codes[i / 5] + static_cast<unsigned>(t + 1) * weight);
    return;
  }
  if (p == Packing::fragment) {
    bits::dense_put(codes, static_cast<std::size_t>(group_format::fragment_index(g, kFragmentForm, h, r, j)), kSlotBits,
                    static_cast<unsigned>(t + 1));
    return;
  }
  group_format::put_code(slot_layout(p), codes, g, kSlotBits, h, r, j, static_cast<unsigned>(t + 1));
}
VIDKV_HOST_DEVICE inline int get_trit(Packing p, const std::uint8_t* codes, const GroupGrid& g, std::int64_t h,
                                      std::int64_t r, std::int64_t j) {
  if (p == Packing::base3) {
    const std::int64_t i = g.stream_index(h, r, j);
    return bits::trit_get(codes[i / 5], static_cast<unsigned>(i % 5));
  }
  if (p == Packing::fragment)
    return static_cast<int>(bits::dense_get(codes, static_cast<std::size_t>(group_format::fragment_index(g, kFragmentForm, h, r, j)),
                                            kSlotBits)) - 1;
  return static_cast<int>(group_format::get_code(slot_layout(p), codes, g, kSlotBits, h, r, j)) - 1;
}

}  // namespace vidkv::ternary_format
