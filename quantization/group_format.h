// How the grouped primitive quantizers (uniform, sign, ternary) cut a block into groups and address their packed
// bytes; shared by the CPU reference and future CUDA kernels (no std:: containers, no exceptions).
//
// A block [heads, tokens, channels] (row-major fp32) is seen, per head, as `rows` rows of `length` elements along
// the grouped axis (algorithms.md 1):
//   axis channel: a row is one channel, its elements are the tokens (rows = channels, length = tokens);
//   axis token:   a row is one token, its elements are the channels (rows = tokens, length = channels).
// Each row is cut into groups of `group` consecutive elements; when `group` does not divide `length`, the LAST group
// of the row holds the remaining length mod group elements and has its own statistics (tail rule).
// Canonical element order of every packed stream: head-major, then row, then position along the grouped axis
// (the grouped axis innermost). Canonical group order of metadata: head, row, group (one exception: layout fragment's
// channel-axis grids, group_major_meta below).
//
// Metadata scalars (fp16 or fp32) and release uint32 words are written byte by byte, little-endian, so that any
// byte offset works (sections are packed back to back with no alignment padding).
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/bit_packing.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

namespace vidkv::group_format {

enum class GroupAxis : std::uint8_t { channel, token };

struct GroupGrid {
  GroupAxis axis = GroupAxis::channel;  // the grouped axis (make_group_grid); rows are channels or tokens by it
  std::int64_t heads = 1;
  std::int64_t rows = 0;        // rows per head
  std::int64_t length = 0;      // elements per row (the grouped axis)
  std::int64_t group = 1;       // elements per group (the last group of a row may be shorter)
  std::int64_t row_stride = 0;  // block offset between consecutive rows of a head
  std::int64_t pos_stride = 0;  // block offset between consecutive elements of a row
  std::int64_t head_stride = 0; // block offset between heads (tokens * channels)

