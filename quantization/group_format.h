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
// (the grouped axis innermost). Canonical group order of metadata: head, row, group.
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
// 1, 2, 4 or 8.
enum class CodeLayout : std::uint8_t { dense, release };

VIDKV_HOST_DEVICE constexpr bool release_bits_ok(unsigned bits) { return bits == 1 || bits == 2 || bits == 4 || bits == 8; }

// uint32 words of one row in the release layout.
VIDKV_HOST_DEVICE constexpr std::int64_t release_row_words(const GroupGrid& g, unsigned bits) {
  return static_cast<std::int64_t>(bits::release_words(static_cast<std::size_t>(g.length), bits));
}

// Bytes of the codes section.
VIDKV_HOST_DEVICE constexpr std::size_t code_bytes(CodeLayout layout, const GroupGrid& g, unsigned bits) {
  return layout == CodeLayout::dense ? bits::dense_bytes(static_cast<std::size_t>(g.elements()), bits)
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
  if (layout == CodeLayout::dense) {
    bits::dense_put(codes, static_cast<std::size_t>(g.stream_index(h, r, j)), bits, code);
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
  const std::int64_t f = bits::release_codes_per_word(bits);
  const std::uint32_t word = get_word(codes, (h * g.rows + r) * release_row_words(g, bits) + j / f);
  return bits::release_get(&word, static_cast<std::size_t>(j % f), bits);
}

// Index of the uint32 word of the codes section holding element j0 of row r of head h, for runs that start on a
// word: in layout dense when ((h * rows + r) * length + j0) * bits is a multiple of 32, in layout release when
// j0 * bits is (a row starts on a word there).
VIDKV_HOST_DEVICE constexpr std::int64_t code_word(CodeLayout layout, const GroupGrid& g, unsigned bits, std::int64_t h,
                                                   std::int64_t r, std::int64_t j0) {
  return layout == CodeLayout::dense ? g.stream_index(h, r, j0) * bits / 32
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

// Whether every group of the grid starts on a word of the codes section and fills whole words.
VIDKV_HOST_DEVICE constexpr bool word_aligned_groups(CodeLayout layout, const GroupGrid& g, unsigned bits) {
  return g.length % g.group == 0 && (g.group * bits) % 32 == 0 &&
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
