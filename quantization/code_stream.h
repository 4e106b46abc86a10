// Word-at-a-time writers and readers of the code streams defined in group_format.h / core/bit_packing.h, for the
// optimised CPU paths: they move a whole run of codes (one group of one row) at once instead of one code per call.
// They produce exactly the bytes of group_format::put_code / bits::dense_put and ternary_format::put_trit:
//   dense:   code j of the block stream at stream bits [bits*j, bits*j + bits), LSB first;
//   release: bits in {1, 2, 4, 8} fill each uint32 word completely (f * bits == 32), so a release row IS a dense
//            bitstream of that row's codes starting at the row's first word (little-endian bytes);
//   base3:   trit i of the stream is digit i % 5 of byte i / 5 (weight 3^(i % 5)), slots hold t + 1.
// Writers OR (or add) into a section that starts zeroed, like the reference, so runs may share edge bytes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/quantization/group_format.h"

namespace vidkv::code_stream {

// Stream bit of element (h, r, j0) of a grid's codes section in `layout` (group_format.h CodeLayout).
inline std::uint64_t code_bit(group_format::CodeLayout layout, const group_format::GroupGrid& g, unsigned bits,
                              std::int64_t h, std::int64_t r, std::int64_t j0) {
  if (layout == group_format::CodeLayout::dense) return static_cast<std::uint64_t>(g.stream_index(h, r, j0)) * bits;
  const auto row = static_cast<std::uint64_t>(h * g.rows + r);
  return row * static_cast<std::uint64_t>(group_format::release_row_words(g, bits)) * 32u +
         static_cast<std::uint64_t>(j0) * bits;
}

// bytes[k] = the 8 / Bits codes k * (8 / Bits) ... packed LSB first (Bits in {1, 2, 4, 8}).
template <unsigned Bits>
inline void pack_whole_bytes(const std::uint8_t* __restrict codes, std::int64_t bytes, std::uint8_t* __restrict out) {
  constexpr unsigned kPer = 8u / Bits;
  for (std::int64_t k = 0; k < bytes; ++k) {
    unsigned byte = 0;
    for (unsigned s = 0; s < kPer; ++s) byte |= static_cast<unsigned>(codes[k * kPer + s]) << (Bits * s);
    out[k] = static_cast<std::uint8_t>(byte);
  }
}

template <unsigned Bits>
inline void unpack_whole_bytes(const std::uint8_t* __restrict in, std::int64_t bytes, std::uint8_t* __restrict codes) {
  constexpr unsigned kPer = 8u / Bits;
  constexpr unsigned kMask = (1u << Bits) - 1u;
  for (std::int64_t k = 0; k < bytes; ++k)
    for (unsigned s = 0; s < kPer; ++s) codes[k * kPer + s] = static_cast<std::uint8_t>((in[k] >> (Bits * s)) & kMask);
}

// ORs n codes (each < 2^bits, bits in 1..8) into `stream` from stream bit `bit` on.
inline void write_codes(std::uint8_t* __restrict stream, std::uint64_t bit, const std::uint8_t* __restrict codes,
                        std::int64_t n, unsigned bits) {
  std::uint8_t* p = stream + (bit >> 3);
  const unsigned per_byte = 8u / bits;
  std::int64_t i = 0;
  if ((bit & 7u) == 0 && per_byte * bits == 8u) {
    // Whole bytes: per_byte codes each, nothing shared with a neighbour run.
    const std::int64_t full = n / per_byte;
    switch (bits) {  // constant per_byte for the common widths, so the loop vectorises
      case 1: pack_whole_bytes<1>(codes, full, p); break;
      case 2: pack_whole_bytes<2>(codes, full, p); break;
      case 4: pack_whole_bytes<4>(codes, full, p); break;
      default: pack_whole_bytes<8>(codes, full, p); break;
    }
    i = full * per_byte;
    p += full;
    bit = 0;
  }
  unsigned fill = static_cast<unsigned>(bit & 7u);
  std::uint32_t acc = 0;
  for (; i < n; ++i) {
    acc |= static_cast<std::uint32_t>(codes[i]) << fill;
    fill += bits;
    while (fill >= 8) {
      *p++ |= static_cast<std::uint8_t>(acc);
      acc >>= 8;
      fill -= 8;
    }
  }
  if (fill > 0) *p |= static_cast<std::uint8_t>(acc);
}

// Reads n codes of `bits` bits from stream bit `bit` on.
inline void read_codes(const std::uint8_t* __restrict stream, std::uint64_t bit, std::uint8_t* __restrict codes,
                       std::int64_t n, unsigned bits) {
  const std::uint8_t* p = stream + (bit >> 3);
  const unsigned per_byte = 8u / bits;
  const unsigned mask = (1u << bits) - 1u;
  std::int64_t i = 0;
  if ((bit & 7u) == 0 && per_byte * bits == 8u) {
    const std::int64_t full = n / per_byte;
    switch (bits) {
      case 1: unpack_whole_bytes<1>(p, full, codes); break;
      case 2: unpack_whole_bytes<2>(p, full, codes); break;
      case 4: unpack_whole_bytes<4>(p, full, codes); break;
      default: unpack_whole_bytes<8>(p, full, codes); break;
    }
    i = full * per_byte;
    p += full;
    bit = 0;
  }
  unsigned have = 0;
  std::uint32_t acc = 0;
  unsigned skip = static_cast<unsigned>(bit & 7u);
  for (; i < n; ++i) {
    while (have < bits + skip) {
      acc |= static_cast<std::uint32_t>(*p++) << have;
      have += 8;
    }
    acc >>= skip;
    have -= skip;
    skip = 0;
    codes[i] = static_cast<std::uint8_t>(acc & mask);
    acc >>= bits;
    have -= bits;
  }
}

// base3: adds n slots (t + 1 in 0..2) at trit stream index s0 on (the section starts zeroed).
inline void write_trits(std::uint8_t* __restrict stream, std::int64_t s0, const std::uint8_t* __restrict slots,
                        std::int64_t n) {
  static constexpr unsigned kWeight[5] = {1, 3, 9, 27, 81};
  std::int64_t i = 0;
  std::uint8_t* p = stream + s0 / 5;
  unsigned digit = static_cast<unsigned>(s0 % 5);
  for (; i < n && digit != 0; ++i) {  // the partial first byte, shared with the previous run
    *p = static_cast<std::uint8_t>(*p + slots[i] * kWeight[digit]);
    if (++digit == 5) {
      digit = 0;
      ++p;
    }
  }
  const std::int64_t full = (n - i) / 5;
  const std::uint8_t* s = slots + i;
  for (std::int64_t k = 0; k < full; ++k)
    p[k] = static_cast<std::uint8_t>(s[5 * k] + 3u * s[5 * k + 1] + 9u * s[5 * k + 2] + 27u * s[5 * k + 3] + 81u * s[5 * k + 4]);
  p += full;
  i += full * 5;
  for (unsigned d = 0; i < n; ++i, ++d) *p = static_cast<std::uint8_t>(*p + slots[i] * kWeight[d]);
}

// base3: reads n slots (t + 1) from trit stream index s0 on.
void read_trits(const std::uint8_t* __restrict stream, std::int64_t s0, std::uint8_t* __restrict slots, std::int64_t n);

// A tile of codes [n][width] (row-major bytes, one row per position along the grouped axis, one column per grid
// row) whose column c is one run of n codes starting at stream bit col_bit[c]: the shape of a channel-axis group
// of G tokens. write_columns ORs every column's run into the stream; read_columns fills the tile from it.
// When bits divides 8, n is a multiple of 8 / bits and a run starts on a byte, its bytes are built for all
// columns at once (vectorised across columns) and copied out byte by byte; other runs go through write_codes /
// read_codes. `scratch` holds n * width bytes.
void write_columns(std::uint8_t* stream, const std::uint8_t* tile, std::int64_t n, std::int64_t width, unsigned bits,
                   const std::uint64_t* col_bit, std::uint8_t* scratch);
void read_columns(const std::uint8_t* stream, std::uint8_t* tile, std::int64_t n, std::int64_t width, unsigned bits,
                  const std::uint64_t* col_bit, std::uint8_t* scratch);

}  // namespace vidkv::code_stream
