// Staged codes of the fast decode-attention kernel (decode_attention.cu): per tile, a child's codes are read a run at
// a time into 32-bit words instead of one element at a time through view_code, so that the kernel's inner loops
// extract a code with a shift and a mask. Host-device, C++17; tests/cpp/test_decode_attention.cpp checks every staged
// code against view_code (decode_attention_format.h) for every layout, bit width and offset.
//
// Two kinds of runs:
//   row runs (channel-axis children: keys, per-channel values): the codes of tokens [tr0, tr0 + n) (n <= 32) of one
//     row (a channel or FFT component of a KV head), code of token tr0 + j at bits [b j, b j + b) of the run, i.e.
//     word (b j) / 32, shift (b j) % 32 of up to b words (b = staged_bits: 1, 2 or 4);
//   token runs (token-axis children: KIVI's per-token values): the codes of channels [c0, c0 + count) of one token's
//     row, code of channel c0 + i at bits [b i, b i + b) of one word (count b <= 32).
// Ternary children are staged as their stored code t + 1 in 2-bit slots (base3's 5 trits per byte unpacked).
#pragma once

#include <cstdint>

#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

namespace vidkv::attention_staging {

namespace af = attention_format;

// Largest staged code width: a row run of 32 tokens is at most 4 words.
constexpr unsigned kMaxStagedBits = 4;
constexpr unsigned kMaxRowWords = kMaxStagedBits;

// Bits per code in the staged words, or 0 when the child is not staged (identity; uniform with 3, 5-8 bits).
VIDKV_HOST_DEVICE inline unsigned staged_bits(const af::ChildFormat& f) {
  switch (f.codec) {
    case af::ChildCodec::uniform: return (f.bits == 1 || f.bits == 2 || f.bits == 4) ? f.bits : 0u;
    case af::ChildCodec::sign: return 1u;
    case af::ChildCodec::ternary: return 2u;
    default: return 0u;
  }
}

// Bits [start, start + nbits) (nbits <= 128) of a byte stream as little-endian words out[0..ceil(nbits / 32)), bits
// past nbits zero. Composite children start at any byte, so no alignment is assumed. On the host: only the bytes
// that hold those bits are read. On the device: the aligned 32-bit words that hold them (one load per word instead of
// one per byte; an aligned word that holds a byte of an allocation lies inside it, as device memory is mapped in
// pages), joined with funnel shifts.
VIDKV_HOST_DEVICE inline void read_bit_run(const std::uint8_t* bytes, std::int64_t start, unsigned nbits, std::uint32_t* out) {
  const unsigned words = (nbits + 31) / 32;
#if defined(__CUDA_ARCH__)
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(bytes + (start >> 3));
  const auto* w = reinterpret_cast<const std::uint32_t*>(at & ~std::uintptr_t{3});
  const unsigned off = static_cast<unsigned>((at & 3u) * 8u + static_cast<unsigned>(start & 7));  // 0..31
  const unsigned needed = (off + nbits + 31) / 32;
  std::uint32_t lo = w[0];
  for (unsigned k = 0; k < words; ++k) {
    const std::uint32_t hi = k + 1 < needed ? w[k + 1] : 0u;
    std::uint32_t v = __funnelshift_r(lo, hi, off);
    const unsigned left = nbits - 32 * k;
    if (left < 32) v &= (1u << left) - 1u;
    out[k] = v;
    lo = hi;
  }
#else
  const std::int64_t first = start >> 3, last = (start + nbits - 1) >> 3;
  const unsigned shift = static_cast<unsigned>(start & 7);
  for (unsigned k = 0; k < words; ++k) {
    // Bytes first + 4k .. first + 4k + 4 hold bits 32k .. 32k + 31 of the run (shifted by `shift`).
    std::uint64_t v = 0;
    for (unsigned i = 0; i < 5; ++i) {
      const std::int64_t b = first + 4 * static_cast<std::int64_t>(k) + i;
      if (b <= last) v |= static_cast<std::uint64_t>(bytes[b]) << (8 * i);
    }
    std::uint32_t w = static_cast<std::uint32_t>(v >> shift);
    const unsigned left = nbits - 32 * k;
    if (left < 32) w &= (1u << left) - 1u;
    out[k] = w;
  }
#endif
}

// Group metadata (scale, min) of a child, as view_meta reads it; on the device an aligned scalar is one load.
VIDKV_HOST_DEVICE inline af::Meta staged_meta(const af::ChildView& v, std::int64_t gi) {
#if defined(__CUDA_ARCH__)
  af::Meta m;
  if (!af::has_meta(v.f)) return m;
  const int size = dtype_size(v.f.scale_dtype);
  const bool aligned = reinterpret_cast<std::uintptr_t>(v.scales) % static_cast<std::uintptr_t>(size) == 0 &&
                       (v.f.codec != af::ChildCodec::uniform ||
                        reinterpret_cast<std::uintptr_t>(v.mins) % static_cast<std::uintptr_t>(size) == 0);
  if (!aligned) return af::view_meta(v, gi);
  m.scale = load_as_float(v.scales, v.f.scale_dtype, static_cast<std::size_t>(gi));
  if (v.f.codec == af::ChildCodec::uniform) m.mn = load_as_float(v.mins, v.f.scale_dtype, static_cast<std::size_t>(gi));
  return m;
#else
  return af::view_meta(v, gi);
#endif
}

// Ternary base3 codes (t + 1) of elements [idx, idx + n) (n <= 32) of the child's element stream (5 trits per byte,
// trit i of a byte = digit i in base 3), into 2-bit slots from slot 0 of out. slots: the kernels' table of
// ternary_format::base3_byte_slots for every byte value (filled once per thread block in shared memory: one read per
// byte), or nullptr to divide per trit.
VIDKV_HOST_DEVICE inline void read_trit_run(const std::uint8_t* bytes, std::int64_t idx, int n, std::uint32_t* out,
                                            const std::uint16_t* slots = nullptr) {
  const int words = (2 * n + 31) / 32;
  for (int k = 0; k < words; ++k) out[k] = 0;
  const std::int64_t first = idx / 5;
  const unsigned digit = static_cast<unsigned>(idx % 5);
  // The bytes [first, first + nb) that hold the run: at most 8 for n <= 32, read a word at a time on the device.
  const int nb = static_cast<int>((idx + n - 1) / 5 - first) + 1;
  std::uint32_t held[3] = {0, 0, 0};
  read_bit_run(bytes, first * 8, static_cast<unsigned>(8 * nb), held);
  if (slots) {
    // Every byte's 5 slots back to back (10 bits a byte, at most 80 bits), then the run from slot `digit`.
    std::uint32_t all[3] = {0, 0, 0};
    for (int k = 0; k < nb; ++k) {
      const std::uint32_t sl = slots[(held[k / 4] >> (8 * (k % 4))) & 0xffu];
      const unsigned pos = 10u * static_cast<unsigned>(k), w = pos / 32, sh = pos % 32;
      all[w] |= sl << sh;
      if (sh > 22) all[w + 1] |= sl >> (32 - sh);
    }
    for (int k = 0; k < words; ++k) {
      const unsigned bit = 2 * digit + 32u * static_cast<unsigned>(k), w = bit / 32, sh = bit % 32;
      std::uint32_t v = sh ? (all[w] >> sh) | (w + 1 < 3 ? all[w + 1] << (32 - sh) : 0u) : all[w];
      const unsigned left = 2u * static_cast<unsigned>(n) - 32u * static_cast<unsigned>(k);
      if (left < 32) v &= (1u << left) - 1u;
      out[k] = v;
    }
    return;
  }
  int byte = 0;
  unsigned d = digit;
  unsigned v = held[0] & 0xffu;
  for (unsigned q = 0; q < d; ++q) v /= 3u;
  for (int j = 0; j < n; ++j) {
    out[j / 16] |= (v % 3u) << (2 * (j % 16));  // stored trit digit = t + 1
    v /= 3u;
    if (++d == 5 && j + 1 < n) {
      d = 0;
      ++byte;
      v = (held[byte / 4] >> (8 * (byte % 4))) & 0xffu;
    }
  }
}

// Row run of a channel-axis child (slots: see read_trit_run): tokens [tr0, tr0 + n) of row i (channel or component index inside the child) of
// the view's KV head. out: ceil(n b / 32) words, b = staged_bits(v.f).
VIDKV_HOST_DEVICE inline void row_run(const af::ChildView& v, std::int64_t tr0, int n, std::int64_t i, std::uint32_t* out,
                                      const std::uint16_t* slots = nullptr) {
  const std::int64_t row = v.head * v.rows + i;
  if (v.f.codec == af::ChildCodec::ternary && v.code_bits == 0) {
    read_trit_run(v.codes, row * v.length + tr0, n, out, slots);
    return;
  }
  const unsigned b = staged_bits(v.f);
  if (v.f.layout == group_format::CodeLayout::dense) {
    read_bit_run(v.codes, (row * v.length + tr0) * b, static_cast<unsigned>(n) * b, out);
    return;
  }
  for (unsigned k = 0; k < (static_cast<unsigned>(n) * b + 31) / 32; ++k) out[k] = 0;
  for (int j = 0; j < n; ++j) out[(j * b) / 32] |= af::view_code(v, tr0 + j, i) << ((j * b) % 32);
}

// Token run of a token-axis child: channels [c0, c0 + count) (count b <= 32) of token row tr (token of the block).
VIDKV_HOST_DEVICE inline std::uint32_t token_run(const af::ChildView& v, std::int64_t tr, std::int64_t c0, int count,
                                                const std::uint16_t* slots = nullptr) {
  const std::int64_t row = v.head * v.rows + tr;
  std::uint32_t w = 0;
  if (v.f.codec == af::ChildCodec::ternary && v.code_bits == 0) {
    read_trit_run(v.codes, row * v.length + c0, count, &w, slots);
    return w;
  }
  const unsigned b = staged_bits(v.f);
  if (v.f.layout == group_format::CodeLayout::dense) {
    read_bit_run(v.codes, (row * v.length + c0) * b, static_cast<unsigned>(count) * b, &w);
    return w;
  }
  for (int i = 0; i < count; ++i) w |= af::view_code(v, tr, c0 + i) << (i * b);
  return w;
}

// Code j of a run (word (b j) / 32, shift (b j) % 32).
VIDKV_HOST_DEVICE inline unsigned run_code(const std::uint32_t* words, unsigned b, unsigned j) {
  return (words[(b * j) >> 5] >> ((b * j) & 31u)) & ((1u << b) - 1u);
}

}  // namespace vidkv::attention_staging
