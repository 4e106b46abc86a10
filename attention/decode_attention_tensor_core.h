// The tensor-core path of fused decode attention (decode_attention_tensor_core.cu): which formats it takes, and the
// host-device pieces it is built from, so that the [cpu] tests check them without a GPU. C++17, no CUDA headers.
//
// Every code the fast tiles hold decodes to an affine function of the stored integer code, exactly in fp32 (equal values; a zero's sign aside):
//   uniform        q * scale + mn                     a = scale,   zero 0, b = mn
//   sign zero_one  bit ? s : 0                        a = s,       zero 0, b = 0
//   sign symmetric bit ? s : -s  (= 2s bit - s)       a = 2 s,     zero 0, b = -s
//   ternary        t = code - 1, or t * u (scaled)    a = 1 or u,  zero 1, b = 0
// element = a * (code - zero) + b, the same fp32 operations as the plugins' decode (code_affine; a [cpu] test checks
// every code of every format). Small integers code - zero are exact in bf16, so the dot products over a
// tile run as bf16 tensor-core MMAs (mma.sync m16n8k16, fp32 accumulation) with the fp32 factor on the other side:
//   scores  s_t = sum_i (q_i a_i) (code_ti - z) + sum_i q_i b_i        (keys: a, b per part index i, the tile is one
//           group of every channel-axis key child)
//   values  o_c += a_c sum_t p_t (code_tc - z) + b_c sum_t p_t        (channel-axis values: a, b per channel)
//           o_c += sum_t (p_t a_tg) (code_tc - z) + sum_t p_t b_tg    (token-axis values: a, b per token and group g)
// The fp32 factor x (q_i a_i, p_t, p_t a_tg) enters the MMA as two bf16 terms hi + lo (split_bf16: |x - hi - lo| <=
// 2^-18 |x|). The tolerance this arithmetic needs is decode_attention_tolerance.h's tensor_cores one.
#pragma once

#include <cstdint>

#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/attention/decode_attention_staging.h"
#include "vidkv/attention/decode_attention_tables.h"
#include "vidkv/core/host_device.h"

namespace vidkv::attention_tensor_core {

namespace af = attention_format;

// Largest head_dim of the tensor-core kernel (its value accumulators: D / 16 MMA tiles of 4 registers per lane).
constexpr std::int64_t kMaxHeadDim = 128;

struct CodeAffine {
  float a = 1.0f, b = 0.0f;
  unsigned zero = 0;
};

// The affine form of a child's decode for a group's metadata m (see the top).
VIDKV_HOST_DEVICE inline CodeAffine code_affine(const af::ChildFormat& f, const af::Meta& m) {
  CodeAffine r;
  switch (f.codec) {
    case af::ChildCodec::uniform:
      r.a = m.scale;
      r.b = m.mn;
      break;
    case af::ChildCodec::sign:
      r.a = f.symmetric ? 2.0f * m.scale : m.scale;
      r.b = f.symmetric ? -m.scale : 0.0f;
      break;
    default:  // ternary
      r.a = f.scaled ? m.scale : 1.0f;
      r.zero = 1;
      break;
  }
  return r;
}

// The element code_affine gives: a * (code - zero) + b in fp32 (one product, one sum; compiled without contraction).
VIDKV_HOST_DEVICE inline float affine_value(const CodeAffine& c, unsigned code) {
  const float k = static_cast<float>(static_cast<int>(code) - static_cast<int>(c.zero));
  return k * c.a + c.b;
}

// Whether a child's codes can enter the MMAs: 1- or 2-bit staged codes (uniform 1/2 bits, sign, ternary), not
// identity. Key children must also be channel-axis and not ternary (zero 0: the score's bias stays sum q b).
VIDKV_HOST_DEVICE inline bool child_ok(const af::ChildFormat& f, bool key) {
  const unsigned b = attention_staging::staged_bits(f);
  if (f.codec == af::ChildCodec::identity || (b != 1 && b != 2)) return false;
  if (key) return f.axis == group_format::GroupAxis::channel && f.codec != af::ChildCodec::ternary;
  return true;
}

// Whether the tensor-core kernel takes the fast tiles (tile_is_fast) of p: head_dim a multiple of 16 up to
// kMaxHeadDim, key children as child_ok, plain values as child_ok whose token-axis groups are multiples of 16
// channels (one group per MMA tile of 16 channels).
VIDKV_HOST_DEVICE inline bool formats_ok(const attention_tables::Problem& p) {
  if (p.channels % 16 != 0 || p.channels > kMaxHeadDim) return false;
  if (!attention_tables::fast_kernels_read(p)) return false;
  if (!child_ok(p.key.first, true) || (p.key.mixed && !child_ok(p.key.second, true))) return false;
  if (p.value.mixed || !child_ok(p.value.first, false)) return false;
  return p.value.first.axis == group_format::GroupAxis::channel || p.value.first.group % 16 == 0;
}

// The 16 1-bit codes of x's low half into 2-bit slots (code j at bits [2 j, 2 j + 2)).
VIDKV_HOST_DEVICE inline std::uint32_t spread_bits(std::uint32_t x) {
  x &= 0xffffu;
  x = (x | (x << 8)) & 0x00ff00ffu;
  x = (x | (x << 4)) & 0x0f0f0f0fu;
  x = (x | (x << 2)) & 0x33333333u;
  x = (x | (x << 1)) & 0x55555555u;
  return x;
}

// A staged run of 32 codes (b = 1: one word; b = 2: two words) as 2-bit slots in two words: code j at bits
// [2 (j % 16), 2 (j % 16) + 2) of word j / 16. In place.
VIDKV_HOST_DEVICE inline void to_slots(std::uint32_t (&w)[attention_staging::kMaxRowWords], unsigned b) {
  if (b == 1) {
    const std::uint32_t x = w[0];
    w[0] = spread_bits(x);
    w[1] = spread_bits(x >> 16);
  }
}

// A word of 16 2-bit slots (codes of tokens 0..15) with the pairs taken apart for the value MMA's A fragment: token
// 2 j to slot j, token 2 j + 1 to slot j + 8, so that (w >> 2 j) & 0x00030003 holds tokens 2 j and 2 j + 1 in its
// two halves.
VIDKV_HOST_DEVICE inline std::uint32_t unzip_pairs(std::uint32_t w) {
  auto compress = [](std::uint32_t x) {  // the 2-bit fields at bits 4k, k = 0..7, to bits 2k
    x &= 0x33333333u;
    x = (x | (x >> 2)) & 0x0f0f0f0fu;
    x = (x | (x >> 4)) & 0x00ff00ffu;
    x = (x | (x >> 8)) & 0x0000ffffu;
    return x;
  };
  return compress(w) | (compress(w >> 2) << 16);
}

}  // namespace vidkv::attention_tensor_core
