// Fused decode attention (decode_attention.h): how one element of a packed key or value block is read in place, and
// how a query is carried into a key block's own coordinates (gathered channels, FFT frequency domain). Host-device,
// C++17, no containers: the CUDA kernels (decode_attention.cu) and the CPU emulation of the kernel
// (decode_attention_emulation.cpp, tested against the reference) call these same functions.
//
// A side (K or V) of a layer cache is one codec quantizer. Formats read here (the plugins' own format headers
// define the bytes; this file only addresses them):
//   uniform   any bits 1..8, either axis, dense or release codes, fp16/fp32 scale and min (uniform_format.h)
//   sign      fft off, real or complex (keys only with an FFT), either axis, dense or release, zero_one or
//             symmetric (sign_format.h, sign_fft.h)
//   ternary   base3 / slots2 / release, magnitude_free or scaled (ternary_format.h)
//   identity  fp16 / bf16 / fp32 values (identity_format.h): the fp16 baseline through the same kernels
//   mixed_channel with any two of the above as children, scope layer or head (mixed_channel_format.h)
//   mixed_token   values only, with any two of the first four as children (mixed_token_format.h; see below)
// Anything else is refused by name (decode_attention.cpp).
//
// Addressing of a block [heads, tokens, channels] (channels = D): a plain side is one "part" over all D channels in
// channel order. A mixed_channel side has masks = 1 (scope layer) or heads (scope head); KV head h reads mask
// p = (per head ? h : 0), and part p's children hold [part_heads, tokens, k] high channels and
// [part_heads, tokens, D - k] low channels in ascending channel order (head index h or 0 inside the part).
// Part channel index: high channel of rank i -> i, low channel of rank i -> k + i ("gathered order").
// Part index (what the key loops run over): the children's stored components back to back, first_n of the first
// child then second_n of the second. A child without FFT or with fft: real stores one component per channel; a
// sign child with fft: complex stores 2n for its n channels (sign_fft.h), so a key part can be wider than D
// (key_width(): at most 2 D).
//
// mixed_token (values): the block's token mask (mixed_token_format.h, one for all heads), then the protected child
// over [heads, kept, D] and the rest child over [heads, tokens - kept, D], tokens in ascending position. `kept`,
// the number of protected tokens, comes with the block from the host (the quantizer's budget for the block, which
// equals the mask's popcount); token t of the block is row r(t) of the protected child when its mask bit is set,
// else row t - r(t) of the rest child, r(t) = mask_count(mask, 0, t), the protected tokens before t (token_row).
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"
#include "vidkv/plugins/quantizers/identity/identity_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_format.h"
#include "vidkv/plugins/quantizers/sign/sign_format.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/group_format.h"

#include <cmath>

