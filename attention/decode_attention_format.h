// Fused decode attention (decode_attention.h): how one element of a packed key or value block is read in place, and
// how a query is carried into a key block's own coordinates (gathered channels, FFT frequency domain). Host-device,
// C++17, no containers: the CUDA kernels (decode_attention.cu) and the CPU emulation of the kernel
// (decode_attention_emulation.cpp, tested against the reference) call these same functions.
//
// A side (K or V) of a layer cache is one codec quantizer. Formats read here (the plugins' own format headers
// define the bytes; this file only addresses them):
//   uniform   any bits 1..8, either axis, dense or release codes, fp16/fp32 scale and min (uniform_format.h)
//   sign      fft off or real, either axis, dense or release, zero_one or symmetric (sign_format.h, sign_fft.h)
//   ternary   base3 / slots2 / release, magnitude_free or scaled (ternary_format.h)
//   mixed_channel with any two of the above as children, scope layer or head (mixed_channel_format.h)
// Not read: sign fft complex, mixed_token, identity (decode_attention.cpp refuses them by name).
//
// Addressing of a block [heads, tokens, channels] (channels = D): a plain side is one "part" over all D channels in
// channel order. A mixed_channel side has masks = 1 (scope layer) or heads (scope head); KV head h reads mask
// p = (per head ? h : 0), and part p's children hold [part_heads, tokens, k] high channels and
// [part_heads, tokens, D - k] low channels in ascending channel order (head index h or 0 inside the part).
// Part channel index: high channel of rank i -> i, low channel of rank i -> k + i ("gathered order").
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"
#include "vidkv/plugins/quantizers/group_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"

#include <cmath>