  VIDKV_HOST_DEVICE constexpr std::int64_t groups_per_row() const { return (length + group - 1) / group; }
  VIDKV_HOST_DEVICE constexpr std::int64_t row_count() const { return heads * rows; }
  VIDKV_HOST_DEVICE constexpr std::int64_t group_count() const { return heads * rows * groups_per_row(); }
  VIDKV_HOST_DEVICE constexpr std::int64_t elements() const { return heads * rows * length; }
  // Elements in group g of a row: `group`, or length - g * group for the tail group.
  VIDKV_HOST_DEVICE constexpr std::int64_t group_size(std::int64_t g) const {
    return length - g * group < group ? length - g * group : group;
  }
  // Offset in the [heads, tokens, channels] block of element j of row r of head h.
  VIDKV_HOST_DEVICE constexpr std::int64_t block_offset(std::int64_t h, std::int64_t r, std::int64_t j) const {
    return h * head_stride + r * row_stride + j * pos_stride;
  }
  // Index in canonical stream order of the same element.
  VIDKV_HOST_DEVICE constexpr std::int64_t stream_index(std::int64_t h, std::int64_t r, std::int64_t j) const {
    return (h * rows + r) * length + j;
  }
  // Index of the metadata entry (scale, min) of group g of row r of head h.
  VIDKV_HOST_DEVICE constexpr std::int64_t group_index(std::int64_t h, std::int64_t r, std::int64_t g) const {
    return (h * rows + r) * groups_per_row() + g;
  }
};

// The grid of a block [heads, tokens, channels] grouped along `axis` in groups of `group` elements.
VIDKV_HOST_DEVICE constexpr GroupGrid make_group_grid(GroupAxis axis, std::int64_t heads, std::int64_t tokens,
                                                      std::int64_t channels, std::int64_t group) {
  GroupGrid g;
  g.axis = axis;
  g.heads = heads;
  g.group = group;
  g.head_stride = tokens * channels;
  if (axis == GroupAxis::channel) {
    g.rows = channels;
    g.length = tokens;
    g.row_stride = 1;
    g.pos_stride = channels;
  } else {
    g.rows = tokens;
    g.length = channels;
    g.row_stride = channels;
    g.pos_stride = 1;
  }
  return g;
}

// Where the sections of a grouped quantizer's bytes start: codes | scales | mins, back to back (each plugin's
// *_format.h `sections` computes them from its byte counts, the one statement of its section order). Byte:
// std::uint8_t (encode) or const std::uint8_t (decode). A section the format does not store has no bytes: its
// pointer is where the next section would start.
template <class Byte>
struct Sections {
  Byte* codes;
  Byte* scales;
  Byte* mins;
};

// The grid of a [shape.heads, shape.tokens, width] block under the grouping of `p`: any struct with `axis` and
// `group` (a grouped quantizer's Params, its CUDA Config; the shape: a BlockShape). width is shape.channels, or the
// number of FFT components that sign quantizes. Every grouped quantizer's grid, host and device, comes from here.
template <class Grouping, class Shape>
VIDKV_HOST_DEVICE constexpr GroupGrid grid_of(const Grouping& p, const Shape& shape, std::int64_t width) {
  return make_group_grid(p.axis, shape.heads, shape.tokens, width, p.group);
}

static_assert(make_group_grid(GroupAxis::channel, 2, 45, 16, 32).groups_per_row() == 2, "45 tokens = 32 + tail 13");
static_assert(make_group_grid(GroupAxis::channel, 2, 45, 16, 32).group_size(1) == 13, "tail group holds 45 mod 32");
static_assert(make_group_grid(GroupAxis::token, 1, 7, 3, 32).group_count() == 7, "one short group per token");

// A finite v clamped to [-dtype_max_finite(t), dtype_max_finite(t)] (saturation: a finite value never becomes inf
// when rounded to `t`); inf and NaN are returned unchanged so that non-finite input stays visible. Values that
// already round to a finite value of `t` are unchanged, so their stored bytes are too.
VIDKV_HOST_DEVICE inline float saturate(float v, DType t) {
  const float top = dtype_max_finite(t);
  if (v > top && v <= 0x1.fffffep127f) return top;
  if (v < -top && v >= -0x1.fffffep127f) return -top;
  return v;
}

// Writes v saturated (saturate above) and rounded to `t` (fp16, bf16 or fp32) as element i of a little-endian
// scalar array starting at `bytes`: a finite v is stored finite (a group scale of 1e5 is stored as 65504 in fp16).
VIDKV_HOST_DEVICE inline void put_scalar(std::uint8_t* bytes, std::int64_t i, DType t, float v) {
  const int size = dtype_size(t);
  v = saturate(v, t);
  std::uint32_t b = t == DType::f32 ? float_bits(v) : (t == DType::f16 ? float_to_half_bits(v) : float_to_bf16_bits(v));
  for (int k = 0; k < size; ++k) bytes[i * size + k] = static_cast<std::uint8_t>(b >> (8 * k));
}

// Reads element i of a little-endian scalar array of dtype t as fp32 (exact).
VIDKV_HOST_DEVICE inline float get_scalar(const std::uint8_t* bytes, std::int64_t i, DType t) {
  const int size = dtype_size(t);
  std::uint32_t b = 0;
  for (int k = 0; k < size; ++k) b |= static_cast<std::uint32_t>(bytes[i * size + k]) << (8 * k);
  if (t == DType::f32) return bits_float(b);
  return t == DType::f16 ? half_bits_to_float(static_cast<std::uint16_t>(b)) : bf16_bits_to_float(static_cast<std::uint16_t>(b));
}

// Release uint32 words, little-endian, at word index w of a byte array.
VIDKV_HOST_DEVICE inline void put_word(std::uint8_t* bytes, std::int64_t w, std::uint32_t word) {
  for (int k = 0; k < 4; ++k) bytes[4 * w + k] = static_cast<std::uint8_t>(word >> (8 * k));
}
VIDKV_HOST_DEVICE inline std::uint32_t get_word(const std::uint8_t* bytes, std::int64_t w) {
  std::uint32_t word = 0;
  for (int k = 0; k < 4; ++k) word |= static_cast<std::uint32_t>(bytes[4 * w + k]) << (8 * k);
  return word;
}

// Where the codes of a grid live. dense: one bitstream over all elements in canonical order
// (core/bit_packing.h dense_*). release: per row, ceil(length / f) uint32 words, f = 32 / bits codes per word,
// least significant bits first (core/bit_packing.h release_*), rows back to back in canonical order; bits must be
// 1, 2, 4 or 8. fragment: 1- or 2-bit codes in the order of the tensor cores' A operands (below, fragment_code_index):
// the same bytes as dense, permuted; channels a multiple of 64 (fragment_ok). Its A orientation (FragmentOperand)
// follows the grouped axis for uniform and sign (fragment_form: channel-axis grids in the keys' score orientation,
// token-axis grids in the values', kivi-2's per-channel keys and per-token values); ternary's packing fragment takes
// the values' orientation on either axis (VidKV's per-channel values).
enum class CodeLayout : std::uint8_t { dense, release, fragment };

VIDKV_HOST_DEVICE constexpr bool release_bits_ok(unsigned bits) { return bits == 1 || bits == 2 || bits == 4 || bits == 8; }

// --- The fragment layout (issue 13: decode attention reads a tile's codes as MMA operands) -----------------------
// For decode attention with mma.m16n8k16 (PTX ISA, "Matrix fragments for mma.m16n8k16 with floating point type"):
// lane l = 4 g + t4 of a warp holds its A operand in four registers a = 0..3 of two fp16 each: register a covers
// row g + 8 (a & 1) and columns 2 t4 + 8 (a >> 1) + {0, 1} (the low half the even column) of a 16 x 16 A tile.
// Per KV head, the tokens are cut into tiles of 32 (kFragmentTileTokens) from the block's first token; the tokens
// past the last whole tile (tokens mod 32) form the tail. In a tile of D channels (D a multiple of 64), b-bit codes
// (b = 1 or 2):
//   operand keys (A = codes [16 tokens x 16 channels], scores = A q):
//     token tt of the tile = 16 mt + row, channel c = 16 kc + col, register r = 4 (mt D / 16 + kc) + a;
//   operand values (A = codes [16 channels x 16 tokens], out = A p):
//     channel c = 16 mv + row, token tt = 16 kt + col, register r = 4 (2 mv + kt) + a;
//   with row = g + 8 (a & 1) and col = 2 t4 + 8 (a >> 1) + half. Lane l's registers r = 0 .. D/2 - 1 fill its
//   D b / 32 words, F = 16 / b registers per word: register r is field f = r % F of word w = r / F, its low half's
//   code at bits b f and its high half's at 16 + b f (so one mask of the word shifted by b f - s makes the pair of
//   codes an exact pair of fp16 subnormals, code 2^(s - 24), with s the same for every code of an A row:
//   attention/decode_attention_fragment.h subnormal_code_pair, subnormal_row_shift; the prototype's codes_h2 took a
//   mask OR an fp16 exponent and one fp16 subtraction). The lane's words are stored as vectors of V = 2 b words
//   (2-bit: 16-byte quads, 1-bit: 8-byte pairs), vector w / V of all 32 lanes back to back: word (w / V) 32 V + V l +
//   w % V of the tile. A tile is D b words (32 tokens x D channels x b bits).
// The tiles of a head come first, in token order, then the tail in the dense order of the grid (channel axis:
// channel-major, token innermost; token axis: token-major; whatever the operand); heads back to back, each T D b / 32
// words. Every code is a field that never crosses a byte. Codes section size: exactly dense's (b bits per element).
constexpr std::int64_t kFragmentTileTokens = 32;

// The A operand a fragment-layout grid is stored as (above).
enum class FragmentOperand : std::uint8_t { keys, values };
// A grid's fragment form: its operand orientation and code width (1 or 2 bits).
struct FragmentForm {
  FragmentOperand operand;
  unsigned bits;
};

// Tokens and channels of a grid (rows and length by its axis).
VIDKV_HOST_DEVICE constexpr std::int64_t grid_tokens(const GroupGrid& g) { return g.axis == GroupAxis::channel ? g.length : g.rows; }
VIDKV_HOST_DEVICE constexpr std::int64_t grid_channels(const GroupGrid& g) { return g.axis == GroupAxis::channel ? g.rows : g.length; }

// The form of uniform's and sign's fragment layout: the operand follows the grouped axis.
VIDKV_HOST_DEVICE constexpr FragmentForm fragment_form(const GroupGrid& g, unsigned bits) {
  return {g.axis == GroupAxis::channel ? FragmentOperand::keys : FragmentOperand::values, bits};
}

// Whether the fragment layout can hold a grid's codes: 1- or 2-bit codes, channels a multiple of 64 (whole vectors
// per lane: fragment_channels_ok). Any token count (the tail takes the rest).
VIDKV_HOST_DEVICE constexpr bool fragment_channels_ok(std::int64_t channels) { return channels > 0 && channels % 64 == 0; }
VIDKV_HOST_DEVICE constexpr bool fragment_bits_ok(unsigned bits) { return bits == 1 || bits == 2; }
VIDKV_HOST_DEVICE constexpr bool fragment_ok(const GroupGrid& g, unsigned bits) {
  return fragment_bits_ok(bits) && fragment_channels_ok(grid_channels(g));
}
// Whether a grid's codes in layout fragment are all tail (fewer than 32 tokens), so their bytes are dense's: the
// permutations are skipped, and such blocks are token-separable.
VIDKV_HOST_DEVICE constexpr bool fragment_all_tail(const GroupGrid& g) { return grid_tokens(g) < kFragmentTileTokens; }

// Tokens in whole tiles of a grid with `tokens` per head (the tail, tokens mod 32, follows them in dense order).
VIDKV_HOST_DEVICE constexpr std::int64_t fragment_tiled_tokens(std::int64_t tokens) {
  return tokens - tokens % kFragmentTileTokens;
}

// Index of the code of token t, channel c of head h (in units of f.bits bits from the codes section's start) for a
// grid of `tokens` x `channels` per head grouped along `axis` (the tail's order) in form f (the layout above;
// fragment_ok must hold).
VIDKV_HOST_DEVICE constexpr std::int64_t fragment_code_index(GroupAxis axis, FragmentForm f, std::int64_t tokens,
                                                             std::int64_t channels, std::int64_t h, std::int64_t t,
                                                             std::int64_t c) {
  const std::int64_t head_codes = tokens * channels, full = fragment_tiled_tokens(tokens);
  const std::int64_t base = h * head_codes;
  if (t >= full) {  // the tail, dense order of the grid
    const std::int64_t tail = tokens - full, u = t - full;
    return base + full * channels + (axis == GroupAxis::channel ? c * tail + u : u * channels + c);
  }
  const bool keys = f.operand == FragmentOperand::keys;
  const std::int64_t tile = t / kFragmentTileTokens, tt = t % kFragmentTileTokens;
  // (row, col) of the element in its 16 x 16 A tile and the register's tile index (mt kc or mv kt)
  const std::int64_t row = keys ? tt % 16 : c % 16;
  const std::int64_t col = keys ? c % 16 : tt % 16;
  const std::int64_t pair = keys ? (tt / 16) * (channels / 16) + c / 16 : 2 * (c / 16) + tt / 16;
  const std::int64_t lane = 4 * (row % 8) + (col % 8) / 2, half = col % 2;
  const std::int64_t r = 4 * pair + (row / 8) + 2 * (col / 8);
  const std::int64_t fields = 16 / f.bits, vec = 2 * f.bits;  // registers per word, words per lane vector
  const std::int64_t w = r / fields, field = r % fields;
  const std::int64_t word = (w / vec) * 32 * vec + vec * lane + w % vec;
  return base + tile * kFragmentTileTokens * channels + word * (32 / f.bits) + half * fields + field;
}

// One token's codes of a channel-axis grid of 2-bit codes in form keys (kivi-2-fragment's keys) in whole 32-token
// tiles as a lane reads them: token t (t < fragment_tiled_tokens(tokens)) lies
// in A row tt % 16 (tt = t % 32) of token half mt = tt / 16, so fragment lane 4 (tt % 8) + t4 holds its channels
// 16 kc + 8 b + 2 t4 + {0, 1} (kc < channels / 16, b = 0, 1; D / 4 channels per t4, all 4 of them the token's D):
// register a = (tt % 16) / 8 + 2 b of pair mt channels / 16 + kc. fragment_key_word: the 32-bit word (from the codes
// section's start) holding both b of chunk kc; fragment_key_field: the field of b in it, whose low half is channel
// 16 kc + 8 b + 2 t4 at bits 2 field and high half the next channel at bits 16 + 2 field. The decode-attention general
// kernel reads a narrow tile's keys this way (a lane's words once, then shifts), fragment_code_index's element in two
// halves.
VIDKV_HOST_DEVICE constexpr std::int64_t fragment_key_word(std::int64_t tokens, std::int64_t channels, std::int64_t h,
                                                           std::int64_t t, int t4, std::int64_t kc) {
  const std::int64_t tt = t % kFragmentTileTokens, lane = 4 * (tt % 8) + t4;
  const std::int64_t w = ((tt / 16) * (channels / 16) + kc) / 2;  // the lane's word of register 4 pair + a: pair / 2
  return (h * tokens * channels + (t - tt) * channels) / 16 + (w / 4) * 128 + 4 * lane + w % 4;
}
VIDKV_HOST_DEVICE constexpr int fragment_key_field(std::int64_t t, std::int64_t kc, int b) {
  return static_cast<int>(4 * (kc % 2) + (t % 16) / 8 + 2 * b);  // register r % 8, pair and kc of one parity (channels / 16 is even)
}

// The element (head, token, channel) whose code is at index k (units of f.bits bits): the inverse of
// fragment_code_index.
struct FragmentElement {
  std::int64_t h, t, c;
};
VIDKV_HOST_DEVICE constexpr FragmentElement fragment_element(GroupAxis axis, FragmentForm f, std::int64_t tokens,
                                                             std::int64_t channels, std::int64_t k) {
  const std::int64_t head_codes = tokens * channels, full = fragment_tiled_tokens(tokens);
  const std::int64_t h = k / head_codes;
  std::int64_t x = k % head_codes;
  if (x >= full * channels) {
    const std::int64_t tail = tokens - full, u = x - full * channels;
    return axis == GroupAxis::channel ? FragmentElement{h, full + u % tail, u / tail}
                                      : FragmentElement{h, full + u / channels, u % channels};
  }
  const std::int64_t tile_codes = kFragmentTileTokens * channels, tile = x / tile_codes;
  x %= tile_codes;
  const std::int64_t fields = 16 / f.bits, vec = 2 * f.bits;
  const std::int64_t word = x / (2 * fields), half = (x % (2 * fields)) / fields, field = x % fields;
  const std::int64_t lane = (word % (32 * vec)) / vec, w = (word / (32 * vec)) * vec + word % vec;
  const std::int64_t r = fields * w + field, a = r % 4, pair = r / 4;
  const std::int64_t row = lane / 4 + 8 * (a % 2), col = 2 * (lane % 4) + 8 * (a / 2) + half;
  if (f.operand == FragmentOperand::keys) {
    const std::int64_t kcs = channels / 16;
    return FragmentElement{h, tile * kFragmentTileTokens + 16 * (pair / kcs) + row, 16 * (pair % kcs) + col};
  }
  return FragmentElement{h, tile * kFragmentTileTokens + 16 * (pair % 2) + col, 16 * (pair / 2) + row};
}

// fragment_code_index of element j of row r of head h of a grid in form f.
VIDKV_HOST_DEVICE constexpr std::int64_t fragment_index(const GroupGrid& g, FragmentForm f, std::int64_t h, std::int64_t r,
                                                        std::int64_t j) {
  return g.axis == GroupAxis::channel ? fragment_code_index(g.axis, f, g.length, g.rows, h, j, r)
                                      : fragment_code_index(g.axis, f, g.rows, g.length, h, r, j);
}
// The (head, row, position) of the grid element at fragment index k (fragment_element in the grid's terms).
struct GridElement {
  std::int64_t h, r, j;
};
VIDKV_HOST_DEVICE constexpr GridElement fragment_grid_element(const GroupGrid& g, FragmentForm f, std::int64_t k) {
  const FragmentElement e = fragment_element(g.axis, f, grid_tokens(g), grid_channels(g), k);
  return g.axis == GroupAxis::channel ? GridElement{e.h, e.c, e.t} : GridElement{e.h, e.t, e.c};
}

// Hand-worked (2-bit keys, 64 channels, token 9 of the first tile, channel 3): row 9 -> g 1, a & 1 = 1; col 3 ->
// t4 1, half 1, a >> 1 = 0; lane 5, register 1 (pair 0), word 0 field 1, tile word 4 * 5 = 20; bit 20 * 32 + 16 + 2.
constexpr FragmentForm kKeys2{FragmentOperand::keys, 2}, kValues2{FragmentOperand::values, 2};
static_assert(fragment_code_index(GroupAxis::channel, kKeys2, 32, 64, 0, 9, 3) == (20 * 32 + 16 + 2) / 2, "fragment keys");
// 2-bit values, same element: row = channel 3 -> g 3, a & 1 = 0; col = token 9 -> t4 0, half 1, a >> 1 = 1; lane 12,
// register 2, word 0 field 2, tile word 48; bit 48 * 32 + 16 + 4.
static_assert(fragment_code_index(GroupAxis::token, kValues2, 32, 64, 0, 9, 3) == (48 * 32 + 16 + 4) / 2, "fragment values");
static_assert(fragment_element(GroupAxis::channel, kKeys2, 32, 64, (20 * 32 + 16 + 2) / 2).t == 9 &&
                  fragment_element(GroupAxis::channel, kKeys2, 32, 64, (20 * 32 + 16 + 2) / 2).c == 3, "inverse");
// 1-bit keys, 64 channels, token 9, channel 35: row 9 -> g 1, a & 1 = 1; col 35 % 16 = 3 -> t4 1, half 1, a >> 1 = 0;
// lane 5; pair 35 / 16 = 2, register 4 2 + 1 = 9: word 0 (16 registers a word), field 9; pairs: tile word 2 * 5 = 10;
// bit 10 * 32 + 16 + 9.
static_assert(fragment_code_index(GroupAxis::channel, FragmentForm{FragmentOperand::keys, 1}, 32, 64, 0, 9, 35) ==
                  10 * 32 + 16 + 9, "1-bit fragment keys");
// 2-bit values orientation on a channel-axis grid (ternary's per-channel values), token 9, channel 3 as above: word 48,
// bit 48 * 32 + 16 + 4; its tail (tokens 32 .. 39 of 40) channel-major, as the grid's dense order.
static_assert(fragment_code_index(GroupAxis::channel, kValues2, 40, 64, 0, 9, 3) == (48 * 32 + 16 + 4) / 2 &&
                  fragment_code_index(GroupAxis::channel, kValues2, 40, 64, 0, 33, 3) == 32 * 64 + 3 * 8 + 1,
              "fragment values on a channel-axis grid");

// --- Metadata order ---------------------------------------------------------------------------------------------
// Canonical group order of metadata is (head, row, group) (GroupGrid::group_index). One exception, for decode
// attention's fragment kernel (attention/decode_attention_fragment.cu): a channel-axis grid in layout fragment with at
// least one whole 32-token tile (kivi-2-fragment's keys) stores its scales and its mins group-major, (head, group,
// row): the D channels' scales of one token group are D contiguous entries (2 D bytes in fp16, at a multiple of 2 D
// from the section's start), so a 32-token tile's key metadata is one run per section (16-byte copies from an aligned
// block, channel pairs c, c + 1 in one 32-bit word) instead of one entry per channel, groups_per_row entries apart.
// A grid that is all tail keeps the canonical order, as its codes keep dense's (fragment_all_tail: its bytes are
// dense's). Either order holds the same entries, so the byte counts are unchanged.
VIDKV_HOST_DEVICE constexpr bool group_major_meta(CodeLayout layout, const GroupGrid& g) {
  return layout == CodeLayout::fragment && g.axis == GroupAxis::channel && !fragment_all_tail(g);
}

// The group-major index (head, group, row) of group gi of row r of head h, `rows` rows per head and `groups_per_row`
// groups per row: the one statement of the order (meta_index, decode attention's view_group and the fragment
// kernel's key_meta_base call it).
VIDKV_HOST_DEVICE constexpr std::int64_t group_major_index(std::int64_t h, std::int64_t gi, std::int64_t r, std::int64_t rows,
                                                           std::int64_t groups_per_row) {
  return (h * groups_per_row + gi) * rows + r;
}

// Index of the metadata entry (scale, min) of group gi of row r of head h as stored in `layout`.
VIDKV_HOST_DEVICE constexpr std::int64_t meta_index(CodeLayout layout, const GroupGrid& g, std::int64_t h, std::int64_t r,
                                                    std::int64_t gi) {
  return group_major_meta(layout, g) ? group_major_index(h, gi, r, g.rows, g.groups_per_row()) : g.group_index(h, r, gi);
}

// The canonical index (GroupGrid::group_index) of the entry stored at index k of a group-major section: the inverse.
VIDKV_HOST_DEVICE constexpr std::int64_t canonical_of_group_major(const GroupGrid& g, std::int64_t k) {
  const std::int64_t r = k % g.rows, hg = k / g.rows, gpr = g.groups_per_row();
  return g.group_index(hg / gpr, r, hg % gpr);
}

// Hand-worked: 2 heads, 64 channels (rows), 96 tokens in groups of 32 (3 per row). Head 1, channel 5, group 2:
// canonical (1 * 64 + 5) * 3 + 2 = 209; group-major (1 * 3 + 2) * 64 + 5 = 325.
static_assert(meta_index(CodeLayout::fragment, make_group_grid(GroupAxis::channel, 2, 96, 64, 32), 1, 5, 2) == 325 &&
                  meta_index(CodeLayout::dense, make_group_grid(GroupAxis::channel, 2, 96, 64, 32), 1, 5, 2) == 209 &&
                  canonical_of_group_major(make_group_grid(GroupAxis::channel, 2, 96, 64, 32), 325) == 209,
              "group-major key metadata");
static_assert(!group_major_meta(CodeLayout::fragment, make_group_grid(GroupAxis::channel, 2, 31, 64, 32)) &&
                  !group_major_meta(CodeLayout::fragment, make_group_grid(GroupAxis::token, 2, 96, 64, 32)),
              "all-tail grids and token-axis grids keep the canonical order");

// uint32 words of one row in the release layout.
VIDKV_HOST_DEVICE constexpr std::int64_t release_row_words(const GroupGrid& g, unsigned bits) {
  return static_cast<std::int64_t>(bits::release_words(static_cast<std::size_t>(g.length), bits));
}

// Bytes of the codes section (fragment: the dense stream's, permuted).
VIDKV_HOST_DEVICE constexpr std::size_t code_bytes(CodeLayout layout, const GroupGrid& g, unsigned bits) {
  return layout != CodeLayout::release ? bits::dense_bytes(static_cast<std::size_t>(g.elements()), bits)
                                       : static_cast<std::size_t>(g.row_count() * release_row_words(g, bits) * 4);
}

static_assert(code_bytes(CodeLayout::release, make_group_grid(GroupAxis::channel, 1, 45, 1, 32), 2) == 12,
              "45 2-bit codes = 3 words");
static_assert(code_bytes(CodeLayout::dense, make_group_grid(GroupAxis::channel, 1, 45, 1, 32), 2) == 12,
              "90 bits = 12 bytes");
static_assert(code_bytes(CodeLayout::release, make_group_grid(GroupAxis::token, 4, 1024, 128, 32), 1) ==
                  4 * 1024 * 4 * 4, "128 1-bit codes = 4 words per row");

// Writes `code` (< 2^bits) for element j of row r of head h. The codes section must start zeroed.
VIDKV_HOST_DEVICE inline void put_code(CodeLayout layout, std::uint8_t* codes, const GroupGrid& g, unsigned bits,
                                       std::int64_t h, std::int64_t r, std::int64_t j, unsigned code) {
  if (layout != CodeLayout::release) {
    const std::int64_t k = layout == CodeLayout::dense ? g.stream_index(h, r, j) : fragment_index(g, fragment_form(g, bits), h, r, j);
    bits::dense_put(codes, static_cast<std::size_t>(k), bits, code);
    return;
  }
  const std::int64_t f = bits::release_codes_per_word(bits);
  const std::int64_t w = (h * g.rows + r) * release_row_words(g, bits) + j / f;
  std::uint32_t word = get_word(codes, w);
  bits::release_put(&word, static_cast<std::size_t>(j % f), bits, code);
  put_word(codes, w, word);
}

// Reads the code of element j of row r of head h.
VIDKV_HOST_DEVICE inline unsigned get_code(CodeLayout layout, const std::uint8_t* codes, const GroupGrid& g,
                                           unsigned bits, std::int64_t h, std::int64_t r, std::int64_t j) {
  if (layout == CodeLayout::dense) return bits::dense_get(codes, static_cast<std::size_t>(g.stream_index(h, r, j)), bits);
  if (layout == CodeLayout::fragment)
    return bits::dense_get(codes, static_cast<std::size_t>(fragment_index(g, fragment_form(g, bits), h, r, j)), bits);
  const std::int64_t f = bits::release_codes_per_word(bits);
  const std::uint32_t word = get_word(codes, (h * g.rows + r) * release_row_words(g, bits) + j / f);
  return bits::release_get(&word, static_cast<std::size_t>(j % f), bits);
}

// Index of the uint32 word of the codes section holding element j0 of row r of head h, for runs that start on a
// word: in layout dense when ((h * rows + r) * length + j0) * bits is a multiple of 32, in layout release when
// j0 * bits is (a row starts on a word there). fragment: the word holding the element (a row's codes are not
// consecutive there: no run starts on it, word_aligned_groups is false).
VIDKV_HOST_DEVICE constexpr std::int64_t code_word(CodeLayout layout, const GroupGrid& g, unsigned bits, std::int64_t h,
                                                   std::int64_t r, std::int64_t j0) {
  return layout == CodeLayout::dense      ? g.stream_index(h, r, j0) * bits / 32
         : layout == CodeLayout::fragment ? fragment_index(g, fragment_form(g, bits), h, r, j0) * bits / 32
                                          : (h * g.rows + r) * release_row_words(g, bits) + j0 * bits / 32;
}

// --- Run-level packing: the codes of one whole group, a 32-bit word at a time -------------------------------
// When every group's code run starts on a 32-bit word of the codes section and fills whole words
// (word_aligned_groups), a group's codes are ceil(n * bits / 32) consecutive little-endian words, code i of the
// group at run bits [bits * i, bits * i + bits), LSB first. That is the same bit for bit as put_code() writes in
// both layouts (dense: the stream's bits; release: f = 32 / bits codes per word), so one thread per group can
// write its words with plain stores: no two groups share a word (race-free on a GPU, no zeroing needed). The CPU
// reference keeps put_code/get_code; the optimised CPU paths and the CUDA kernels use these runs, and
// tests/cpp/test_group_runs.cpp checks the two against each other.

// Whether every group of the grid starts on a word of the codes section and fills whole words (never in layout
// fragment, whose words hold codes of several rows).
VIDKV_HOST_DEVICE constexpr bool word_aligned_groups(CodeLayout layout, const GroupGrid& g, unsigned bits) {
  return layout != CodeLayout::fragment && g.length % g.group == 0 && (g.group * bits) % 32 == 0 &&
         (layout == CodeLayout::release || (g.length * bits) % 32 == 0);
}

// Writes the codes of one word-aligned run; `Store` is called as store(word_index, word) for each finished word
// (word_index counted from the start of the codes section). bits <= 8; codes < 2^bits.
template <class Store>
struct WordRunWriter {
  Store store;
  std::int64_t word;  // next word to write
  unsigned bits;
  std::uint64_t acc = 0;
  unsigned filled = 0;