namespace vidkv::attention_format {

using group_format::CodeLayout;
using group_format::GroupAxis;
using group_format::GroupGrid;

enum class ChildCodec : std::uint8_t { uniform, sign, ternary, identity };

// The format of one primitive quantizer (a plain side, or a child of mixed_channel).
struct ChildFormat {
  ChildCodec codec = ChildCodec::uniform;
  GroupAxis axis = GroupAxis::channel;
  CodeLayout layout = CodeLayout::dense;                                 // uniform, sign
  ternary_format::Packing packing = ternary_format::Packing::base3;      // ternary
  unsigned bits = 2;                                                     // uniform
  std::int64_t group = 32;
  DType scale_dtype = DType::f16;  // identity: the dtype every value is stored in
  bool symmetric = false;  // sign: reconstruction symmetric (bit 0 -> -s) instead of zero_one
  bool scaled = false;     // ternary: reconstruction scaled (t * u) instead of magnitude_free
  bool fft_real = false;   // sign: the values are the real-FFT components of each token's channels
  bool fft_complex = false;  // sign: the values are the complex-FFT components (2 per channel) of each token
};

// Stored components of a child over n channels: 2n for sign fft: complex (sign_fft.h fft_components), else n.
VIDKV_HOST_DEVICE inline std::int64_t child_components(const ChildFormat& f, std::int64_t n) { return f.fft_complex ? 2 * n : n; }

// Whether a child's stored components are an FFT of its channels (the key loops then take the query transform).
VIDKV_HOST_DEVICE inline bool child_fft(const ChildFormat& f) { return f.codec == ChildCodec::sign && (f.fft_real || f.fft_complex); }

struct SideFormat {
  bool mixed = false;          // mixed_channel
  bool mask_per_head = false;  // mixed_channel scope head
  bool token_mixed = false;    // mixed_token (values only): first = protected child, second = rest child
  std::int64_t high = 0;       // mixed: k high channels per mask (0 < k < D); plain: unused
  ChildFormat first;           // plain: the side's quantizer; mixed: the high child; token_mixed: protected
  ChildFormat second;          // mixed: the low child; token_mixed: the rest
};

// The code layout a child's codes are in: uniform's and sign's layout, ternary's by its packing (base3 has no
// group_format layout: dense is returned, and its code_bits are 0).
VIDKV_HOST_DEVICE inline CodeLayout child_layout(const ChildFormat& f) {
  return f.codec == ChildCodec::ternary ? ternary_format::slot_layout(f.packing) : f.layout;
}
// The fragment form of a child in layout fragment: ternary's values orientation (ternary_format::kFragmentForm), else
// the operand by the grouped axis (group_format::fragment_form) with the child's code width.
VIDKV_HOST_DEVICE inline group_format::FragmentForm child_fragment_form(const ChildFormat& f, const GroupGrid& g) {
  return f.codec == ChildCodec::ternary ? ternary_format::kFragmentForm
                                        : group_format::fragment_form(g, f.codec == ChildCodec::sign ? 1u : f.bits);
}

// The grid of a child over [heads, tokens, n channels]: over its stored components (child_components).
VIDKV_HOST_DEVICE inline GroupGrid child_grid(const ChildFormat& f, std::int64_t heads, std::int64_t tokens, std::int64_t n) {
  return group_format::make_group_grid(f.axis, heads, tokens, child_components(f, n), f.group);
}

// Bytes a child writes for [heads, tokens, n channels] (0 for no tokens: mixed_token leaves an empty child out).
VIDKV_HOST_DEVICE inline std::size_t child_bytes(const ChildFormat& f, std::int64_t heads, std::int64_t tokens, std::int64_t n) {
  if (tokens == 0) return 0;
  const GroupGrid g = child_grid(f, heads, tokens, n);
  switch (f.codec) {
    case ChildCodec::uniform: return uniform_format::total_bytes(f.layout, g, f.bits, f.scale_dtype);
    case ChildCodec::sign: return sign_format::total_bytes(f.layout, g, f.scale_dtype);
    case ChildCodec::identity: return identity_format::values_bytes(heads * tokens * n, f.scale_dtype);
    default:
      return ternary_format::total_bytes(f.packing, f.scaled ? ternary_format::Reconstruction::scaled
                                                             : ternary_format::Reconstruction::magnitude_free,
                                         g, f.scale_dtype);
  }
}

// One child's bytes over [heads, tokens, n channels] (its stored components: child_components) as seen by one KV head: section
// pointers and grid constants computed once per block and head (per tile in the kernels), so that an element read
// is a few integer operations, the code's byte loads and the decode.
struct ChildView {
  ChildFormat f;
  const std::uint8_t* codes = nullptr;
  const std::uint8_t* scales = nullptr;
  const std::uint8_t* mins = nullptr;
  std::int64_t rows = 0, length = 0, groups_per_row = 0, head = 0, row_words = 0;
  int group_shift = -1;  // log2(group) when the group is a power of two, else -1
  unsigned code_bits = 0;  // bits of a stored code: uniform b, sign 1, ternary slots 2 (base3: 0)
  bool group_major = false;  // metadata stored (head, group, row): group_format::group_major_meta (layout fragment keys)
  group_format::FragmentForm form{group_format::FragmentOperand::keys, 2};  // layout fragment: child_fragment_form
};

VIDKV_HOST_DEVICE inline ChildView child_view(const ChildFormat& f, const std::uint8_t* bytes, std::int64_t heads,
                                              std::int64_t tokens, std::int64_t n, std::int64_t head) {
  ChildView v;
  v.f = f;
  const GroupGrid g = child_grid(f, heads, tokens, n);
  v.rows = g.rows;
  v.length = g.length;
  v.groups_per_row = g.groups_per_row();
  v.head = head;
  v.code_bits = f.codec == ChildCodec::uniform ? f.bits
                : f.codec == ChildCodec::sign ? 1u
                : (f.packing == ternary_format::Packing::base3 ? 0u : ternary_format::kSlotBits);
  const CodeLayout layout = child_layout(f);
  v.f.layout = layout;
  v.group_major = group_format::group_major_meta(layout, g);
  v.form = child_fragment_form(f, g);
  v.row_words = v.code_bits > 0 && group_format::release_bits_ok(v.code_bits) ? group_format::release_row_words(g, v.code_bits) : 0;
  for (int s = 0; s < 31; ++s)
    if ((std::int64_t{1} << s) == f.group) v.group_shift = s;
  v.codes = bytes;
  if (f.codec == ChildCodec::uniform) {
    v.scales = bytes + uniform_format::codes_bytes(f.layout, g, f.bits);
    v.mins = v.scales + uniform_format::scales_bytes(g, f.scale_dtype);
  } else if (f.codec == ChildCodec::sign) {
    v.scales = bytes + sign_format::codes_bytes(f.layout, g);
  } else if (f.codec == ChildCodec::identity) {
    v.code_bits = 8u * static_cast<unsigned>(dtype_size(f.scale_dtype));  // the values themselves, block order
  } else {
    v.scales = bytes + ternary_format::codes_bytes(f.packing, g);
  }
  return v;
}

// The metadata of one group of a child: scale and min (uniform), scale (sign, ternary scaled); unused otherwise.
struct Meta {
  float scale = 1.0f, mn = 0.0f;
};

// Whether a child's elements need their group's metadata (ternary magnitude_free stores none that decode reads).
VIDKV_HOST_DEVICE inline bool has_meta(const ChildFormat& f) { return f.codec != ChildCodec::ternary || f.scaled; }

// Metadata index of element (token t of the block, channel or component i): (head, row, group), or (head, group,
// row) where the child stores its metadata group-major (group_format::meta_index).
VIDKV_HOST_DEVICE inline std::int64_t view_group(const ChildView& v, std::int64_t t, std::int64_t i) {
  const bool channel_axis = v.f.axis == GroupAxis::channel;
  const std::int64_t r = channel_axis ? i : t, j = channel_axis ? t : i;
  const std::int64_t gi = v.group_shift >= 0 ? (j >> v.group_shift) : j / v.f.group;
  return v.group_major ? group_format::group_major_index(v.head, gi, r, v.rows, v.groups_per_row)
                       : (v.head * v.rows + r) * v.groups_per_row + gi;
}

VIDKV_HOST_DEVICE inline Meta view_meta(const ChildView& v, std::int64_t gi) {
  Meta m;
  if (!has_meta(v.f)) return m;
  m.scale = group_format::get_scalar(v.scales, gi, v.f.scale_dtype);
  if (v.f.codec == ChildCodec::uniform) m.mn = group_format::get_scalar(v.mins, gi, v.f.scale_dtype);
  return m;
}

// The stored code of element (t, i): uniform q, sign bit, ternary t + 1. The same codes as group_format::get_code
// and ternary_format::get_trit.
VIDKV_HOST_DEVICE inline unsigned view_code(const ChildView& v, std::int64_t t, std::int64_t i) {
  const bool channel_axis = v.f.axis == GroupAxis::channel;
  const std::int64_t row = v.head * v.rows + (channel_axis ? i : t);
  const std::int64_t j = channel_axis ? t : i;
  if (v.code_bits == 0) {  // ternary base3: digit idx % 5 of byte idx / 5 (divisions by constants: multiply-shifts)
    const std::int64_t idx = row * v.length + j;
    return static_cast<unsigned>(bits::trit_get(v.codes[idx / 5], static_cast<unsigned>(idx % 5)) + 1);
  }
  if (v.f.layout == CodeLayout::dense) return bits::dense_get(v.codes, static_cast<std::size_t>(row * v.length + j), v.code_bits);
  if (v.f.layout == CodeLayout::fragment) {  // group_format.h's fragment layout in the child's form
    const std::int64_t tokens = channel_axis ? v.length : v.rows, channels = channel_axis ? v.rows : v.length;
    const std::int64_t k = group_format::fragment_code_index(v.f.axis, v.form, tokens, channels, v.head, t, i);
    return bits::dense_get(v.codes, static_cast<std::size_t>(k), v.code_bits);
  }
  const unsigned per_word = 32u / v.code_bits;
  const std::uint32_t word = group_format::get_word(v.codes, row * v.row_words + j / per_word);
  return (word >> (v.code_bits * static_cast<unsigned>(j % per_word))) & ((1u << v.code_bits) - 1u);
}

// The decoded value of a code given its group's metadata: the decode's fp32 operations (uniform q * scale + mn,
// sign s / 0 / -s, ternary t or t * u).
VIDKV_HOST_DEVICE inline float decode_code(const ChildView& v, unsigned code, const Meta& m) {
  if (v.f.codec == ChildCodec::uniform) return uniform_format::decode_value(code, m.scale, m.mn);
  if (v.f.codec == ChildCodec::sign)
    return sign_format::decode_value(code, m.scale, v.f.symmetric ? sign_format::Reconstruction::symmetric
                                                                 : sign_format::Reconstruction::zero_one);
  const float t = static_cast<float>(static_cast<int>(code) - 1);
  return v.f.scaled ? t * m.scale : t;
}

// Element (token t of the block, channel or component i) as the child's decode writes it, except that a sign
// fft_real child yields the stored component, not the channel (see transform_entry). tests/cpp/
// test_decode_attention.cpp checks every element against the plugins' decode, bit for bit.
VIDKV_HOST_DEVICE inline float view_element(const ChildView& v, std::int64_t t, std::int64_t i) {
  if (v.f.codec == ChildCodec::identity) {  // axis token: row = (head, token), the channels along it
    const std::int64_t idx = (v.head * v.rows + t) * v.length + i;
    const int size = dtype_size(v.f.scale_dtype);
    // An aligned element is one load; a section at an odd offset (inside a composite) goes byte by byte.
    if (reinterpret_cast<std::uintptr_t>(v.codes) % static_cast<std::uintptr_t>(size) == 0)
      return load_as_float(v.codes, v.f.scale_dtype, static_cast<std::size_t>(idx));
    return group_format::get_scalar(v.codes, idx, v.f.scale_dtype);
  }
  return decode_code(v, view_code(v, t, i), view_meta(v, view_group(v, t, i)));
}

// Whether the tokens [t0, t0 + n) of the block lie in one group of a channel-axis child, so that the metadata of
// element (t, i) depends on i only (the kernels then read it once per tile: staged metadata).
VIDKV_HOST_DEVICE inline bool one_group_per_row(const ChildView& v, std::int64_t t0, std::int64_t n) {
  if (v.f.axis != GroupAxis::channel || v.f.codec == ChildCodec::identity) return false;
  return view_group(v, t0, 0) == view_group(v, t0 + n - 1, 0);
}

// Where KV head h of a block [heads, tokens, D] of a side lives: the (one or two) children's bytes, their head count
// and the head index inside them, and the mask (mixed_channel: channel mask; mixed_token: token mask).
struct PartRef {
  const std::uint8_t* mask = nullptr;  // mixed: the channel-mask section; token_mixed: the token-mask section
  std::int64_t mask_index = 0;         // mixed: mask of this head
  ChildView first, second;
  std::int64_t first_n = 0, second_n = 0;  // part indices of each child: its stored components (see the top)
  std::int64_t first_channels = 0, second_channels = 0;  // channels of each child (mixed: k and D - k; else D, 0)
};

// Key width of a side: the part indices first_n + second_n of every part (D, or more with fft: complex children).
VIDKV_HOST_DEVICE inline std::int64_t key_width(const SideFormat& f, std::int64_t channels) {
  if (!f.mixed) return child_components(f.first, channels);
  return child_components(f.first, f.high) + child_components(f.second, channels - f.high);
}

// kept: token_mixed only, the block's protected tokens (BlockEntry::kept).
VIDKV_HOST_DEVICE inline PartRef part_of(const SideFormat& f, const std::uint8_t* bytes, std::int64_t heads,
                                         std::int64_t tokens, std::int64_t channels, std::int64_t h, std::int64_t kept = 0) {
  PartRef p;
  if (f.token_mixed) {
    p.mask = bytes;
    const std::uint8_t* first = bytes + mixed_token_format::mask_bytes(static_cast<std::size_t>(tokens));
    p.first = child_view(f.first, first, heads, kept, channels, h);
    p.second = child_view(f.second, first + child_bytes(f.first, heads, kept, channels), heads, tokens - kept, channels, h);
    p.first_n = p.second_n = p.first_channels = p.second_channels = channels;
    return p;
  }
  if (!f.mixed) {
    p.first = child_view(f.first, bytes, heads, tokens, channels, h);
    p.first_n = child_components(f.first, channels);
    p.first_channels = channels;
    return p;
  }
  const std::int64_t masks = f.mask_per_head ? heads : 1;
  p.mask = bytes;
  p.mask_index = f.mask_per_head ? h : 0;
  const std::int64_t part_heads = f.mask_per_head ? 1 : heads, head = f.mask_per_head ? 0 : h;
  p.first_channels = f.high;
  p.second_channels = channels - f.high;
  p.first_n = child_components(f.first, f.high);
  p.second_n = child_components(f.second, channels - f.high);
  const std::size_t hb = child_bytes(f.first, part_heads, tokens, f.high);
  const std::size_t lb = child_bytes(f.second, part_heads, tokens, channels - f.high);
  const std::uint8_t* first = bytes + mixed_channel_format::mask_bytes(static_cast<std::size_t>(masks), static_cast<std::size_t>(channels)) +
                              static_cast<std::size_t>(p.mask_index) * (hb + lb);
  p.first = child_view(f.first, first, part_heads, tokens, f.high, head);
  p.second = child_view(f.second, first + hb, part_heads, tokens, channels - f.high, head);
  return p;
}

// Gathered-order index of channel c (see the top): c itself on a plain or token_mixed side.
VIDKV_HOST_DEVICE inline std::int64_t gathered_index(const SideFormat& f, const PartRef& p, std::int64_t channels, std::int64_t c) {
  if (!f.mixed) return c;
  const std::int32_t s = mixed_channel_format::channel_slot(p.mask, static_cast<std::size_t>(channels),
                                                            static_cast<std::size_t>(p.mask_index), static_cast<std::size_t>(c));
  return s >= 0 ? s : f.high + (-1 - s);
}

// Set bits of a token mask (mixed_token_format.h) in [from, to): whole bytes by popcount, the partial ends masked.
VIDKV_HOST_DEVICE inline std::int64_t mask_count(const std::uint8_t* mask, std::int64_t from, std::int64_t to) {
  std::int64_t n = 0;
  for (std::int64_t byte = from / 8; byte * 8 < to; ++byte) {
    unsigned bitsv = mask[byte];
    const std::int64_t lo = byte * 8 < from ? from - byte * 8 : 0, hi = to - byte * 8 < 8 ? to - byte * 8 : 8;
    bitsv = (bitsv >> lo) & ((1u << (hi - lo)) - 1u);
#if defined(__CUDA_ARCH__)
    n += __popc(bitsv);
#else
    n += __builtin_popcount(bitsv);
#endif
  }
  return n;
}

// The row of block token t of a token_mixed part in its child: rank = mask_count(mask, 0, t) given. Returns the row
// and sets `in_first` (protected).
VIDKV_HOST_DEVICE inline std::int64_t token_row(const PartRef& p, std::int64_t t, std::int64_t rank, bool& in_first) {
  in_first = mixed_token_format::mask_get(p.mask, static_cast<std::size_t>(t));
  return in_first ? rank : t - rank;
}

// Element (t, channel c) of KV head h as the side's decode writes it. Not for FFT children (a channel there is a mix
// of all components): keys with the FFT go through transform_entry and part_element instead. token_mixed: rank =
// mask_count(p.mask, 0, t) (ignored otherwise; the kernels carry it per tile instead of counting per element).
VIDKV_HOST_DEVICE inline float side_element(const SideFormat& f, const PartRef& p, std::int64_t channels, std::int64_t t,
                                            std::int64_t c, std::int64_t rank = 0) {
  if (f.token_mixed) {
    bool prot = false;
    const std::int64_t row = token_row(p, t, rank, prot);
    return prot ? view_element(p.first, row, c) : view_element(p.second, row, c);
  }
  const std::int64_t i = gathered_index(f, p, channels, c);
  return i < p.first_channels ? view_element(p.first, t, i) : view_element(p.second, t, i - p.first_channels);
}

// Element i (part index: a component for FFT children) of token t of KV head h (not token_mixed).
VIDKV_HOST_DEVICE inline float part_element(const PartRef& p, std::int64_t t, std::int64_t i) {
  return i < p.first_n ? view_element(p.first, t, i) : view_element(p.second, t, i - p.first_n);
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

// d x_c / d y_j of the complex-FFT inverse of sign_fft.h (the full n-point inverse divided by n, real part; layout
// [Re Y0, Im Y0, Re Y1, Im Y1, ..., Re Y(n-1), Im Y(n-1)]): x_c = sum_k (Re Yk cos(2 pi k c / n) - Im Yk sin(2 pi k c
// / n)) / n, so component j = 2k weighs cos(2 pi k c / n) / n and j = 2k + 1 weighs -sin(2 pi k c / n) / n. The
// angle is reduced exactly as in fft_real_inverse_weight: |B - B~| <= u / n.
VIDKV_HOST_DEVICE inline float fft_complex_inverse_weight(std::int64_t n, std::int64_t j, std::int64_t c) {
  const float inv_n = 1.0f / static_cast<float>(n);
  const std::int64_t kc = ((j / 2) * c) % n;
  if (kc == 0) return j % 2 == 0 ? inv_n : 0.0f;
#if defined(__CUDA_ARCH__)
  const float x = 2.0f * static_cast<float>(kc) / static_cast<float>(n);
  const float w = (j % 2 == 0) ? cospif(x) : -sinpif(x);
#else
  const double a = 6.283185307179586476925 * static_cast<double>(kc) / static_cast<double>(n);
  const float w = static_cast<float>((j % 2 == 0) ? std::cos(a) : -std::sin(a));
#endif
  return w * inv_n;
}

// The weight of component j for channel c of an FFT child over n channels (child_fft).
VIDKV_HOST_DEVICE inline float fft_inverse_weight(const ChildFormat& f, std::int64_t n, std::int64_t j, std::int64_t c) {
  return f.fft_complex ? fft_complex_inverse_weight(n, j, c) : fft_real_inverse_weight(n, j, c);
}

// Where part index i of a key part lies: its child, the child's first part index and first gathered channel, and
// the child's channel count.
struct PartSlot {
  bool in_first;
  std::int64_t base, channel_base, channels;
};
VIDKV_HOST_DEVICE inline PartSlot part_slot(const PartRef& p, std::int64_t i) {
  const bool in_first = i < p.first_n;
  return {in_first, in_first ? 0 : p.first_n, in_first ? 0 : p.first_channels, in_first ? p.first_channels : p.second_channels};
}

// Entry i (part index) of the query carried into a block's coordinates, from `gathered` (the query's channels in
// gathered order: gathered[gathered_index(c)] = q[c]): the query's gathered channel for children without FFT, and
// for an FFT child (fft real or complex) the adjoint of its inverse transform, w_j = sum_c q_c d x_c / d y_j, so that
// sum_c q_c x_c = sum_j w_j y_j for the decoded channels x of stored components y (the inverse FFT is linear: one
// transform of the query per block and head instead of one inverse FFT per token).
VIDKV_HOST_DEVICE inline float transform_entry(const SideFormat& f, const PartRef& p, const float* gathered, std::int64_t i) {
  const PartSlot s = part_slot(p, i);
  const ChildFormat& child = s.in_first ? f.first : f.second;
  const std::int64_t j = i - s.base;
  if (!child_fft(child)) return gathered[s.channel_base + j];
  float w = 0.0f;
  for (std::int64_t c = 0; c < s.channels; ++c) w += gathered[s.channel_base + c] * fft_inverse_weight(child, s.channels, j, c);
  return w;
}

// The FFT weights of fft_real_inverse_weight / fft_complex_inverse_weight tabulated by angle, for transform_entry's
// value from a table (transform_entry_tabulated; the transform kernel and its emulation): entry kc < n of the 2 n
// floats of `table` is the weight of angle 2 pi kc / n for the cosine components, entry n + kc for the sine ones
// (real FFTs: 2 cos / n and -2 sin / n, rounded as fft_real_inverse_weight rounds them; complex: cos / n and
// -sin / n, and 0 at kc = 0 as fft_complex_inverse_weight's special case), the same floats as the weight functions
// give for any component j and channel c with (k c) mod n = kc (k of j as there).
VIDKV_HOST_DEVICE inline void fft_weight_table_entry(float* table, std::int64_t n, bool complex_fft, std::int64_t kc) {
  const float inv_n = 1.0f / static_cast<float>(n);
#if defined(__CUDA_ARCH__)
  const float x = 2.0f * static_cast<float>(kc) / static_cast<float>(n);
  const float c = cospif(x), ms = -sinpif(x);
#else
  const double a = 6.283185307179586476925 * static_cast<double>(kc) / static_cast<double>(n);
  const float c = static_cast<float>(std::cos(a)), ms = static_cast<float>(-std::sin(a));
#endif
  table[kc] = complex_fft ? c * inv_n : 2.0f * c * inv_n;
  table[n + kc] = complex_fft ? (kc == 0 ? 0.0f : ms * inv_n) : 2.0f * ms * inv_n;
}

// The weight tables of a key part's FFT children (fft_weight_table_entry): entries kc = start, start + stride, ... of
// each child's table, so that a block's threads share the work (start = the thread, stride = the block's threads) and
// the host fills them whole (0, 1). `first`, `second`: 2 D floats each; a child without FFT leaves its table unused.
VIDKV_HOST_DEVICE inline void fft_weight_tables(const SideFormat& f, const PartRef& p, float* first, float* second,
                                                std::int64_t start, std::int64_t stride) {
  if (p.first_n > 0 && child_fft(f.first))
    for (std::int64_t kc = start; kc < p.first_channels; kc += stride)
      fft_weight_table_entry(first, p.first_channels, f.first.fft_complex, kc);
  if (p.second_n > 0 && child_fft(f.second))
    for (std::int64_t kc = start; kc < p.second_channels; kc += stride)
      fft_weight_table_entry(second, p.second_channels, f.second.fft_complex, kc);
}

// transform_entry(f, p, gathered, i) from the children's weight tables (fft_weight_table_entry over each FFT child's
// n channels; unused for children without FFT): the same products and sums in the same order, and the same weights,
// so the same float. The angle (k c) mod n advances by k per channel (one add and one unsigned min: kc + k < 2 n).
VIDKV_HOST_DEVICE inline float transform_entry_tabulated(const SideFormat& f, const PartRef& p, const float* gathered,
                                                         const float* table_first, const float* table_second, std::int64_t i) {
  const PartSlot s = part_slot(p, i);
  const ChildFormat& child = s.in_first ? f.first : f.second;
  const std::int64_t j = i - s.base, n = s.channels;
  const float* g = gathered + s.channel_base;
  if (!child_fft(child)) return g[j];
  const float inv_n = 1.0f / static_cast<float>(n);
  const bool complex_fft = child.fft_complex;
  float w = 0.0f;
  if (!complex_fft && (j == 0 || (n % 2 == 0 && j == n - 1))) {  // fft_real_inverse_weight's special components
    for (std::int64_t c = 0; c < n; ++c) w += g[c] * ((j == 0 || c % 2 == 0) ? inv_n : -inv_n);
    return w;
  }
  const bool use_cos = complex_fft ? j % 2 == 0 : j % 2 == 1;
  const float* t = (s.in_first ? table_first : table_second) + (use_cos ? 0 : n);
  const auto k = static_cast<std::uint32_t>(complex_fft ? j / 2 : (j + 1) / 2), un = static_cast<std::uint32_t>(n);
  std::uint32_t kc = 0;
  for (std::int64_t c = 0; c < n; ++c) {
    w += g[c] * t[kc];
    kc += k;
    kc = kc - un < kc ? kc - un : kc;  // (k c) mod n: kc - n wraps above kc while kc < n
  }
  return w;
}

// Whether a side needs the query transform (mask gather or FFT) per block.
VIDKV_HOST_DEVICE inline bool needs_transform(const SideFormat& f) {
  return f.mixed || child_fft(f.first);
}

// A full-precision residual token's element, as materialize() gives it: the exact input rounded to the residual
// storage dtype. full: the cache's exact-input store [heads, capacity, channels] of full_dtype, row r = token
// first + r (LayerCache::SideRef).
VIDKV_HOST_DEVICE inline float residual_element(const void* full, DType full_dtype, std::int64_t capacity, std::int64_t first,
                                                std::int64_t channels, DType dtype, std::int64_t h, std::int64_t t,
                                                std::int64_t c) {
  return round_to_dtype(load_as_float(full, full_dtype, static_cast<std::size_t>((h * capacity + t - first) * channels + c)), dtype);
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