namespace vidkv::attention_format {

using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;

enum class ChildCodec : std::uint8_t { uniform, sign, ternary };

// The format of one primitive quantizer (a plain side, or a child of mixed_channel).
struct ChildFormat {
  ChildCodec codec = ChildCodec::uniform;
  GroupAxis axis = GroupAxis::channel;
  CodeLayout layout = CodeLayout::dense;                                 // uniform, sign
  ternary_format::Packing packing = ternary_format::Packing::base3;      // ternary
  unsigned bits = 2;                                                     // uniform
  std::int64_t group = 32;
  DType scale_dtype = DType::f16;
  bool symmetric = false;  // sign: reconstruction symmetric (bit 0 -> -s) instead of zero_one
  bool scaled = false;     // ternary: reconstruction scaled (t * u) instead of magnitude_free
  bool fft_real = false;   // sign: the values are the real-FFT components of each token's channels
};

struct SideFormat {
  bool mixed = false;          // mixed_channel
  bool mask_per_head = false;  // mixed_channel scope head
  std::int64_t high = 0;       // mixed: k high channels per mask (0 < k < D); plain: unused
  ChildFormat first;           // plain: the side's quantizer; mixed: the high child
  ChildFormat second;          // mixed: the low child
};

// The grid of a child over [heads, tokens, n] (n channels, or n real-FFT components: the same count).
VIDKV_HOST_DEVICE inline GroupGrid child_grid(const ChildFormat& f, std::int64_t heads, std::int64_t tokens, std::int64_t n) {
  return group_format::make_group_grid(f.axis, heads, tokens, n, f.group);
}

// Bytes a child writes for [heads, tokens, n].
VIDKV_HOST_DEVICE inline std::size_t child_bytes(const ChildFormat& f, std::int64_t heads, std::int64_t tokens, std::int64_t n) {
  const GroupGrid g = child_grid(f, heads, tokens, n);
  switch (f.codec) {
    case ChildCodec::uniform: return uniform_format::total_bytes(f.layout, g, f.bits, f.scale_dtype);
    case ChildCodec::sign: return sign_format::total_bytes(f.layout, g, f.scale_dtype);
    default:
      return ternary_format::total_bytes(f.packing, f.scaled ? ternary_format::Reconstruction::scaled
                                                             : ternary_format::Reconstruction::magnitude_free,
                                         g, f.scale_dtype);
  }
}

// Element (token t, channel or component i) of head h of a child's bytes over [heads, tokens, n], as the child's
// decode writes it (the same fp32 operations: uniform q * scale + mn, sign s / 0 / -s, ternary t or t * u), except
// that a sign fft_real child yields the stored component, not the channel (see transform_entry).
VIDKV_HOST_DEVICE inline float child_element(const ChildFormat& f, const std::uint8_t* bytes, std::int64_t heads,
                                             std::int64_t tokens, std::int64_t n, std::int64_t h, std::int64_t t,
                                             std::int64_t i) {
  const GroupGrid g = child_grid(f, heads, tokens, n);
  const std::int64_t r = f.axis == GroupAxis::channel ? i : t;
  const std::int64_t j = f.axis == GroupAxis::channel ? t : i;
  const std::int64_t gi = g.group_index(h, r, j / f.group);
  if (f.codec == ChildCodec::uniform) {
    const std::uint8_t* scales = bytes + uniform_format::codes_bytes(f.layout, g, f.bits);
    const std::uint8_t* mins = scales + uniform_format::scales_bytes(g, f.scale_dtype);
    const unsigned code = group_format::get_code(f.layout, bytes, g, f.bits, h, r, j);
    return uniform_format::decode_value(code, group_format::get_scalar(scales, gi, f.scale_dtype),
                                        group_format::get_scalar(mins, gi, f.scale_dtype));
  }
  if (f.codec == ChildCodec::sign) {
    const std::uint8_t* scales = bytes + sign_format::codes_bytes(f.layout, g);
    const unsigned bit = group_format::get_code(f.layout, bytes, g, 1, h, r, j);
    return sign_format::decode_value(bit, group_format::get_scalar(scales, gi, f.scale_dtype),
                                     f.symmetric ? sign_format::Reconstruction::symmetric : sign_format::Reconstruction::zero_one);
  }
  const int trit = ternary_format::get_trit(f.packing, bytes, g, h, r, j);
  if (!f.scaled) return static_cast<float>(trit);
  const std::uint8_t* scales = bytes + ternary_format::codes_bytes(f.packing, g);
  return static_cast<float>(trit) * group_format::get_scalar(scales, gi, f.scale_dtype);
}

// Where KV head h of a block [heads, tokens, D] of a side lives: the (one or two) children's bytes, their head count
// and the head index inside them, and the mask (mixed only).
struct PartRef {
  const std::uint8_t* mask = nullptr;  // mixed: the channel-mask section
  std::int64_t mask_index = 0;         // mixed: mask of this head
  const std::uint8_t* first = nullptr;
  const std::uint8_t* second = nullptr;
  std::int64_t part_heads = 1, head = 0;
  std::int64_t first_n = 0, second_n = 0;  // channels (components) of each child
};

VIDKV_HOST_DEVICE inline PartRef part_of(const SideFormat& f, const std::uint8_t* bytes, std::int64_t heads,
                                         std::int64_t tokens, std::int64_t channels, std::int64_t h) {
  PartRef p;
  if (!f.mixed) {
    p.first = bytes;
    p.part_heads = heads;
    p.head = h;
    p.first_n = channels;
    return p;
  }
  const std::int64_t masks = f.mask_per_head ? heads : 1;
  p.mask = bytes;
  p.mask_index = f.mask_per_head ? h : 0;
  p.part_heads = f.mask_per_head ? 1 : heads;
  p.head = f.mask_per_head ? 0 : h;
  p.first_n = f.high;
  p.second_n = channels - f.high;
  const std::size_t hb = child_bytes(f.first, p.part_heads, tokens, p.first_n);
  const std::size_t lb = child_bytes(f.second, p.part_heads, tokens, p.second_n);
  p.first = bytes + mixed_channel_format::mask_bytes(static_cast<std::size_t>(masks), static_cast<std::size_t>(channels)) +
            static_cast<std::size_t>(p.mask_index) * (hb + lb);
  p.second = p.first + hb;
  return p;
}

// Gathered-order index of channel c (see the top): c itself on a plain side.
VIDKV_HOST_DEVICE inline std::int64_t gathered_index(const SideFormat& f, const PartRef& p, std::int64_t channels, std::int64_t c) {
  if (!f.mixed) return c;
  const std::int32_t s = mixed_channel_format::channel_slot(p.mask, static_cast<std::size_t>(channels),
                                                            static_cast<std::size_t>(p.mask_index), static_cast<std::size_t>(c));
  return s >= 0 ? s : f.high + (-1 - s);
}

// Element (t, channel c) of KV head h as the side's decode writes it. Not for fft_real children (a channel there is
// a mix of all components): keys with the FFT go through transform_entry and part_element instead.
VIDKV_HOST_DEVICE inline float side_element(const SideFormat& f, const PartRef& p, std::int64_t tokens, std::int64_t channels,
                                            std::int64_t t, std::int64_t c) {
  const std::int64_t i = gathered_index(f, p, channels, c);
  if (i < p.first_n) return child_element(f.first, p.first, p.part_heads, tokens, p.first_n, p.head, t, i);
  return child_element(f.second, p.second, p.part_heads, tokens, p.second_n, p.head, t, i - p.first_n);
}

// Element i (gathered order; a component for fft_real children) of token t of KV head h.
VIDKV_HOST_DEVICE inline float part_element(const SideFormat& f, const PartRef& p, std::int64_t tokens, std::int64_t t,
                                            std::int64_t i) {
  if (i < p.first_n) return child_element(f.first, p.first, p.part_heads, tokens, p.first_n, p.head, t, i);
  return child_element(f.second, p.second, p.part_heads, tokens, p.second_n, p.head, t, i - p.first_n);
}

// d x_c / d y_j of the real-FFT inverse of sign_fft.h (C2R of the n/2 + 1 bins, divided by n; layout
// [Re Y0, Re Y1, Im Y1, ..., Re Ym, Im Ym, (Re Y(n/2), n even)], m = ceil(n/2) - 1):
//   x_c = (Y0 + [n even] (-1)^c Re Y(n/2) + 2 sum_{k=1..m} (Re Yk cos(2 pi k c / n) - Im Yk sin(2 pi k c / n))) / n.
// The angle is reduced exactly (k c mod n) before the cos / sin (fp32 cospi / sinpi on the device, double on the
// host): |B - B~| <= 2 u / n.
VIDKV_HOST_DEVICE inline float fft_real_inverse_weight(std::int64_t n, std::int64_t j, std::int64_t c) {
  const float inv_n = 1.0f / static_cast<float>(n);
  if (j == 0) return inv_n;
  if (n % 2 == 0 && j == n - 1) return (c % 2 == 0) ? inv_n : -inv_n;
  const std::int64_t k = (j + 1) / 2;
  const std::int64_t kc = (k * c) % n;
#if defined(__CUDA_ARCH__)
  const float x = 2.0f * static_cast<float>(kc) / static_cast<float>(n);  // exact for n <= 2^23 / 2
  const float w = (j % 2 == 1) ? cospif(x) : -sinpif(x);
#else
  const double a = 6.283185307179586476925 * static_cast<double>(kc) / static_cast<double>(n);
  const float w = static_cast<float>((j % 2 == 1) ? std::cos(a) : -std::sin(a));
#endif
  return 2.0f * w * inv_n;
}

// Entry i (gathered order) of the query carried into a block's coordinates, from `gathered` (the query's channels
// in gathered order: gathered[gathered_index(c)] = q[c]): the query itself for children without FFT, and for a
// fft_real child the adjoint of its inverse transform, w_j = sum_c q_c d x_c / d y_j, so that
// sum_c q_c x_c = sum_j w_j y_j for the decoded channels x of stored components y (the inverse FFT is linear: one
// transform of the query per block and head instead of one inverse FFT per token).
VIDKV_HOST_DEVICE inline float transform_entry(const SideFormat& f, std::int64_t first_n, std::int64_t second_n,
                                               const float* gathered, std::int64_t i) {
  const bool in_first = i < first_n;
  const ChildFormat& child = in_first ? f.first : f.second;
  if (!(child.codec == ChildCodec::sign && child.fft_real)) return gathered[i];
  const std::int64_t base = in_first ? 0 : first_n, n = in_first ? first_n : second_n, j = i - base;
  float w = 0.0f;
  for (std::int64_t c = 0; c < n; ++c) w += gathered[base + c] * fft_real_inverse_weight(n, j, c);
  return w;
}

// Whether a side needs the query transform (mask gather or FFT) per block.
VIDKV_HOST_DEVICE inline bool needs_transform(const SideFormat& f) {
  return f.mixed || (f.first.codec == ChildCodec::sign && f.first.fft_real);
}

// A full-precision residual token's element, as materialize() gives it: the exact fp32 input rounded to the
// residual storage dtype. full: [heads, capacity, channels].
VIDKV_HOST_DEVICE inline float residual_element(const float* full, std::int64_t capacity, std::int64_t channels, DType dtype,
                                                std::int64_t h, std::int64_t t, std::int64_t c) {
  return round_to_dtype(full[(h * capacity + t) * channels + c], dtype);
}

// --- Online softmax (flash-decoding) state ------------------------------------------------------------------------
// Scores are kept in log2 units (s * log2(e) / sqrt(D)), so p = exp2(s - m). A partial result over a set of tokens
// is (m, l, acc): m = max score (-inf when empty), l = sum_t exp2(s_t - m), acc_c = sum_t exp2(s_t - m) v_tc.
// merge() of two partials rescales both to the larger max; the output is acc / l.
struct Partial {
  float m, l;
};

VIDKV_HOST_DEVICE inline float merge_factor(float m_part, float m_total) {
  // exp2(-inf - finite) = 0; both -inf (two empty partials): factor 0, the result stays empty.
  return m_part == -HUGE_VALF ? 0.0f : exp2f(m_part - m_total);
}

}  // namespace vidkv::attention_format