  VIDKV_HOST_DEVICE WordRunWriter(Store s, std::int64_t first_word, unsigned b) : store(s), word(first_word), bits(b) {}
  VIDKV_HOST_DEVICE void put(unsigned code) {
    acc |= static_cast<std::uint64_t>(code) << filled;
    filled += bits;
    if (filled >= 32) {
      store(word++, static_cast<std::uint32_t>(acc));
      acc >>= 32;
      filled -= 32;
    }
  }
  // Writes the last, partly filled word (zero-padded); a run of whole words leaves nothing to flush.
  VIDKV_HOST_DEVICE void flush() {
    if (filled > 0) store(word++, static_cast<std::uint32_t>(acc));
    acc = 0;
    filled = 0;
  }
};

// Reads the codes of one word-aligned run in order; `Load` is called as load(word_index) -> uint32.
template <class Load>
struct WordRunReader {
  Load load;
  std::int64_t word;
  unsigned bits;
  std::uint64_t acc = 0;
  unsigned avail = 0;

  VIDKV_HOST_DEVICE WordRunReader(Load l, std::int64_t first_word, unsigned b) : load(l), word(first_word), bits(b) {}
  VIDKV_HOST_DEVICE unsigned next() {
    if (avail < bits) {
      acc |= static_cast<std::uint64_t>(load(word++)) << avail;
      avail += 32;
    }
    const unsigned code = static_cast<unsigned>(acc & ((1u << bits) - 1u));
    acc >>= bits;
    avail -= bits;
    return code;
  }
};

// Byte b of a codes section (any layout, any alignment): OR of the bits of every code that overlaps it, with
// `code_of(h, r, j)` giving the code of element j of row r of head h. One thread per byte writes each byte once
// (race-free where groups are not word-aligned: tails, odd row lengths, bits not dividing 32).
template <class CodeOf>
VIDKV_HOST_DEVICE inline std::uint8_t code_byte(CodeLayout layout, const GroupGrid& g, unsigned bits, std::int64_t b,
                                                CodeOf code_of) {
  unsigned byte = 0;
  if (layout == CodeLayout::fragment) {  // 8 / bits codes per byte, each within the byte
    const FragmentForm f = fragment_form(g, bits);
    for (std::int64_t i = 0; i < 8 / static_cast<std::int64_t>(bits); ++i) {
      const GridElement e = fragment_grid_element(g, f, (8 / bits) * b + i);
      byte |= code_of(e.h, e.r, e.j) << (bits * i);
    }
    return static_cast<std::uint8_t>(byte & 0xffu);
  }
  if (layout == CodeLayout::dense) {
    const std::int64_t first_bit = 8 * b, total = g.elements();
    for (std::int64_t k = first_bit / bits; k < total && k * bits < first_bit + 8; ++k) {
      const std::int64_t row = k / g.length, j = k % g.length;
      const unsigned code = code_of(row / g.rows, row % g.rows, j);
      const std::int64_t shift = k * bits - first_bit;  // may be negative for a code that started in byte b - 1
      byte |= shift >= 0 ? (code << shift) : (code >> -shift);
    }
    return static_cast<std::uint8_t>(byte & 0xffu);
  }
  const std::int64_t row_words = release_row_words(g, bits), w = b / 4;
  const std::int64_t row = w / row_words, f = bits::release_codes_per_word(bits);
  const std::int64_t j0 = (w % row_words) * f + (b % 4) * (8 / bits);
  for (std::int64_t i = 0; i < 8 / static_cast<std::int64_t>(bits) && j0 + i < g.length; ++i)
    byte |= code_of(row / g.rows, row % g.rows, j0 + i) << (bits * i);
  return static_cast<std::uint8_t>(byte & 0xffu);
}

// One byte of a codes section of grid g in layout fragment of form f from the section in layout dense
// (fragment_byte_from_dense), or one byte in layout dense from the section in layout fragment
// (dense_byte_from_fragment): the byte's 8 / f.bits codes gathered from where the other layout keeps them.
// fragment_ok(g, f.bits) must hold; b < code_bytes(...). One thread per byte permutes a whole section on a GPU
// (quantization/cuda/fragment_permute.cu), race-free; the host loops below call the same.
VIDKV_HOST_DEVICE inline std::uint8_t fragment_byte_from_dense(const GroupGrid& g, FragmentForm f, const std::uint8_t* dense,
                                                               std::int64_t b) {
  const std::int64_t per_byte = 8 / f.bits;
  const unsigned mask = (1u << f.bits) - 1u;
  unsigned byte = 0;
  for (std::int64_t i = 0; i < per_byte; ++i) {
    const GridElement e = fragment_grid_element(g, f, per_byte * b + i);
    const std::int64_t k = g.stream_index(e.h, e.r, e.j);
    byte |= ((static_cast<unsigned>(dense[k / per_byte]) >> (f.bits * (k % per_byte))) & mask) << (f.bits * i);
  }
  return static_cast<std::uint8_t>(byte);
}
VIDKV_HOST_DEVICE inline std::uint8_t dense_byte_from_fragment(const GroupGrid& g, FragmentForm f, const std::uint8_t* fragment,
                                                               std::int64_t b) {
  const std::int64_t per_byte = 8 / f.bits;
  const unsigned mask = (1u << f.bits) - 1u;
  unsigned byte = 0;
  for (std::int64_t i = 0; i < per_byte; ++i) {
    const std::int64_t d = per_byte * b + i, row = d / g.length;  // canonical index -> (head, row, position)
    const std::int64_t k = fragment_index(g, f, row / g.rows, row % g.rows, d % g.length);
    byte |= ((static_cast<unsigned>(fragment[k / per_byte]) >> (f.bits * (k % per_byte))) & mask) << (f.bits * i);
  }
  return static_cast<std::uint8_t>(byte);
}

// A whole codes section permuted between the layouts (every code moved, none changed; `to`, code_bytes(...) bytes not
// overlapping `from`, written whole): the definition by bytes, equal to put_code / get_code's bit for bit
// (tests/cpp/test_fragment_layout.cpp). The CPU tiers' permutation (quantization/fragment_permute.cpp) builds the
// same bytes a lane word at a time, and is tested against these.
inline void fragment_from_dense(const GroupGrid& g, FragmentForm f, const std::uint8_t* dense, std::uint8_t* fragment) {
  const auto n = static_cast<std::int64_t>(code_bytes(CodeLayout::dense, g, f.bits));
  for (std::int64_t b = 0; b < n; ++b) fragment[b] = fragment_byte_from_dense(g, f, dense, b);
}
inline void dense_from_fragment(const GroupGrid& g, FragmentForm f, const std::uint8_t* fragment, std::uint8_t* dense) {
  const auto n = static_cast<std::int64_t>(code_bytes(CodeLayout::dense, g, f.bits));
  for (std::int64_t b = 0; b < n; ++b) dense[b] = dense_byte_from_fragment(g, f, fragment, b);
}

// The metadata sections of a grid (`sections` of them back to back, scales then mins: group_count() entries of `size`
// bytes each, 2 for fp16 / bf16, 4 for fp32) permuted between the canonical order and the group-major order of
// group_major_meta (every entry moved, none changed; `to` not overlapping `from`). Entry i of the sections
// (group_major_meta_entry) is one thread's work on a GPU (uniform.cu), race-free; the host loop below calls the same.
// The optimised CPU tiers and the CUDA encode / decode code in the canonical order and permute with these.
VIDKV_HOST_DEVICE inline void group_major_meta_entry(const GroupGrid& g, int size, const std::uint8_t* from, std::uint8_t* to,
                                                     std::int64_t i, bool to_group_major) {
  const std::int64_t entries = g.group_count(), section = i / entries, k = i % entries;
  const std::int64_t c = canonical_of_group_major(g, k);
  const std::int64_t src = section * entries + (to_group_major ? c : k), dst = section * entries + (to_group_major ? k : c);
  for (int b = 0; b < size; ++b) to[dst * size + b] = from[src * size + b];
}
inline void permute_group_major_meta(const GroupGrid& g, int size, int sections, const std::uint8_t* from, std::uint8_t* to,
                                     bool to_group_major) {
  for (std::int64_t i = 0; i < sections * g.group_count(); ++i) group_major_meta_entry(g, size, from, to, i, to_group_major);
}

// Round half to even of a finite, non-negative value below 2^23 (codes), written out so host and device agree
// without depending on the floating-point rounding mode.
VIDKV_HOST_DEVICE inline float round_half_even(float v) {
#if defined(__CUDA_ARCH__)
  return rintf(v);  // CUDA devices always round to nearest even (no dynamic rounding mode): the same value, one FRND
#else
  const float lo = static_cast<float>(static_cast<std::int64_t>(v));  // floor for v >= 0
  const float frac = v - lo;                                          // exact for v < 2^23
  if (frac > 0.5f) return lo + 1.0f;
  if (frac < 0.5f) return lo;
  return (static_cast<std::int64_t>(lo) & 1) ? lo + 1.0f : lo;
#endif
}

}  // namespace vidkv::group_format
