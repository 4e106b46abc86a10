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

// The bytes of a base3 run: elements [idx, idx + n) (1 <= n <= 32) of the child's element stream (5 trits per byte)
// lie in bytes [idx / 5, idx / 5 + nb), nb <= 8, returned in the low nb bytes (the bytes above are not read by the
// callers), the run's first trit being digit idx % 5 of the first byte.
struct TritBytes {
  std::uint64_t bytes;
  unsigned digit;
  int nb;
};
VIDKV_HOST_DEVICE inline TritBytes trit_run_bytes(const std::uint8_t* bytes, std::int64_t idx, int n) {
  TritBytes r;
  const std::int64_t first = idx / 5;
  r.digit = static_cast<unsigned>(idx % 5);
  r.nb = static_cast<int>((idx + n - 1) / 5 - first) + 1;
#if defined(__CUDA_ARCH__)
  // The aligned words holding them (1 to 3; see read_bit_run), joined with funnel shifts, without an array.
  const std::uintptr_t at = reinterpret_cast<std::uintptr_t>(bytes + first);
  const auto* wp = reinterpret_cast<const std::uint32_t*>(at & ~std::uintptr_t{3});
  const unsigned off = static_cast<unsigned>(at & 3u) * 8u;
  const unsigned needed = (off + 8u * static_cast<unsigned>(r.nb) + 31u) / 32u;
  const std::uint32_t w0 = wp[0], w1 = needed > 1 ? wp[1] : 0u, w2 = needed > 2 ? wp[2] : 0u;
  r.bytes = static_cast<std::uint64_t>(__funnelshift_r(w0, w1, off)) | (static_cast<std::uint64_t>(__funnelshift_r(w1, w2, off)) << 32);
#else
  std::uint32_t held[3] = {0, 0, 0};
  read_bit_run(bytes, first * 8, static_cast<unsigned>(8 * r.nb), held);
  r.bytes = static_cast<std::uint64_t>(held[0]) | (static_cast<std::uint64_t>(held[1]) << 32);
#endif
  return r;
}

// Ternary base3 codes (t + 1) of elements [idx, idx + n) (1 <= n <= 32) of the child's element stream (5 trits per
// byte, trit i of a byte = digit i in base 3), into 2-bit slots from slot 0 of out (ceil(2 n / 32) words), through
// `slots`: the kernels' table of ternary_format::base3_byte_slots for every byte value (filled once per thread block
// in shared memory: one read per byte). Every byte's 5 slots back to back (10 bits a byte, at most 80 bits: `lo` bits
// 0..63, `hi` bits 64..79), then the run from slot `digit`; unrolled over the 8 possible bytes so that every index is
// a constant (on the device the words stay in registers; a run-time index would move them to local memory).
VIDKV_HOST_DEVICE inline void read_trit_run_table(const std::uint8_t* bytes, std::int64_t idx, int n, std::uint32_t* out,
                                                  const std::uint16_t* slots) {
  const TritBytes tb = trit_run_bytes(bytes, idx, n);
  std::uint64_t lo = 0;
  std::uint32_t hi = 0;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 0; k < 8; ++k) {
    if (k >= tb.nb) break;
    const std::uint64_t sl = slots[(tb.bytes >> (8 * k)) & 0xffu];
    const int pos = 10 * k;
    if (pos < 64) lo |= sl << pos;
    if (pos + 10 > 64) hi |= static_cast<std::uint32_t>(pos >= 64 ? sl << (pos - 64) : sl >> (64 - pos));
  }
  const unsigned sh = 2u * tb.digit;  // 0..8
  const std::uint32_t r0 = static_cast<std::uint32_t>(lo >> sh);
  const std::uint32_t r1 = static_cast<std::uint32_t>((lo >> (32u + sh)) | (static_cast<std::uint64_t>(hi) << (32u - sh)));
  const unsigned bits = 2u * static_cast<unsigned>(n);  // 2..64
  out[0] = bits < 32 ? r0 & ((1u << bits) - 1u) : r0;
  if (bits > 32) out[1] = bits < 64 ? r1 & ((1u << (bits - 32u)) - 1u) : r1;
}

// read_trit_run_table's codes; with slots == nullptr by dividing per trit (the host tests' second derivation).
VIDKV_HOST_DEVICE inline void read_trit_run(const std::uint8_t* bytes, std::int64_t idx, int n, std::uint32_t* out,
                                            const std::uint16_t* slots = nullptr) {
  if (slots) {
    read_trit_run_table(bytes, idx, n, out, slots);
    return;
  }
  const int words = (2 * n + 31) / 32;
  for (int k = 0; k < words; ++k) out[k] = 0;
  const TritBytes tb = trit_run_bytes(bytes, idx, n);
  int byte = 0;
  unsigned d = tb.digit;
  unsigned v = static_cast<unsigned>(tb.bytes & 0xffu);
  for (unsigned q = 0; q < d; ++q) v /= 3u;
  for (int j = 0; j < n; ++j) {
    out[j / 16] |= (v % 3u) << (2 * (j % 16));  // stored trit digit = t + 1
    v /= 3u;
    if (++d == 5 && j + 1 < n) {
      d = 0;
      ++byte;
      v = static_cast<unsigned>((tb.bytes >> (8 * byte)) & 0xffu);
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
    std::uint32_t run[2] = {0u, 0u};  // read_trit_run writes ceil(2 count / 32) <= 1 words; sized for its signature
    read_trit_run(v.codes, row * v.length + c0, count, run, slots);
    return run[0];
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
