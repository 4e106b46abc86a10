// The bit-level packing primitives every packed format is built from, shared by host and CUDA code.
//
// Project layout ("dense"): codes of `bits` bits form one little-endian bitstream, code j at stream bits
//   [bits*j, bits*j + bits), stream bit k in byte k/8 at bit k%8. No padding between codes; the stream is
//   padded with zero bits to a whole byte at the end: ceil(n * bits / 8) bytes for n codes.
// Release layout (algorithms.md 2.4): f = 32 / bits codes per uint32 word (bits in {1, 2, 4, 8}), least significant
//   bits first: code j in word j / f at bits [bits*(j mod f), +bits); a row of n codes takes ceil(n / f) words,
//   stored little-endian. Ternary values use 2-bit slots holding t + 1.
// Trits ("base3"): 5 trits per byte, byte = sum_i (t_i + 1) * 3^i for i = 0..4 (max 242), so 1.6 bits per trit;
//   a final partial byte holds the remaining trits in its low digits; absent digits are 0 and never read.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/host_device.h"

namespace vidkv::bits {

// Bytes of a dense bitstream of n codes of `bits` bits.
VIDKV_HOST_DEVICE constexpr std::size_t dense_bytes(std::size_t n, unsigned bits) { return (n * bits + 7) / 8; }

// Writes code (< 2^bits) at index j of a dense stream. The stream must start zeroed; bits <= 8.
VIDKV_HOST_DEVICE inline void dense_put(std::uint8_t* stream, std::size_t j, unsigned bits, unsigned code) {
  const std::size_t bit = j * bits;
  const unsigned shift = static_cast<unsigned>(bit & 7u);
  const unsigned wide = code << shift;  // at most 15 significant bits
  stream[bit >> 3] = static_cast<std::uint8_t>(stream[bit >> 3] | (wide & 0xffu));
  if (shift + bits > 8) stream[(bit >> 3) + 1] = static_cast<std::uint8_t>(stream[(bit >> 3) + 1] | (wide >> 8));
}

// Reads the code of `bits` bits (<= 8) that starts at bit offset `bit` of a dense stream (a walk that steps its
// offset instead of multiplying an index: the decode attention's general kernel).
VIDKV_HOST_DEVICE inline unsigned dense_get_at_bit(const std::uint8_t* stream, std::size_t bit, unsigned bits) {
  const unsigned shift = static_cast<unsigned>(bit & 7u);
  unsigned wide = stream[bit >> 3];
  if (shift + bits > 8) wide |= static_cast<unsigned>(stream[(bit >> 3) + 1]) << 8;
  return (wide >> shift) & ((1u << bits) - 1u);
}

// Reads the code at index j of a dense stream.
VIDKV_HOST_DEVICE inline unsigned dense_get(const std::uint8_t* stream, std::size_t j, unsigned bits) {
  return dense_get_at_bit(stream, j * bits, bits);
}

// Codes per uint32 word in the release layout.
VIDKV_HOST_DEVICE constexpr unsigned release_codes_per_word(unsigned bits) { return 32u / bits; }
// uint32 words of one release row of n codes.
VIDKV_HOST_DEVICE constexpr std::size_t release_words(std::size_t n, unsigned bits) {
  return (n + release_codes_per_word(bits) - 1) / release_codes_per_word(bits);
}

// Writes code at index j of a release row (words must start zeroed).
VIDKV_HOST_DEVICE inline void release_put(std::uint32_t* words, std::size_t j, unsigned bits, unsigned code) {
  const unsigned f = release_codes_per_word(bits);
  words[j / f] |= static_cast<std::uint32_t>(code) << (bits * static_cast<unsigned>(j % f));
}

VIDKV_HOST_DEVICE inline unsigned release_get(const std::uint32_t* words, std::size_t j, unsigned bits) {
  const unsigned f = release_codes_per_word(bits);
  const std::uint32_t mask = bits == 32 ? 0xffffffffu : ((1u << bits) - 1u);
  return static_cast<unsigned>((words[j / f] >> (bits * static_cast<unsigned>(j % f))) & mask);
}

// Bytes of n trits packed 5 per byte.
VIDKV_HOST_DEVICE constexpr std::size_t trit_bytes(std::size_t n) { return (n + 4) / 5; }

// Packs 5 (or fewer, `count`) trits t in {-1, 0, +1} into one byte.
VIDKV_HOST_DEVICE inline std::uint8_t trit_pack5(const std::int8_t* t, unsigned count) {
  unsigned v = 0;
  for (unsigned i = count; i-- > 0;) v = v * 3u + static_cast<unsigned>(t[i] + 1);
  return static_cast<std::uint8_t>(v);
}

// Unpacks the trit at slot i (0..4) of a byte.
VIDKV_HOST_DEVICE inline int trit_get(std::uint8_t byte, unsigned i) {
  unsigned v = byte;
  for (unsigned k = 0; k < i; ++k) v /= 3u;
  return static_cast<int>(v % 3u) - 1;
}

}  // namespace vidkv::bits
