// The fragment kernel of fused decode attention (decode_attention_cuda.h launch_fragment; formats and arithmetic:
// decode_attention_fragment.h). C++17, sm_80 and newer (mma.sync m16n8k16 f16).
//
// One thread block of kWarps warps per (split, KV head, sequence), as the other split kernels; warp w takes tiles w,
// w + kWarps, ... of the split's fast tiles, each a whole 32-token tile of the fragment layout on both sides
// (attention_tables::fragment_tile; a query row whose causal limit falls inside one sees its first n tokens only:
// mask_cut_tile). Per tile the warp
//   1. has the tile's bytes in shared memory, copied there by cp.async during the previous tile: per side the 2 D code
//      words (a lane's D / 16 words are its quads: it reads only its own), the keys' D scales and D mins of the tile's
//      token group (2 D contiguous bytes each: the layout stores key metadata group-major, group_format::
//      group_major_meta), copied word by word into the order the lanes read them (key_meta_slot: a lane's D / 8
//      words of each are D / 32 LDS.128), and the values' scales and mins of the 32 tokens (contiguous: token-major).
//      The copies' addresses are affine in the tile's first token (one multiply-add per run, run_at) from per-lane
//      bases set when a tile's block changes (KiviSources, out of line: the loop's code stays small), the
//      destinations 32-bit shared addresses fixed per lane (KiviDestinations);
//   2. scores: per 16-channel chunk kc, A = the codes [16 tokens x 16 channels] straight from the lane's words
//      (code_pair: one LOP3 mask per register, the codes as fp16 subnormals, each MMA row's factor 2^-20 or 2^-18
//      undone in fp32 by row_unscale), B = hmul2(q'', scale) [16 channels x 8
//      heads] with the query held as fp16 pairs q'' = fp16(q / 2^e), into two accumulators per 16 tokens (even and
//      odd chunks: shorter dependent MMA chains); the mins' term sum_c min_c q''_c by D / 16 MMAs with A = the mins
//      and B = q'' itself (exact products); times 2^e log2(e) / sqrt(D) per head;
//   3. online softmax in fp32 (exp2_ftz: the scores are in log2 units; the accumulators' rescale skipped when no head's
//      running max moved), the probabilities as fp16 pairs p~ moved into the B layout (head g, tokens 2 t4 (+1, +8,
//      +9)) by an 8 x 8 transpose in registers (transpose_pairs);
//   4. values: per 16-channel tile mv and 16-token chunk kt, A = codes [16 channels x 16 tokens] (code_pair), B =
//      hmul2(p~, scale) of the tile's group (value_scale_pairs: a token pair's scales of every group in one vector
//      load, paired by PRMT); the mins' term sum_t p~_t min_tg of every group at once by two MMAs with A = the mins
//      [groups x tokens] and B = p~ itself into a separate accumulator (accm), added to each channel of its group
//      after the last tile, when the code sums take their row_unscale.
// The next tile's table entry is loaded one iteration before its copies are issued.
// The warps' partials merge in shared memory (merge_warp_partials) into split partial blockIdx.x.
// A second instance, fragment_vidkv_kernel (below), reads VidKV's formats (attention_fragment::FragmentFormats::
// vidkv): the same loop with 64 high key channels as above, 64 low FFT components as 1-bit codes against the query
// carried into the block's coordinates, and ternary values without metadata.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

#include "vidkv/attention/decode_attention_cuda.h"
#include "vidkv/attention/decode_attention_device.cuh"
#include "vidkv/attention/decode_attention_fragment.h"
#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/kernel_occupancy.h"
#include "vidkv/core/error.h"

namespace vidkv::attention_cuda {

namespace {

using namespace device;
using namespace attention_tables;
namespace fr = attention_fragment;
using cuda_async::copy16;
using cuda_async::copy8;
using cuda_async::copy4;

constexpr int kTile = static_cast<int>(group_format::kFragmentTileTokens);  // 32 tokens

// Per-warp shared memory in 32-bit words: two slots (the tile being computed, the next one arriving), each key codes
// [2 D], value codes [2 D], key scales [D / 2] and mins [D / 2] (fp16 pairs: channels 2 i, 2 i + 1 in word i), value
// scales and mins [kValueMetaWords] each. Every piece a multiple of 4 words (16-byte aligned). (The probabilities
// go from the scores' layout to the values' B operand in registers: softmax_tile.)
constexpr int kValueMetaWords = 132;  // 32 tokens x at most 8 groups of fp16 = 128 words, + 1 for a half-word start
// The key scales (and the mins) in the order the lanes read them (fr::key_meta_slot): 4 rows of
// fr::key_meta_stride(D) words per section.
template <int D>
struct WarpLayout {
  static constexpr int kCodes = 2 * D;
  static constexpr int kKeyScale = 2 * kCodes, kKeyMin = kKeyScale + 4 * fr::key_meta_stride(D);
  static constexpr int kValueScale = kKeyMin + 4 * fr::key_meta_stride(D), kValueMin = kValueScale + kValueMetaWords;
  static constexpr int kSlot = kValueMin + kValueMetaWords;
  static constexpr int kWarp = 2 * kSlot;
  static_assert(kSlot % 4 == 0 && kWarp % 4 == 0, "16-byte pieces");
};
template <int D>
constexpr std::size_t smem_bytes() {
  return sizeof(std::uint32_t) * static_cast<std::size_t>(kWarps) * WarpLayout<D>::kWarp;
}
static_assert(smem_bytes<128>() >= sizeof(float) * kWarps * kMaxQ * (128 + 2), "the warps' partials fit");
static_assert(smem_bytes<64>() >= sizeof(float) * kWarps * kMaxQ * (64 + 2), "the warps' partials fit");

// D += A B for one m16n8k16 tile, fp16 A and B, fp32 D (PTX ISA, "Matrix fragments for mma.m16n8k16": a0 row g,
// columns 2 t4 and + 1; a1 row g + 8; a2, a3 columns + 8; b0 rows 2 t4 and + 1, column g; b1 rows + 8; d0, d1 row g,
// columns 2 t4 and + 1; d2, d3 row g + 8).
__device__ __forceinline__ void mma_f16(float (&d)[4], unsigned a0, unsigned a1, unsigned a2, unsigned a3, unsigned b0,
                                        unsigned b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1));
}

__device__ __forceinline__ unsigned pack_half2(float lo, float hi) {
  const __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<const unsigned*>(&h);
}

// Field j of a lane word of `bits`-bit codes (2: fields 0-7, 1: 0-15) as an A register: the fp16 pair
// code x 2^(s - 24), one LOP3 after the word's shift (fr::subnormal_code_pair: an fp16 subnormal, exact; the compiler
// forms each shifted word once). Row g's codes are all at s = fr::subnormal_row_shift(0, bits) (2-bit: 4, 1-bit: 8)
// and row g + 8's at subnormal_row_shift(1, bits) (6, 9), so accumulator entry r of an MMA on such registers holds
// its code sums times 2^(s - 24) of row half r / 2, undone by the exact fp32 factor row_unscale<bits>(r). The tensor
// cores do not flush the subnormals, but they sum their products less precisely than those of normal codes (aligned
// by the inputs' exponent fields, a subnormal's taken at 2^-14: hence codes near the top of the subnormal range):
// decode_attention_tolerance.h 6.'s last paragraph bounds it, fragment_operand_check's [cuda] test checks the bound.
template <int j, int bits = 2>
__device__ __forceinline__ unsigned code_pair(unsigned w) {
  return fr::subnormal_code_pair(w, j, bits);
}
template <int bits = 2>
__device__ __forceinline__ constexpr float row_unscale(int r) {
  return fr::subnormal_unscale(r >> 1, bits);
}

// fp16 1.0 in both halves: the A operand whose MMA with B = p~ sums the probabilities (the vidkv instance's trits).
constexpr unsigned kOnePair = 0x3C003C00u;

// base + t x bytes as an address: one IMAD.WIDE.U32 (PTX mad.wide.u32; written in C++ the compiler shifts and masks
// a 64-bit token instead). t below 2^32 (a sequence's token or a block's token group).
template <unsigned bytes>
__device__ __forceinline__ const char* run_at(std::int64_t base, std::uint32_t t) {
  std::uint64_t a;
  asm("mad.wide.u32 %0, %1, %2, %3;" : "=l"(a) : "r"(t), "n"(bytes), "l"(base));
  return reinterpret_cast<const char*>(a);
}

// Where this lane's copies of a tile come from, for the warp's current key block and value block of KV head h (the
// kivi instance; recomputed when a tile's block changes: kivi_key_sources, kivi_value_sources): integer addresses
// affine in the tile's first (sequence) token t0 < 2^32, so that a tile's copies need one multiply-add per run.
//   codes: t's D / 4 bytes (group_format.h: token-major, per token and head) at codes + t D / 4, this lane's first
//     quad at + 16 lane (its others 512 bytes apart);
//   keys' metadata: group gi = (t - begin) / group of the block (group-major: fr::key_meta_base, linear in gi) has
//     its D scales at key_scales + 2 D gi, its mins at key_mins + 2 D gi, this lane's word at + 4 lane;
//   values' metadata: t's G groups at value_scales + 2 G t and value_mins + 2 G t (token-major:
//     fr::value_meta_base, linear in t), the whole run copied by the warp.
struct KiviSources {
  std::int32_t key_block = -1, value_block = -1;
  std::int64_t key_codes = 0, value_codes = 0, key_scales = 0, key_mins = 0, value_scales = 0, value_mins = 0;
  std::uint32_t begin = 0, group = 1;
  int group_shift = -1;  // log2(group) where a power of two (a shift instead of a division)
};

template <int D>
__device__ __noinline__ KiviSources kivi_key_sources(KiviSources s, const Problem& p, std::int64_t h, std::int32_t index, int lane) {
  const BlockEntry e = p.key_blocks[index];
  const af::ChildView v = af::child_view(p.key.first, e.bytes, p.heads, e.tokens, D, 0);
  const std::int64_t meta = 2 * fr::key_meta_base(h, v.groups_per_row, 0, D) + 4 * lane;
  s.key_block = index;
  s.key_codes = reinterpret_cast<std::int64_t>(v.codes) + (h * e.tokens - e.begin) * (D / 4) + 16 * lane;
  s.key_scales = reinterpret_cast<std::int64_t>(v.scales) + meta;
  s.key_mins = reinterpret_cast<std::int64_t>(v.mins) + meta;
  s.begin = static_cast<std::uint32_t>(e.begin);
  s.group = static_cast<std::uint32_t>(p.key.first.group);
  s.group_shift = v.group_shift;
  return s;
}
template <int D>
__device__ __noinline__ KiviSources kivi_value_sources(KiviSources s, const Problem& p, std::int64_t h, std::int32_t index, int lane) {
  const BlockEntry e = p.value_blocks[index];
  const af::ChildView v = af::child_view(p.value.first, e.bytes, p.heads, e.tokens, D, 0);
  const std::int64_t meta = 2 * fr::value_meta_base(h, e.tokens, -e.begin, v.groups_per_row);
  s.value_block = index;
  s.value_codes = reinterpret_cast<std::int64_t>(v.codes) + (h * e.tokens - e.begin) * (D / 4) + 16 * lane;
  s.value_scales = reinterpret_cast<std::int64_t>(v.scales) + meta;
  s.value_mins = reinterpret_cast<std::int64_t>(v.mins) + meta;
  return s;
}

// Where a tile's value metadata halves sit in the words copied for them: from byte value_scale / value_min of their
// area, token j's group gr at half j groups + gr. (The key metadata starts at a word, in the lanes' order:
// fr::key_meta_slot.)
struct TileMeta {
  int value_scale = 0, value_min = 0;
};

// This lane's shared-memory destinations in slot 0 of its warp (slot 1: + 4 kSlot bytes), as 32-bit shared
// addresses: its first quad of key codes (+ 16 lane; the value codes 4 kCodes bytes on) and its first word of each
// key metadata section (fr::key_meta_slot).
struct KiviDestinations {
  std::uint32_t slot0, quad, meta;
};
template <int D>
__device__ __forceinline__ KiviDestinations kivi_destinations(const std::uint32_t* wbase, int lane) {
  const auto slot0 = static_cast<std::uint32_t>(__cvta_generic_to_shared(wbase));
  return {slot0, slot0 + 16u * lane, slot0 + 4u * static_cast<std::uint32_t>(fr::key_meta_slot(lane, D))};
}

// Issues the copies of the tile at token t0 into the slot `offset` bytes from slot 0 (0 or 4 kSlot) and returns where
// its metadata halves sit. G: the value groups per token row (the kernel's constant, equal to the value block's
// groups_per_row).
template <int D, int G>
__device__ __forceinline__ TileMeta issue_tile(std::uint32_t offset, std::uint32_t t0, const KiviSources& s,
                                               const KiviDestinations& d, int lane) {
  using L = WarpLayout<D>;
  using namespace cuda_async;
  // Codes: 32 tokens x D channels x 2 bits = 2 D words (D / 64 quads per lane and side).
  const char* kc = run_at<D / 4>(s.key_codes, t0);
  const char* vc = run_at<D / 4>(s.value_codes, t0);
  // Key metadata of the group of t0 (2 D bytes per section, 16-byte aligned: attention_tables::fragment_tile): word
  // w = lane + 32 i of each section (channels 2 w, 2 w + 1) to fr::key_meta_slot(w) = fr::key_meta_slot(lane) + 8 i.
  const std::uint32_t tr0 = t0 - s.begin;
  const std::uint32_t kgroup = s.group_shift >= 0 ? tr0 >> s.group_shift : tr0 / s.group;
  const char* ksrc = run_at<2 * D>(s.key_scales, kgroup);
  const char* msrc = run_at<2 * D>(s.key_mins, kgroup);
  const std::uint32_t quad = d.quad + offset, meta = d.meta + offset, slot = d.slot0 + offset;
#pragma unroll
  for (int i = 0; i < D / 64; ++i) {
    copy16_shared(quad + 512 * i, kc + 512 * i);
    copy16_shared(quad + 4 * L::kCodes + 512 * i, vc + 512 * i);
    copy4_shared(meta + 4 * (L::kKeyScale + 8 * i), ksrc + 128 * i);
    copy4_shared(meta + 4 * (L::kKeyMin + 8 * i), msrc + 128 * i);
  }
  // Value metadata: tokens t0 .. + 31, every group: 32 G halves per section, contiguous (at most 256: value groups of
  // at least 16 channels, kValueMetaWords).
  const std::int64_t s0 = reinterpret_cast<std::int64_t>(run_at<2 * G>(s.value_scales, t0));
  const std::int64_t m0 = reinterpret_cast<std::int64_t>(run_at<2 * G>(s.value_mins, t0));
  constexpr int halves = kTile * G;
  if (((s0 | m0) & 15) == 0) {
    // Both runs 16-byte aligned (checked per tile: (h T + tr0) groups_per_row and the sections' starts multiples of
    // 8 halves, e.g. kivi-2-fragment's blocks of an even token count at head_dim 128): halves / 8 quads per section.
    constexpr int quads = halves / 8;
#pragma unroll
    for (int i = lane; i < 2 * quads; i += 32) {
      const bool mins = i >= quads;
      const int q = mins ? i - quads : i;
      copy16_shared(slot + 4 * (mins ? L::kValueMin : L::kValueScale) + 16 * q,
                    reinterpret_cast<const uint4*>(mins ? m0 : s0) + q);
    }
  } else {  // the aligned words holding the runs, 4 bytes at a time
    const int sw = (static_cast<int>(s0 & 3) + 2 * halves + 3) / 4;
    const int mw = (static_cast<int>(m0 & 3) + 2 * halves + 3) / 4;
    const std::uint32_t* sword = reinterpret_cast<const std::uint32_t*>(s0 & ~std::int64_t{3});
    const std::uint32_t* mword = reinterpret_cast<const std::uint32_t*>(m0 & ~std::int64_t{3});
    for (int i = lane; i < sw; i += 32) copy4_shared(slot + 4 * (L::kValueScale + i), sword + i);
    for (int i = lane; i < mw; i += 32) copy4_shared(slot + 4 * (L::kValueMin + i), mword + i);
  }
  TileMeta m;
  m.value_scale = static_cast<int>(s0 & 3);
  m.value_min = static_cast<int>(m0 & 3);
  return m;
}

// 2^x by the instruction exp2f itself uses (MUFU.EX2: libdevice's exp2f is ex2.approx, with the input halved and the
// result squared where it would be below 2^-126), without that subnormal path: one instruction instead of four.
// Results below 2^-126 flush to zero (x <= 0 here: a probability or a rescale factor, where fp16(p) is zero below
// 2^-25 anyway and 2^-126 of the sum L >= 1 is far below its fp32 rounding).
__device__ __forceinline__ float exp2_ftz(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

// The fp16 pair (lo, hi) of two fp16 values held in the low halves of a and b (PRMT).
__device__ __forceinline__ unsigned pair_lo(unsigned a, unsigned b) { return __byte_perm(a, b, 0x5410); }

__device__ __forceinline__ unsigned hmul2_u(unsigned a, unsigned b) {
  const __half2 h = __hmul2(*reinterpret_cast<const __half2*>(&a), *reinterpret_cast<const __half2*>(&b));
  return *reinterpret_cast<const unsigned*>(&h);
}

// The fp16 at byte `byte` of `base` in the low half of a 32-bit word (a 2-byte shared load).
__device__ __forceinline__ unsigned half_bits(const std::uint32_t* base, int byte) {
  return *reinterpret_cast<const unsigned short*>(reinterpret_cast<const char*>(base) + byte);
}

// The G 32-bit words at `w` (16-byte aligned where G is a multiple of 4, 8-byte where even), as few shared loads.
template <int G>
__device__ __forceinline__ void load_words(unsigned (&out)[G], const std::uint32_t* w) {
  if constexpr (G % 4 == 0) {
#pragma unroll
    for (int i = 0; i < G / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(w)[i];
      out[4 * i] = v.x;
      out[4 * i + 1] = v.y;
      out[4 * i + 2] = v.z;
      out[4 * i + 3] = v.w;
    }
  } else if constexpr (G % 2 == 0) {
#pragma unroll
    for (int i = 0; i < G / 2; ++i) {
      const uint2 v = reinterpret_cast<const uint2*>(w)[i];
      out[2 * i] = v.x;
      out[2 * i + 1] = v.y;
    }
  } else {
#pragma unroll
    for (int i = 0; i < G; ++i) out[i] = w[i];
  }
}

// The values' B operands bs[gr][kt][pr] = fp16(p~_j scale_jg, p~_j+1 scale_j+1,g) of the lane's token pairs j =
// 16 kt + 8 pr + 2 t4 (ph: the fp16 pairs p~ of the same tokens, head g) for every value group gr, from the tile's
// scales run `run` whose first half sits at byte `offset` (token j's group gr at half j G + gr). Where the run starts
// at a word (offset 0, as issue_tile's aligned copies leave it) a token pair's 2 G halves are the G words at word
// G j / 2, read by load_words and paired by PRMT; else by 2-byte loads, two per pair.
template <int G>
__device__ __forceinline__ void value_scale_pairs(unsigned (&bs)[G][2][2], const std::uint32_t* run, int offset, int t4,
                                                  const unsigned (&ph)[2][2]) {
  if (offset == 0) {
#pragma unroll
    for (int kt = 0; kt < 2; ++kt)
#pragma unroll
      for (int pr = 0; pr < 2; ++pr) {
        unsigned w[G];
        load_words<G>(w, run + G * (8 * kt + 4 * pr + t4));
#pragma unroll
        for (int gr = 0; gr < G; ++gr) {
          const unsigned pair = __byte_perm(w[fr::value_pair_word(gr, G, 0)], w[fr::value_pair_word(gr, G, 1)],
                                            fr::value_pair_selector(gr, G));
          bs[gr][kt][pr] = hmul2_u(ph[kt][pr], pair);
        }
      }
  } else {
    const int base = offset + 4 * t4 * G;  // bytes: the lane's token 2 t4
#pragma unroll
    for (int kt = 0; kt < 2; ++kt)
#pragma unroll
      for (int pr = 0; pr < 2; ++pr)
#pragma unroll
        for (int gr = 0; gr < G; ++gr) {
          const int i0 = base + 2 * ((16 * kt + 8 * pr) * G + gr), i1 = i0 + 2 * G;
          bs[gr][kt][pr] = hmul2_u(ph[kt][pr], pair_lo(half_bits(run, i0), half_bits(run, i1)));
        }
  }
}

// 1. of both instances: the query row of head g at this lane's B rows (qv[kc][pr], the lane's part of the row; big:
// the largest |element| of the lane's part) as fp16 pairs q'' = fp16(q 2^-e), e from the head's largest |element|
// (the four lanes t4 of head g: |q''| <= 1; exact for fp16 and bf16 queries down to fp16's normal range), so that
// fp16(q'' a) is one hmul2 and no factor can overflow; the scores are then (sum) x 2^e score_scale (`up` of heads
// 2 t4 and 2 t4 + 1, fp32). Warp-synchronous (shuffles).
template <int KC>
__device__ __forceinline__ void scaled_query(const float (&qv)[KC][2][2], float big, float score_scale, int t4,
                                             unsigned (&qh)[KC][2], float (&up)[2]) {
  big = fmaxf(big, __shfl_xor_sync(0xffffffffu, big, 1));
  big = fmaxf(big, __shfl_xor_sync(0xffffffffu, big, 2));
  int e = 0;
  if (big > 0.0f && isfinite(big)) frexpf(big, &e);  // big = f 2^e, f in [0.5, 1), e <= 128
  // A head whose largest |element| is below 2^-126 scores 0 to within 2^-125 anyway: e stays >= -125 so that
  // 2^-e and `up` below stay finite and exact (up = score_scale 2^e may be subnormal there, inside tolerance 6.'s 4u).
  e = max(e, -125);
#pragma unroll
  for (int kc = 0; kc < KC; ++kc)
#pragma unroll
    for (int pr = 0; pr < 2; ++pr) qh[kc][pr] = pack_half2(ldexpf(qv[kc][pr][0], -e), ldexpf(qv[kc][pr][1], -e));
  const float up_g = ldexpf(score_scale, e);
  up[0] = __shfl_sync(0xffffffffu, up_g, 8 * t4);
  up[1] = __shfl_sync(0xffffffffu, up_g, 8 * t4 + 4);
}

// 1. of the kivi instance and of fragment_residual_kernel: the query of head g (of KV head h, sequence b; zero for
// the padding heads g >= qpk) at this lane's B rows (channels 16 kc + 2 t4 (+1) and + 8 (+9)) as fp16 pairs q'' =
// fp16(q 2^-e) (scaled_query); the scores are then (sum) x 2^e log2(e) / sqrt(D) (`up`, fp32). Warp-synchronous.
template <int KC>
__device__ __forceinline__ void kivi_query(const Problem& p, std::int64_t b, std::int64_t h, int g, int t4, unsigned (&qh)[KC][2],
                                           float (&up)[2]) {
  const int Q = static_cast<int>(p.qpk);
  float qv[KC][2][2];
  float big = 0.0f;
#pragma unroll
  for (int kc = 0; kc < KC; ++kc)
#pragma unroll
    for (int pr = 0; pr < 2; ++pr) {
      const int c = 16 * kc + 2 * t4 + 8 * pr;
      float x = 0.0f, y = 0.0f;
      if (g < Q) {
        x = query_element(p, b, h * Q + g, c);
        y = query_element(p, b, h * Q + g, c + 1);
      }
      qv[kc][pr][0] = x;
      qv[kc][pr][1] = y;
      big = fmaxf(big, fmaxf(fabsf(x), fabsf(y)));
    }
  scaled_query(qv, big, p.score_scale, t4, qh, up);
}

// The keys' mins' term sum_c min_c q''_c per head times up (bias_up: heads 2 t4, 2 t4 + 1), the same for every token
// row of a tile's group, with A = the mins as loaded and B = the query itself: per chunk pair kc = 2 j, 2 j + 1 the
// quad mn[kc][pr] (A registers a0 a1 a2 a3 = pairs (2 j, 0), (2 j, 1), (2 j + 1, 0), (2 j + 1, 1)) against B =
// qh[2 j][0], qh[2 j + 1][0] into lo, whose row g (a0 b0 + a2 b1) sums channel pairs 16 kc + 2 t4, and against
// qh[2 j][1], qh[2 j + 1][1] into hi, whose row g + 8 (a1 b0 + a3 b1) sums pairs 16 kc + 8 + 2 t4; the other rows are
// unused. No register moves for A. mn[kc][pr]: the fp16 mins of channels 16 kc + 8 pr + 2 t4 and + 1.
template <int KC>
__device__ __forceinline__ void key_mins_term(const unsigned (&mn)[KC][2], const unsigned (&qh)[KC][2], const float (&up)[2],
                                              float (&bias_up)[2]) {
  static_assert(KC % 2 == 0, "chunk pairs");
  float lo[4] = {0.0f, 0.0f, 0.0f, 0.0f}, hi[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int j = 0; j < KC / 2; ++j) {
    mma_f16(lo, mn[2 * j][0], mn[2 * j][1], mn[2 * j + 1][0], mn[2 * j + 1][1], qh[2 * j][0], qh[2 * j + 1][0]);
    mma_f16(hi, mn[2 * j][0], mn[2 * j][1], mn[2 * j + 1][0], mn[2 * j + 1][1], qh[2 * j][1], qh[2 * j + 1][1]);
  }
  bias_up[0] = (lo[0] + hi[2]) * up[0];
  bias_up[1] = (lo[1] + hi[3]) * up[1];
}

// The keys' code sums of one 16-token half into two accumulators (even and odd chunks: two dependent chains of D / 32
// MMAs instead of one of D / 16): per chunk kc, A = the four code pairs of lane word word(kc) (fr::key_word of the
// half), fields 4 (kc % 2) .. + 3 (fr::key_field: D / 16 is even), B = bx[kc] (hmul2(q'', scale)).
template <int KC, class Word>
__device__ __forceinline__ void key_code_sums(Word word, const unsigned (&bx)[KC][2], float (&d)[2][4]) {
#pragma unroll
  for (int kc = 0; kc < KC; ++kc) {
    const unsigned w = word(kc);
    if (kc % 2)
      mma_f16(d[1], code_pair<4>(w), code_pair<5>(w), code_pair<6>(w), code_pair<7>(w), bx[kc][0], bx[kc][1]);
    else
      mma_f16(d[0], code_pair<0>(w), code_pair<1>(w), code_pair<2>(w), code_pair<3>(w), bx[kc][0], bx[kc][1]);
  }
}

// The transpose of the 8 x 8 fp16 matrix whose row lane / 4, columns 2 (lane % 4) and + 1 this lane holds as a pair
// (PTX movmatrix.sync.aligned.m8n8.trans.b16, sm_75+): the lane then holds row lane / 4, columns 2 (lane % 4) and + 1
// of the transpose. Bits moved, not rounded. Warp-synchronous.
__device__ __forceinline__ unsigned transpose_pairs(unsigned x) {
  unsigned y;
  asm volatile("movmatrix.sync.aligned.m8n8.trans.b16 %0, %1;" : "=r"(y) : "r"(x));
  return y;
}

// 3. of both instances: the online softmax per head 2 t4 + e over a tile's 32 tokens (4 per lane and head) of the
// scores sc[mt][r] (token 16 mt + g (+8 for r >= 2), head 2 t4 + r % 2, log2 units) into the running max m (the
// warp's, per head) and this lane's part of the sum l (its 4 tokens per head and tile; whole_sums adds the 8 lanes g
// of a head after the last tile: the sum's order is not the tokens', which tolerance 6.'s 3 T u covers).
// The running max moves only when some lane's own scores exceed it (one vote): most tiles after a sequence's first
// few leave it (a new maximum among n tokens is ever rarer), and then the max is m itself and alpha exactly 1, as the
// warp-wide reduction would give; only a tile that raises it pays the shuffles.
// The probabilities as the values' B operand ph[kt][pr] (tokens 16 kt + 8 pr + 2 t4 (+1), head g, fp16 pairs p~ =
// fp16(p)): the lane's pairs fp16(p) of heads 2 t4, 2 t4 + 1 at token 16 kt + g (+8) are an 8 x 8 [token x head]
// matrix fragment, whose transpose (transpose_pairs) is the [head x token] fragment that B's layout asks for (b0
// rows 2 t4 (+1), column g), with no shared memory. alpha: each head's factor for the accumulators. Returns whether
// any head of the warp has alpha != 1 (the caller's rescale; else the same values).
__device__ __forceinline__ bool softmax_tile(const float (&sc)[2][4], float (&m)[2], float (&l)[2], float (&alpha)[2],
                                             unsigned (&ph)[2][2]) {
  float v[2];
#pragma unroll
  for (int e2 = 0; e2 < 2; ++e2) v[e2] = fmaxf(fmaxf(sc[0][e2], sc[0][e2 + 2]), fmaxf(sc[1][e2], sc[1][e2 + 2]));
  alpha[0] = alpha[1] = 1.0f;
  bool rescale = false;
  if (__any_sync(0xffffffffu, v[0] > m[0] || v[1] > m[1])) {
#pragma unroll
    for (int e2 = 0; e2 < 2; ++e2) {
      float x = v[e2];
      x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
      x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 8));
      x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 16));
      const float mn = fmaxf(m[e2], x);
      alpha[e2] = m[e2] == -HUGE_VALF ? 0.0f : exp2_ftz(m[e2] - mn);
      m[e2] = mn;
      l[e2] *= alpha[e2];
    }
    rescale = __any_sync(0xffffffffu, alpha[0] != 1.0f || alpha[1] != 1.0f);
  }
  float sum[2];
#pragma unroll
  for (int mt = 0; mt < 2; ++mt) {
    float pr[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      pr[r] = exp2_ftz(sc[mt][r] - m[r & 1]);
      sum[r & 1] = mt == 0 && r < 2 ? pr[r] : sum[r & 1] + pr[r];
    }
    ph[mt][0] = transpose_pairs(pack_half2(pr[0], pr[1]));
    ph[mt][1] = transpose_pairs(pack_half2(pr[2], pr[3]));
  }
#pragma unroll
  for (int e2 = 0; e2 < 2; ++e2) l[e2] += sum[e2];
  return rescale;
}

// The sums of softmax_tile's lane parts l of heads 2 t4 and 2 t4 + 1 over the 8 lanes g, in every lane.
__device__ __forceinline__ void whole_sums(float (&l)[2]) {
#pragma unroll
  for (int e2 = 0; e2 < 2; ++e2) {
    l[e2] += __shfl_xor_sync(0xffffffffu, l[e2], 4);
    l[e2] += __shfl_xor_sync(0xffffffffu, l[e2], 8);
    l[e2] += __shfl_xor_sync(0xffffffffu, l[e2], 16);
  }
}

// A tile cut by a query row's causal limit (TileEntry n < 32: DecodeAttention with several query tokens per
// sequence; the tile's 32 tokens are a whole fragment tile of the block, and those from n on are real tokens that this
// row must not see): their scores sc[mt][r] (token 16 mt + g (+8 for r >= 2)) to -inf, so that softmax_tile gives
// them probability 0 (exp2 of -inf; the tile's token 0 is always seen, so the running max stays finite) and the
// values' MMAs add 0 times their finite codes and metadata. Warp-uniform (n is the warp's tile's).
__device__ __forceinline__ void mask_cut_tile(float (&sc)[2][4], int n, int g) {
#pragma unroll
  for (int mt = 0; mt < 2; ++mt)
#pragma unroll
    for (int r = 0; r < 4; ++r)
      if (16 * mt + g + 8 * (r >> 1) >= n) sc[mt][r] = -HUGE_VALF;
}

// The value accumulators acc[mv][r] (head 2 t4 + r % 2) times their head's alpha (softmax_tile's factors).
template <int KC>
__device__ __forceinline__ void rescale_acc(float (&acc)[KC][4], const float (&alpha)[2]) {
#pragma unroll
  for (int mv = 0; mv < KC; ++mv) {
    acc[mv][0] *= alpha[0];
    acc[mv][1] *= alpha[1];
    acc[mv][2] *= alpha[0];
    acc[mv][3] *= alpha[1];
  }
}

// 3 blocks of 4 warps per multiprocessor, as the tensor-core kernel (4, at most 128 registers and 50-112 bytes of
// spills, measured slower on an H100 at 64k tokens: batch 8 vidkv 0.1186 ms against 0.1117, kivi-2 0.1746 against
// 0.1164; docs/performance.md); each tile's work split between a score warp and a value warp at 5 blocks (96
// registers, cbb73ad) was slower too: 8 x 64k vidkv 0.0931-0.0940 ms against 0.0824-0.0826, kivi-2 0.1057 against
// 0.1017, the added warps waiting on the scores' chain. VPG: 16-channel value tiles per value group (value group /
// 16, 1 .. D / 16), a constant so that the value metadata's offsets are immediates.
template <int D, int VPG>
__global__ void __launch_bounds__(kThreads, 3) fragment_kernel(const __grid_constant__ Problem p) {
  constexpr int KC = D / 16;  // 16-channel chunks: the keys' k chunks, the values' m tiles; a lane's words per side
  constexpr int G = (KC + VPG - 1) / VPG;  // value groups per token row
  using L = WarpLayout<D>;
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x % 32u);
  const int g = lane >> 2, t4 = lane & 3;
  const int Q = static_cast<int>(p.qpk);
  std::uint32_t* wbase = reinterpret_cast<std::uint32_t*>(smem) + warp * L::kWarp;

  unsigned qh[KC][2];
  float up[2];
  kivi_query<KC>(p, b, h, g, t4, qh, up);

  const SequenceEntry seq = p.sequences[b];
  const TileRange range = split_tiles(seq.fast_count, p.splits, s);
  // This lane's value metadata offsets (bytes) within a tile's runs: token j = 16 kt + 2 t4 + 8 pr of group gr at
  // half j G + gr; the lane's part 2 t4 G halves, the rest immediates.
  const int vlane = 4 * t4 * G;
  float m[2] = {-HUGE_VALF, -HUGE_VALF}, l[2] = {0.0f, 0.0f};
  float acc[KC][4];  // channel 16 mv + g (+8 for r >= 2), head 2 t4 + r % 2
  float accm[4] = {0.0f, 0.0f, 0.0f, 0.0f};  // the values' mins' term: value group g (g < G), head 2 t4 + r (r < 2)
#pragma unroll
  for (int mv = 0; mv < KC; ++mv)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[mv][r] = 0.0f;

  // The warp's tiles ti = range.first + warp, + kWarps, ... (int: a sequence's tiles are far fewer than 2^31); their
  // entries from `tiles`, each loaded one iteration before its copies are issued.
  const TileEntry* tiles = p.tiles + seq.tile_begin;
  const int last = static_cast<int>(range.last);
  int ti = static_cast<int>(range.first) + warp;
  const KiviDestinations dst = kivi_destinations<D>(wbase, lane);
  KiviSources src;
  TileMeta meta;
  int tokens = kTile;  // the current tile's tokens (fewer: cut by the row's causal limit, mask_cut_tile)
  TileEntry ahead;  // the tile after the one being copied (ti + kWarps), loaded one iteration before its copies
  if (ti < last) {
    const TileEntry tile = tiles[ti];
    tokens = tile.n;
    if (ti + kWarps < last) ahead = tiles[ti + kWarps];
    src = kivi_key_sources<D>(src, p, h, tile.key_block, lane);
    src = kivi_value_sources<D>(src, p, h, tile.value_block, lane);
    meta = issue_tile<D, G>(0, static_cast<std::uint32_t>(tile.t0), src, dst, lane);
  }
  cuda_async::commit();
  int slot = 0;
  for (; ti < last; ti += kWarps) {
    // The next tile's copies into the other slot (its last reader was the previous tile: done, __syncwarp below).
    const bool has_next = ti + kWarps < last;
    __syncwarp();  // every lane has read the previous tile's slot and probabilities
    TileMeta next_meta;
    int next_tokens = kTile;
    if (has_next) {
      const TileEntry next = ahead;
      next_tokens = next.n;
      if (ti + 2 * kWarps < last) ahead = tiles[ti + 2 * kWarps];
      if (next.key_block != src.key_block || next.value_block != src.value_block) {  // one branch, rarely taken
        src = kivi_key_sources<D>(src, p, h, next.key_block, lane);
        src = kivi_value_sources<D>(src, p, h, next.value_block, lane);
      }
      next_meta = issue_tile<D, G>(4 * L::kSlot * (slot ^ 1), static_cast<std::uint32_t>(next.t0), src, dst, lane);
    }
    cuda_async::commit();
    cuda_async::wait_prior<1>();  // this tile's copies have landed (this lane's)
    __syncwarp();                 // and every lane's
    const std::uint32_t* t = wbase + slot * L::kSlot;

    // 2. Scores s[mt][r]: token 16 mt + g (+8 for r >= 2), head 2 t4 + r % 2.
    std::uint32_t kw[KC];
#pragma unroll
    for (int i = 0; i < KC / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(t)[i * 32 + lane];
      kw[4 * i] = v.x;
      kw[4 * i + 1] = v.y;
      kw[4 * i + 2] = v.z;
      kw[4 * i + 3] = v.w;
    }
    // The mins' term sum_c min_c q''_c per head, the same for every token row (key_mins_term).
    unsigned bx[KC][2], mn[KC][2];  // the key scales, then fp16(q'' scale), and the mins of channel pairs 16 kc + 2 t4 + 8 pr
    load_words<2 * KC>(reinterpret_cast<unsigned(&)[2 * KC]>(bx), t + L::kKeyScale + t4 * fr::key_meta_stride(D));
    load_words<2 * KC>(reinterpret_cast<unsigned(&)[2 * KC]>(mn), t + L::kKeyMin + t4 * fr::key_meta_stride(D));
#pragma unroll
    for (int kc = 0; kc < KC; ++kc)
#pragma unroll
      for (int pr = 0; pr < 2; ++pr) bx[kc][pr] = hmul2_u(qh[kc][pr], bx[kc][pr]);
    float bias_up[2];  // heads 2 t4, 2 t4 + 1, scaled
    key_mins_term(mn, qh, up, bias_up);
    float sc[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
      // register r = 4 (mt KC + kc) + a: word r / 8, field r % 8 (fr::key_word, fr::key_field)
      key_code_sums<KC>([&](int kc) { return kw[fr::key_word(mt, kc, KC)]; }, bx, d);
      // The code sums times row_unscale (exact; folded into `up` it could overflow fp32 for queries beyond 2^100).
#pragma unroll
      for (int r = 0; r < 4; ++r) sc[mt][r] = fmaf((d[0][r] + d[1][r]) * row_unscale(r), up[r & 1], bias_up[r & 1]);
    }

    // 3. Online softmax.
    float alpha[2];
    if (tokens < kTile) mask_cut_tile(sc, tokens, g);
    // The accumulators' rescale, skipped when no head's running max moved (alpha exactly 1: the same values).
    unsigned ph[2][2];
    if (softmax_tile(sc, m, l, alpha, ph)) {
      rescale_acc(acc, alpha);
      accm[0] *= alpha[0];
      accm[1] *= alpha[1];
    }

    // 4. Values.
    std::uint32_t vw[KC];
#pragma unroll
    for (int i = 0; i < KC / 4; ++i) {
      const uint4 v = reinterpret_cast<const uint4*>(t + L::kCodes)[i * 32 + lane];
      vw[4 * i] = v.x;
      vw[4 * i + 1] = v.y;
      vw[4 * i + 2] = v.z;
      vw[4 * i + 3] = v.w;
    }
    // The mins' term sum_t p~_t min_tg of every group at once, into accm: A = the mins [groups x 16 tokens] (row g
    // the lane's group g, clamped below G: rows G .. 15 are never read), B = p~ itself (two MMAs).
    {
      const int vmo = meta.value_min + vlane + 2 * min(g, G - 1);
#pragma unroll
      for (int kt = 0; kt < 2; ++kt) {
        unsigned a[2];
#pragma unroll
        for (int pr = 0; pr < 2; ++pr) {
          const int i0 = 2 * (16 * kt + 8 * pr) * G;  // bytes: tokens 16 kt + 8 pr on from the lane's 2 t4
          a[pr] = pair_lo(half_bits(t + L::kValueMin, vmo + i0), half_bits(t + L::kValueMin, vmo + i0 + 2 * G));
        }
        mma_f16(accm, a[0], 0u, a[1], 0u, ph[kt][0], ph[kt][1]);
      }
    }
    // B = fp16(p~ scale) of tokens j, j + 1 (kt, pr) for every group, from the 2 G halves of the two tokens:
    // G words at word G (8 kt + 4 pr + t4), loaded as vectors where the tile's run starts at a word
    // (value_scale_pairs).
    unsigned bs[G][2][2];
    value_scale_pairs<G>(bs, t + L::kValueScale, meta.value_scale, t4, ph);
#pragma unroll
    for (int mv = 0; mv < KC; ++mv) {
      const int gr = mv / VPG;
      // register r = 4 (2 mv + kt) + a: word mv, field 4 kt + a (fr::value_word, fr::value_field)
      const unsigned w = vw[fr::value_word(mv)];
      static_assert(fr::value_field(0, 0) == 0 && fr::value_field(1, 0) == 4, "the fields below");
      mma_f16(acc[mv], code_pair<0>(w), code_pair<1>(w), code_pair<2>(w), code_pair<3>(w), bs[gr][0][0], bs[gr][0][1]);
      mma_f16(acc[mv], code_pair<4>(w), code_pair<5>(w), code_pair<6>(w), code_pair<7>(w), bs[gr][1][0], bs[gr][1][1]);
    }
    meta = next_meta;
    tokens = next_tokens;
    slot ^= 1;
  }
  cuda_async::wait_all();
  // Each channel's code sums times row_unscale (exact), plus its mins' term from accm of its group's row (lanes
  // 4 gr + t4 hold group gr, heads 2 t4 and + 1).
#pragma unroll
  for (int gr = 0; gr < G; ++gr) {
    const float m0 = __shfl_sync(0xffffffffu, accm[0], 4 * gr + t4), m1 = __shfl_sync(0xffffffffu, accm[1], 4 * gr + t4);
#pragma unroll
    for (int mv = gr * VPG; mv < KC && mv < (gr + 1) * VPG; ++mv) {
      acc[mv][0] = fmaf(acc[mv][0], row_unscale(0), m0);
      acc[mv][1] = fmaf(acc[mv][1], row_unscale(1), m1);
      acc[mv][2] = fmaf(acc[mv][2], row_unscale(2), m0);
      acc[mv][3] = fmaf(acc[mv][3], row_unscale(3), m1);
    }
  }

  // The warp's partial to shared memory (wm, wl, wacc as merge_warp_partials reads them), then the block's merge.
  whole_sums(l);
  __syncthreads();
  write_mma_warp_partial(smem, warp, Q, D, KC, g, t4, m, l, acc);
  __syncthreads();
  merge_warp_partials(p, smem, b, h, s);
}

// --- The residual windows' tiles on the tensor cores ----------------------------------------------------------------
// fragment_residual_kernel takes the general kernel's place where Problem::general_tensor_cores (DecodeAttention's
// build: attention_fragment::residual_tensor_core_formats; kivi's formats, and vidkv's whose residual tiles have exact
// keys) holds: the same grid (generic_splits, KV heads, sequences),
// the same tiles (the sequence's general tiles, warp w taking tiles w, w + kWarps, ... of its split's range), the same
// partial slot (p.splits + split) and completion count, so that launch() places and combines it as it does the
// general kernel's compact instance. Those tiles are the residual windows' narrow tiles (at most
// DecodeAttention::kResidualTileTokens = 8 tokens, inside one 8-token-aligned run of their key block or key residual:
// add_tiles): values exact (the fp16 value store), keys exact (the fp16 key store) or inside one whole fragment tile of
// their key block. The compact instance reads them on CUDA cores (4 lanes per token, fp32 products): about 3,600
// warp instructions per tile executed (Nsight Compute, kivi-2-fragment 8 x 64k, 2026-12-05: 2.08 M for about 576
// tiles), and one split of them cost a block about as much as 190 of the fragment kernel's 32-token tiles
// (docs/performance.md section 8, 2026-12-06, ninth session). Here a tile is one 8-row window of the fragment
// kernel's MMAs:
//   scores, keys in a fragment tile: as the fragment kernel's step 2 for the token half mt holding the tile (A = the
//     lane's code words of that half as fp16 subnormals; B = hmul2(q'', scale), read from the group's fp16 metadata in
//     global memory; the mins' term key_mins_term), of whose two row halves the tile's is kept; window row g is the
//     tile's token g - w0, w0 = o % 8 for o the tile's first token in its fragment tile;
//   scores, exact keys: A = the stored fp16 rows (a0, a2 of row g: the tile's token g; rows g + 8 zero) against B = q''
//     itself (w0 = 0);
//   rows outside the tile's n tokens at -inf, the other token half and row half too, then softmax_tile (probability 0
//     there);
//   values: A = the stored fp16 values as V^T [16 channels x 16 rows] (a0, a1: channels 16 mv + g and + 8, window
//     rows 2 t4 and + 1; a2 = a3 = 0) against B = p~ of window rows 2 t4 (+1), head g (b1 = 0: rows 8-15), into the
//     fragment kernel's accumulators; no metadata, no row_unscale. A row outside the tile reads a row inside it
//     (finite) and weighs 0.
// The arithmetic is the fragment kernel's, within tolerance 6. (decode_attention_tolerance.h), which a fragment
// problem applies to every token, these included: q'' = fp16(q 2^-e) against exact keys errs by at most 2^-11 |q_i|
// (2^-25 2^e below fp16's normal range) per channel, inside 6.'s (2^-10 + ..) mag and 2^-24 qmax sizes terms; the
// MMAs' alignment of normal fp16 products loses at most 2^-23 of the largest term, inside the 17 2^-15 peak term that
// the subnormal codes take; p~ = fp16(p) against exact values (scale 1, min 0) is 6.'s (2^-10 + 2^-22) |v| factor term.
// Shared memory: only the block's merge (launch() gives the general kernel's smem_floats, which covers it). Every
// load is read-only for the kernel's life (__ldg).
template <int D>
__global__ void __launch_bounds__(kThreads) fragment_residual_kernel(const __grid_constant__ Problem p) {
  // launch() may start the fragment kernel beside this one (p.generic_target != 0): its blocks may be dispatched as
  // soon as every block of this one has begun.
  dependent_launch::allow_next_grid();
  constexpr int KC = D / 16;
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x % 32u);
  const int g = lane >> 2, t4 = lane & 3;
  unsigned qh[KC][2];
  float up[2];
  kivi_query<KC>(p, b, h, g, t4, qh, up);

  const SequenceEntry seq = p.sequences[b];
  const std::int64_t first_tile = seq.tile_begin + seq.fast_count;
  const TileRange range = split_tiles(seq.tile_count - seq.fast_count, p.generic_splits, s);
  const auto* kstore = static_cast<const std::uint16_t*>(seq.key_full);
  const auto* vstore = static_cast<const std::uint16_t*>(seq.value_full);
  float m[2] = {-HUGE_VALF, -HUGE_VALF}, l[2] = {0.0f, 0.0f};
  float acc[KC][4];  // channel 16 mv + g (+8 for r >= 2), head 2 t4 + r % 2
#pragma unroll
  for (int mv = 0; mv < KC; ++mv)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[mv][r] = 0.0f;
  KiviSources src;  // the addresses of the current key block (the fragment kernel's, kivi_key_sources)
  const bool kivi_keys = fr::fragment_formats(p) == fr::FragmentFormats::kivi;

  for (std::int64_t ti = range.first + warp; ti < range.last; ti += kWarps) {
    const TileEntry tile = p.tiles[first_tile + ti];
    const int n = tile.n;
    int w0 = 0;   // the window row of the tile's first token
    float s2[2];  // the scores of window row g, heads 2 t4 and 2 t4 + 1 (log2 units)
    if (tile.key_block >= 0) {
      if (!kivi_keys) __trap();  // vidkv's formats: the build admits exact keys only (narrow_residual_only)
      if (tile.key_block != src.key_block) src = kivi_key_sources<D>(src, p, h, tile.key_block, lane);  // rarely
      const std::uint32_t tr0 = static_cast<std::uint32_t>(tile.t0) - src.begin;
      const int o = static_cast<int>(tr0 % kTile), mt = o / 16, half = (o % 16) / 8;
      w0 = o % 8;
      if (w0 + n > 8) __trap();  // add_tiles cuts the residual's tiles at 8-token runs of their key block
      // The lane's code words of token half mt: fr::key_word(mt, kc, KC) = mt KC / 2 + kc / 2 (field 4 (kc % 2) + a);
      // lane word i of the tile at byte 512 (i / 4) + 4 (i % 4) from the lane's first quad (KiviSources, issue_tile).
      const auto* words = reinterpret_cast<const std::uint32_t*>(run_at<D / 4>(src.key_codes, static_cast<std::uint32_t>(tile.t0) - o));
      std::uint32_t kw[KC / 2];
#pragma unroll
      for (int j = 0; j < KC / 2; ++j) {
        const int i = mt * (KC / 2) + j;
        kw[j] = __ldg(words + (i / 4) * 128 + i % 4);
      }
      // The tile's group's fp16 scales and mins (group-major: 2 D bytes per group from KiviSources' run, whose lane
      // offset 4 lane is taken back) of channels 16 kc + 8 pr + 2 t4 and + 1: word 8 kc + 4 pr + t4. Words: the
      // sections of a block whose codes are 4-byte aligned (fragment_narrow_tile) start at multiples of 4 bytes.
      const std::uint32_t kgroup = src.group_shift >= 0 ? tr0 >> src.group_shift : tr0 / src.group;
      const auto* scales = reinterpret_cast<const std::uint32_t*>(run_at<2 * D>(src.key_scales - 4 * lane, kgroup)) + t4;
      const auto* mins = reinterpret_cast<const std::uint32_t*>(run_at<2 * D>(src.key_mins - 4 * lane, kgroup)) + t4;
      unsigned bx[KC][2], mn[KC][2];
#pragma unroll
      for (int kc = 0; kc < KC; ++kc)
#pragma unroll
        for (int pr = 0; pr < 2; ++pr) {
          bx[kc][pr] = hmul2_u(qh[kc][pr], __ldg(scales + 8 * kc + 4 * pr));
          mn[kc][pr] = __ldg(mins + 8 * kc + 4 * pr);
        }
      float bias_up[2];
      key_mins_term(mn, qh, up, bias_up);
      float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
      key_code_sums<KC>([&](int kc) { return kw[kc / 2]; }, bx, d);
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int r = 2 * half + e;  // the tile's row half: entries r = 0, 1 (rows g) or 2, 3 (rows g + 8)
        const float sum = half ? d[0][2 + e] + d[1][2 + e] : d[0][e] + d[1][e];
        s2[e] = fmaf(sum * row_unscale(r), up[e], bias_up[e]);
      }
    } else {
      const int j = min(g, n - 1);
      const auto* krow = reinterpret_cast<const std::uint32_t*>(kstore + (h * seq.key_capacity + tile.t0 + j - seq.key_first) * D);
      float d[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
#pragma unroll
      for (int kc = 0; kc < KC; ++kc) mma_f16(d[kc % 2], __ldg(krow + 8 * kc + t4), 0u, __ldg(krow + 8 * kc + 4 + t4), 0u, qh[kc][0], qh[kc][1]);
#pragma unroll
      for (int e = 0; e < 2; ++e) s2[e] = (d[0][e] + d[1][e]) * up[e];
    }
    const bool seen = g >= w0 && g - w0 < n;
    float sc[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt)
#pragma unroll
      for (int r = 0; r < 4; ++r) sc[mt][r] = mt == 0 && r < 2 && seen ? s2[r] : -HUGE_VALF;
    float alpha[2];
    unsigned ph[2][2];
    if (softmax_tile(sc, m, l, alpha, ph)) rescale_acc(acc, alpha);
    // Values of window rows 2 t4 and 2 t4 + 1: the tile's tokens j0, j1 (clamped into the tile where outside: p~ 0).
    const int j0 = min(max(2 * t4 - w0, 0), n - 1), j1 = min(max(2 * t4 + 1 - w0, 0), n - 1);
    const std::uint16_t* v0 = vstore + (h * seq.value_capacity + tile.t0 + j0 - seq.value_first) * D;
    const std::uint16_t* v1 = vstore + (h * seq.value_capacity + tile.t0 + j1 - seq.value_first) * D;
#pragma unroll
    for (int mv = 0; mv < KC; ++mv)
      mma_f16(acc[mv], pair_lo(__ldg(v0 + 16 * mv + g), __ldg(v1 + 16 * mv + g)),
              pair_lo(__ldg(v0 + 16 * mv + 8 + g), __ldg(v1 + 16 * mv + 8 + g)), 0u, 0u, ph[0][0], 0u);
  }

  // The warp's partial to shared memory, the block's merge into partial slot p.splits + s (the general kernel's), and
  // the completion count that the combine kernel may wait on (as split_kernel).
  whole_sums(l);
  __syncthreads();
  write_mma_warp_partial(smem, warp, static_cast<int>(p.qpk), D, KC, g, t4, m, l, acc);
  __syncthreads();
  merge_warp_partials(p, smem, b, h, static_cast<int>(p.splits) + s);
  count_general_block(p, b, h);
}

// --- The vidkv instance (attention_fragment::FragmentFormats::vidkv) -----------------------------------------------
// head_dim 128. Keys: a mixed_channel block's 64 high channels (uniform 2-bit, layout fragment: kivi's key tile over
// 64 channels, with group-major scales and mins) and 64 low channels' real-FFT components (sign 1-bit, layout
// fragment, zero_one: a component is scale x bit; group-major scales), read against the query carried into the
// block's coordinates (Problem::transformed: the gathered high channels, then the inverse-FFT-weighted components),
// so a score is sum_i tq_i k_i over the 128 part indices, as the other kernels compute it. Values: ternary packing
// fragment, magnitude_free: A = the slots t + 1 as the codes (code_pair), B = p~ itself (no scales, no mins), and the
// sum of p~ by an MMA of A = ones, subtracted after the last tile.
//
// Per-warp shared memory in 32-bit words: two slots, each the high key codes [2 H], the low key codes [L], the value
// codes [2 D], then the high scales, the high mins and the low scales [4 key_meta_stride(64)] each in the lanes' order
// (fr::key_meta_slot over 64 channels).
struct VidkvLayout {
  static constexpr int D = static_cast<int>(fr::kVidkvHeadDim), H = static_cast<int>(fr::kVidkvHigh), L = D - H;
  static constexpr int kHighCodes = 0, kLowCodes = 2 * H, kValueCodes = kLowCodes + L;
  static constexpr int kMeta = 4 * fr::key_meta_stride(H);
  static constexpr int kHighScale = kValueCodes + 2 * D, kHighMin = kHighScale + kMeta, kLowScale = kHighMin + kMeta;
  static constexpr int kSlot = kLowScale + kMeta;
  static constexpr int kWarp = 2 * kSlot;
  static_assert(kValueCodes % 4 == 0 && kHighScale % 4 == 0 && kMeta % 4 == 0 && kSlot % 4 == 0 && kWarp % 4 == 0,
                "16-byte pieces");
};
constexpr std::size_t vidkv_smem_bytes() {
  return sizeof(std::uint32_t) * static_cast<std::size_t>(kWarps) * VidkvLayout::kWarp;
}
static_assert(vidkv_smem_bytes() >= sizeof(float) * kWarps * kMaxQ * (128 + 2), "the warps' partials fit");

// Where this lane's copies of a tile come from, for the warp's current key block and value block of KV head h:
// integer addresses of the lane's piece of (sequence) token 0, so that a tile at token t0 (below 2^32) copies from
// address + t0 x bytes per token, one IMAD.WIDE.U32 per run (recomputed when a tile's block changes:
// vidkv_key_sources, vidkv_value_sources).
//   high codes: 2 H / 8 bytes per token (the lane's 16-byte quad: + 16 lane); low codes: L / 8 (+ 8 lane); value
//   codes: 2 D / 8 (+ 16 lane, the second quad 512 bytes on);
//   key metadata, group-major (fr::key_meta_base, 2 x 64 bytes per group): group gi = (t0 - begin) / group of the
//   block's high scales, high mins and low scales, word `lane` of each (+ 4 lane).
struct VidkvSources {
  std::int32_t key_block = -1, value_block = -1;
  std::int64_t high_codes = 0, low_codes = 0, values = 0, high_scales = 0, high_mins = 0, low_scales = 0;
  std::uint32_t begin = 0, high_group = 32, low_group = 32;
  int high_shift = -1, low_shift = -1;  // log2 of the groups where powers of two (a shift instead of a division)
};

__device__ __noinline__ VidkvSources vidkv_key_sources(VidkvSources s, const Problem& p, std::int64_t h, std::int32_t index, int lane) {
  using L = VidkvLayout;
  const BlockEntry e = p.key_blocks[index];
  const af::PartRef kp = af::part_of(p.key, e.bytes, p.heads, e.tokens, L::D, h);  // scope layer: heads, head h
  s.key_block = index;
  s.begin = static_cast<std::uint32_t>(e.begin);
  // Codes: head h's tiles from h T tokens on.
  s.high_codes = reinterpret_cast<std::int64_t>(kp.first.codes) + (h * e.tokens - e.begin) * (2 * L::H / 8) + 16 * lane;
  s.low_codes = reinterpret_cast<std::int64_t>(kp.second.codes) + (h * e.tokens - e.begin) * (L::L / 8) + 8 * lane;
  s.high_scales = reinterpret_cast<std::int64_t>(kp.first.scales) + 2 * fr::key_meta_base(h, kp.first.groups_per_row, 0, L::H) + 4 * lane;
  s.high_mins = reinterpret_cast<std::int64_t>(kp.first.mins) + 2 * fr::key_meta_base(h, kp.first.groups_per_row, 0, L::H) + 4 * lane;
  s.low_scales = reinterpret_cast<std::int64_t>(kp.second.scales) + 2 * fr::key_meta_base(h, kp.second.groups_per_row, 0, L::L) + 4 * lane;
  s.high_group = static_cast<std::uint32_t>(p.key.first.group);
  s.low_group = static_cast<std::uint32_t>(p.key.second.group);
  s.high_shift = kp.first.group_shift;
  s.low_shift = kp.second.group_shift;
  return s;
}
__device__ __noinline__ VidkvSources vidkv_value_sources(VidkvSources s, const Problem& p, std::int64_t h, std::int32_t index, int lane) {
  const BlockEntry e = p.value_blocks[index];
  const af::ChildView v = af::child_view(p.value.first, e.bytes, p.heads, e.tokens, VidkvLayout::D, 0);
  s.value_block = index;
  s.values = reinterpret_cast<std::int64_t>(v.codes) + (h * e.tokens - e.begin) * (2 * VidkvLayout::D / 8) + 16 * lane;
  return s;
}

// This lane's shared-memory destinations in slot 0 of its warp (slot 1: + 4 kSlot bytes), as 32-bit shared addresses:
// its quads of high and value codes (+ 16 lane), its pair of low codes (+ 8 lane) and its word of each key metadata
// run (fr::key_meta_slot). Passed through an empty asm, so that the compiler front end does not fold them back into
// the lane arithmetic of every iteration (its effect on the SASS was not measured apart from the rest of the change;
// the kivi instance's KiviDestinations goes without it).
struct VidkvDestinations {
  std::uint32_t quad, pair, meta;
};
__device__ __forceinline__ VidkvDestinations vidkv_destinations(const std::uint32_t* wbase, int lane) {
  using L = VidkvLayout;
  const auto slot0 = static_cast<std::uint32_t>(__cvta_generic_to_shared(wbase));
  VidkvDestinations d{slot0 + 16u * lane, slot0 + 4u * L::kLowCodes + 8u * lane,
                      slot0 + 4u * static_cast<std::uint32_t>(fr::key_meta_slot(lane, L::H))};
  asm volatile("" : "+r"(d.quad), "+r"(d.pair), "+r"(d.meta));
  return d;
}

// Issues the copies of the tile at token t0 into the slot `offset` bytes from slot 0 (0 or 4 kSlot): per lane one
// 16-byte quad of high codes, one 8-byte pair of low codes (the 1-bit tile's lane pairs), two quads of value codes,
// and word `lane` of each metadata run (the 64 entries of the tile's group: 32 words) to its fr::key_meta_slot.
__device__ __forceinline__ void vidkv_issue_tile(std::uint32_t offset, std::uint32_t t0, const VidkvSources& s,
                                                 const VidkvDestinations& d) {
  using L = VidkvLayout;
  using namespace cuda_async;
  const std::uint32_t quad = d.quad + offset, meta = d.meta + offset;
  copy16_shared(quad + 4 * L::kHighCodes, run_at<2 * L::H / 8>(s.high_codes, t0));
  copy8_shared(d.pair + offset, run_at<L::L / 8>(s.low_codes, t0));
  const char* v = run_at<2 * L::D / 8>(s.values, t0);
  copy16_shared(quad + 4 * L::kValueCodes, v);
  copy16_shared(quad + 4 * L::kValueCodes + 512, v + 512);
  const std::uint32_t tr0 = t0 - s.begin;
  const std::uint32_t hg = s.high_shift >= 0 ? tr0 >> s.high_shift : tr0 / s.high_group;
  const std::uint32_t lg = s.low_shift >= 0 ? tr0 >> s.low_shift : tr0 / s.low_group;
  copy4_shared(meta + 4 * L::kHighScale, run_at<2 * L::H>(s.high_scales, hg));
  copy4_shared(meta + 4 * L::kHighMin, run_at<2 * L::H>(s.high_mins, hg));
  copy4_shared(meta + 4 * L::kLowScale, run_at<2 * L::L>(s.low_scales, lg));
}

// The query of head g in key block kb's coordinates at this lane's B rows (part indices 16 kc + 2 t4 (+1) + 8 pr,
// kc < 4 the gathered high channels, kc >= 4 the low components) as fp16 pairs q'' = fp16(tq 2^-e), e from the
// head's largest |tq| over the block's 128 part indices (the kivi instance's scaling, on the transformed query);
// up: 2^e score_scale of heads 2 t4 and 2 t4 + 1. Warp-synchronous (shuffles).
__device__ inline void vidkv_block_query(const Problem& p, std::int64_t kb, std::int64_t h, int g, int t4, unsigned (&qh)[8][2],
                                         float (&up)[2]) {
  const float* tq = p.transformed + (kb * p.heads + h) * VidkvLayout::D * kMaxQ;  // [W][kMaxQ], zeros past qpk
  float qv[8][2][2];
  float big = 0.0f;
#pragma unroll
  for (int kc = 0; kc < 8; ++kc)
#pragma unroll
    for (int pr = 0; pr < 2; ++pr)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const float x = tq[(16 * kc + 2 * t4 + 8 * pr + e) * kMaxQ + g];
        qv[kc][pr][e] = x;
        big = fmaxf(big, fabsf(x));
      }
  scaled_query(qv, big, p.score_scale, t4, qh, up);
}

// The four A registers of key chunk kc (< 4) of the 1-bit low tile's token half held in word w: fields 4 kc .. + 3
// (code_pair<f, 1>: rows g at s = 8, rows g + 8 at s = 9).
template <int kc>
__device__ __forceinline__ void mma_low_chunk(float (&d)[4], unsigned w, unsigned b0, unsigned b1) {
  mma_f16(d, code_pair<4 * kc, 1>(w), code_pair<4 * kc + 1, 1>(w), code_pair<4 * kc + 2, 1>(w), code_pair<4 * kc + 3, 1>(w),
          b0, b1);
}

__global__ void __launch_bounds__(kThreads, 3) fragment_vidkv_kernel(const __grid_constant__ Problem p) {
  using L = VidkvLayout;
  constexpr int D = L::D, KC = D / 16, KH = L::H / 16;  // 8 value tiles and key chunks (4 high, then 4 low)
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x % 32u);
  const int g = lane >> 2, t4 = lane & 3;
  const int Q = static_cast<int>(p.qpk);
  std::uint32_t* wbase = reinterpret_cast<std::uint32_t*>(smem) + warp * L::kWarp;

  const SequenceEntry seq = p.sequences[b];
  const TileRange range = split_tiles(seq.fast_count, p.splits, s);
  float m[2] = {-HUGE_VALF, -HUGE_VALF}, l[2] = {0.0f, 0.0f};
  // acc: the slots' sums (trit + 1) times 2^-20 or 2^-18 (code_pair), channel 16 mv + g (+8 for r >= 2), head
  // 2 t4 + r % 2; psum: sum_t p~_t of heads 2 t4 (+1) in entries 0 and 1 (an MMA of A = ones and B = p~, the
  // values' own B), so that each output is acc row_unscale - psum = sum_t p~_t trit_tc.
  float acc[KC][4], psum[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
  for (int mv = 0; mv < KC; ++mv)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[mv][r] = 0.0f;
  unsigned qh[KC][2];  // the block's query (vidkv_block_query), reloaded when a tile's key block differs
  float up[2] = {0.0f, 0.0f};
  std::int32_t query_block = -1;

  // The warp's tiles ti = range.first + warp, + kWarps, ... (int: a sequence's tiles are far fewer than 2^31); their
  // entries from `tiles`, each loaded one iteration before its copies are issued.
  const TileEntry* tiles = p.tiles + seq.tile_begin;
  const int last = static_cast<int>(range.last);
  int ti = static_cast<int>(range.first) + warp;
  const VidkvDestinations dst = vidkv_destinations(wbase, lane);
  VidkvSources src;
  TileEntry ahead, current;
  if (ti < last) {
    current = tiles[ti];
    if (ti + kWarps < last) ahead = tiles[ti + kWarps];
    src = vidkv_key_sources(src, p, h, current.key_block, lane);
    src = vidkv_value_sources(src, p, h, current.value_block, lane);
    vidkv_issue_tile(0, static_cast<std::uint32_t>(current.t0), src, dst);
  }
  cuda_async::commit();
  // Launched right after the query transform (FragmentLaunch::after_transform): its grid complete and its writes
  // visible before the loop's first vidkv_block_query; the first tile's copies are already in flight. (An exception
  // to dependent_launch's read-after-wait rule, as for launch_beside_previous: the reads above are of the tables, the
  // sequences and the cache, which the transform does not write and which everything before the transform's plain
  // launch finished writing; this kernel's own writes, the partials, come after the wait.)
  if (p.wait_for_transform) dependent_launch::wait_for_previous_grid();
  int slot = 0;
  for (; ti < last; ti += kWarps) {
    const bool has_next = ti + kWarps < last;
    __syncwarp();  // every lane has read the previous tile's slot and probabilities
    TileEntry next;
    if (has_next) {
      next = ahead;
      if (ti + 2 * kWarps < last) ahead = tiles[ti + 2 * kWarps];
      if (next.key_block != src.key_block || next.value_block != src.value_block) {  // one branch, rarely taken
        src = vidkv_key_sources(src, p, h, next.key_block, lane);
        src = vidkv_value_sources(src, p, h, next.value_block, lane);
      }
      vidkv_issue_tile(4 * L::kSlot * (slot ^ 1), static_cast<std::uint32_t>(next.t0), src, dst);
    }
    cuda_async::commit();
    if (current.key_block != query_block) {  // the query in this block's coordinates (while the copies fly)
      vidkv_block_query(p, current.key_block, h, g, t4, qh, up);
      query_block = current.key_block;
    }
    cuda_async::wait_prior<1>();  // this tile's copies have landed (this lane's)
    __syncwarp();                 // and every lane's
    const std::uint32_t* t = wbase + slot * L::kSlot;

    // 2. Scores s[mt][r]: token 16 mt + g (+8 for r >= 2), head 2 t4 + r % 2.
    const uint4 hq = reinterpret_cast<const uint4*>(t + L::kHighCodes)[lane];
    const unsigned kw[4] = {hq.x, hq.y, hq.z, hq.w};
    const uint2 lq = reinterpret_cast<const uint2*>(t + L::kLowCodes)[lane];
    const unsigned kl[2] = {lq.x, lq.y};
    // B = fp16(q'' scale) of the lane's part indices: the high scales (chunks 0-3), then the low ones (4-7); the
    // high mins' term by KH MMAs with A = the mins and B = q'' (the kivi instance's lo / hi rows).
    unsigned bx[KC][2], mn[KH][2];
    load_words<2 * KH>(reinterpret_cast<unsigned(&)[2 * KH]>(bx[0]), t + L::kHighScale + t4 * fr::key_meta_stride(L::H));
    load_words<2 * KH>(reinterpret_cast<unsigned(&)[2 * KH]>(bx[KH]), t + L::kLowScale + t4 * fr::key_meta_stride(L::H));
    load_words<2 * KH>(reinterpret_cast<unsigned(&)[2 * KH]>(mn), t + L::kHighMin + t4 * fr::key_meta_stride(L::H));
#pragma unroll
    for (int kc = 0; kc < KC; ++kc)
#pragma unroll
      for (int pr = 0; pr < 2; ++pr) bx[kc][pr] = hmul2_u(qh[kc][pr], bx[kc][pr]);
    float lo[4] = {0.0f, 0.0f, 0.0f, 0.0f}, hi[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
    for (int j = 0; j < KH / 2; ++j) {
      mma_f16(lo, mn[2 * j][0], mn[2 * j][1], mn[2 * j + 1][0], mn[2 * j + 1][1], qh[2 * j][0], qh[2 * j + 1][0]);
      mma_f16(hi, mn[2 * j][0], mn[2 * j][1], mn[2 * j + 1][0], mn[2 * j + 1][1], qh[2 * j][1], qh[2 * j + 1][1]);
    }
    const float bias_up[2] = {(lo[0] + hi[2]) * up[0], (lo[1] + hi[3]) * up[1]};
    float sc[2][4];
#pragma unroll
    for (int mt = 0; mt < 2; ++mt) {
      // The high chunks (2-bit code_pair: sums times 2^-20 / 2^-18) and the low ones (1-bit: 2^-16 / 2^-15) in two
      // accumulators, each a chain of 4 MMAs.
      float dh[4] = {0.0f, 0.0f, 0.0f, 0.0f}, dl[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int kc = 0; kc < KH; ++kc) {  // high: register 4 (mt KH + kc) + a, word (mt KH + kc) / 2 (fr::key_word)
        const unsigned w = kw[fr::key_word(mt, kc, KH)];
        if (fr::key_field(mt, kc, KH, 0) == 4)
          mma_f16(dh, code_pair<4>(w), code_pair<5>(w), code_pair<6>(w), code_pair<7>(w), bx[kc][0], bx[kc][1]);
        else
          mma_f16(dh, code_pair<0>(w), code_pair<1>(w), code_pair<2>(w), code_pair<3>(w), bx[kc][0], bx[kc][1]);
      }
      // low: 1-bit word mt (fr::bit_key_word), chunk kc in fields 4 kc .. + 3 (fr::bit_key_field)
      const unsigned w = kl[fr::bit_key_word(mt)];
      mma_low_chunk<0>(dl, w, bx[KH][0], bx[KH][1]);
      mma_low_chunk<1>(dl, w, bx[KH + 1][0], bx[KH + 1][1]);
      mma_low_chunk<2>(dl, w, bx[KH + 2][0], bx[KH + 2][1]);
      mma_low_chunk<3>(dl, w, bx[KH + 3][0], bx[KH + 3][1]);
#pragma unroll
      for (int r = 0; r < 4; ++r)
        sc[mt][r] = fmaf(fmaf(dh[r], row_unscale(r), dl[r] * row_unscale<1>(r)), up[r & 1], bias_up[r & 1]);
    }

    // 3. Online softmax.
    float alpha[2];
    if (current.n < kTile) mask_cut_tile(sc, current.n, g);
    unsigned ph[2][2];
    if (softmax_tile(sc, m, l, alpha, ph)) {
      rescale_acc(acc, alpha);
      psum[0] *= alpha[0];
      psum[1] *= alpha[1];
    }

    // 4. Values: A = the slots trit + 1 [16 channels x 16 tokens] (word mv, field 4 kt + a: fr::value_word /
    // value_field; code_pair), B = p~; psum += ones p~.
    const uint4 v0 = reinterpret_cast<const uint4*>(t + L::kValueCodes)[lane];
    const uint4 v1 = reinterpret_cast<const uint4*>(t + L::kValueCodes)[32 + lane];
    const unsigned vw[KC] = {v0.x, v0.y, v0.z, v0.w, v1.x, v1.y, v1.z, v1.w};
#pragma unroll
    for (int mv = 0; mv < KC; ++mv) {
      const unsigned w = vw[fr::value_word(mv)];
      mma_f16(acc[mv], code_pair<0>(w), code_pair<1>(w), code_pair<2>(w), code_pair<3>(w), ph[0][0], ph[0][1]);
      mma_f16(acc[mv], code_pair<4>(w), code_pair<5>(w), code_pair<6>(w), code_pair<7>(w), ph[1][0], ph[1][1]);
    }
    mma_f16(psum, kOnePair, kOnePair, kOnePair, kOnePair, ph[0][0], ph[0][1]);
    mma_f16(psum, kOnePair, kOnePair, kOnePair, kOnePair, ph[1][0], ph[1][1]);
    current = next;
    slot ^= 1;
  }
  cuda_async::wait_all();
  // The trits' sums: slots times row_unscale minus the probabilities (not exactly 0 where every trit is 0: the slots'
  // MMAs on subnormal codes round differently from the ones' MMAs, within decode_attention_tolerance.h 6.). psum[2],
  // psum[3] (rows g + 8, the same sums) are not read, nor rescaled.
#pragma unroll
  for (int mv = 0; mv < KC; ++mv)
#pragma unroll
    for (int r = 0; r < 4; ++r) acc[mv][r] = fmaf(acc[mv][r], row_unscale(r), -psum[r & 1]);
  whole_sums(l);
  __syncthreads();
  write_mma_warp_partial(smem, warp, Q, D, KC, g, t4, m, l, acc);
  __syncthreads();
  merge_warp_partials(p, smem, b, h, s);
}

// fragment_operand_check's kernel: one warp per case, the fields of group k as fragment_operand_check describes.
template <int bits, int k>
__device__ __forceinline__ void operand_group(unsigned w, const unsigned (&b)[2], const float (&c)[4], float* sub, float* integer) {
  constexpr int j = 4 * k;
  float ds[4], di[4];
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    ds[r] = c[r] / row_unscale<bits>(r);  // exact: a power of two (C not below 2^-100, fragment_operand_check)
    di[r] = c[r];
  }
  mma_f16(ds, code_pair<j, bits>(w), code_pair<j + 1, bits>(w), code_pair<j + 2, bits>(w), code_pair<j + 3, bits>(w), b[0], b[1]);
  unsigned a[4];
#pragma unroll
  for (int f = 0; f < 4; ++f) {
    constexpr unsigned mask = (1u << bits) - 1u;
    a[f] = pack_half2(static_cast<float>((w >> (bits * (j + f))) & mask), static_cast<float>((w >> (16 + bits * (j + f))) & mask));
  }
  mma_f16(di, a[0], a[1], a[2], a[3], b[0], b[1]);
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    sub[r] = ds[r] * row_unscale<bits>(r);
    integer[r] = di[r];
  }
}
template <int bits>
__global__ void operand_check_kernel(const std::uint32_t* words, const std::uint32_t* b, const float* c, float* sub,
                                     float* integer, std::uint32_t* transposed) {
  constexpr int groups = 4 / bits;  // 2-bit: 8 fields, 1-bit: 16
  const int w = static_cast<int>(blockIdx.x), lane = static_cast<int>(threadIdx.x);
  const std::size_t i = static_cast<std::size_t>(w) * 32 + lane;
  const unsigned word = words[i];
  const unsigned bb[2] = {b[2 * i], b[2 * i + 1]};
  const float cc[4] = {c[4 * i], c[4 * i + 1], c[4 * i + 2], c[4 * i + 3]};
  const std::size_t o = (static_cast<std::size_t>(w) * groups * 32 + lane) * 4;
  operand_group<bits, 0>(word, bb, cc, sub + o, integer + o);
  operand_group<bits, 1>(word, bb, cc, sub + o + 128, integer + o + 128);
  if constexpr (groups == 4) {
    operand_group<bits, 2>(word, bb, cc, sub + o + 256, integer + o + 256);
    operand_group<bits, 3>(word, bb, cc, sub + o + 384, integer + o + 384);
  }
  transposed[i] = transpose_pairs(word);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) VIDKV_THROW(CudaError, "decode attention (fragment kernel): ", what, ": ", cudaGetErrorString(e));
}

using FragmentKernel = void (*)(const Problem);

// The instance for p's head_dim and value group (formats_ok: a multiple of 16 channels; a group of D or more is
// one group per row, the instance VPG = D / 16).
template <int D, int... V>
FragmentKernel kernel_among(std::int64_t group, std::integer_sequence<int, V...>) {
  const std::int64_t vpg = std::min<std::int64_t>(group / 16, D / 16);
  FragmentKernel k = nullptr;
  ((vpg == V + 1 ? (k = fragment_kernel<D, V + 1>, 0) : 0), ...);
  return k;
}
FragmentKernel kernel_for(const Problem& p) {
  if (fr::fragment_formats(p) == fr::FragmentFormats::vidkv) return fragment_vidkv_kernel;
  const FragmentKernel k = p.channels == 128 ? kernel_among<128>(p.value.first.group, std::make_integer_sequence<int, 8>{})
                                             : kernel_among<64>(p.value.first.group, std::make_integer_sequence<int, 4>{});
  VIDKV_REQUIRE(k != nullptr, NotSupportedError, "decode attention (fragment kernel): value groups of ", p.value.first.group,
                " channels at head_dim ", p.channels, " (a multiple of 16)");
  return k;
}
std::size_t smem_for(const Problem& p) {
  if (fr::fragment_formats(p) == fr::FragmentFormats::vidkv) return vidkv_smem_bytes();
  return p.channels == 128 ? smem_bytes<128>() : smem_bytes<64>();
}

}  // namespace

void launch_fragment(const Problem& p, void* stream, FragmentLaunch how) {
  VIDKV_REQUIRE(fr::formats_ok(p) && p.qpk >= 1 && p.qpk <= kMaxQ, NotSupportedError,
                "decode attention: the fragment kernel does not take these formats (attention_fragment::formats_ok)");
  if (p.splits == 0) return;
  const FragmentKernel kernel = kernel_for(p);
  cuda_kernels::allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem_for(p), "decode attention (fragment kernel)");
  const dim3 grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  auto st = static_cast<cudaStream_t>(stream);
  // Only the vidkv instance reads the transform's result (the kivi one's keys need none: no transform kernel ran).
  static const bool vidkv_waits = dependent_launch::kernel_waits(reinterpret_cast<const void*>(fragment_vidkv_kernel));
  const bool after_transform = how == FragmentLaunch::after_transform && kernel == fragment_vidkv_kernel &&
                               dependent_launch::enabled() && vidkv_waits;
  if (how == FragmentLaunch::beside_previous) {
    check(launch_beside_previous(kernel, grid, dim3(kThreads), smem_for(p), st, p), "kernel launch");
  } else if (after_transform) {
    Problem q = p;
    q.wait_for_transform = true;
    check(dependent_launch::launch_programmatic(kernel, grid, dim3(kThreads), smem_for(p), st, q), "kernel launch");
  } else {
    kernel<<<grid, kThreads, smem_for(p), st>>>(p);
  }
  check(cudaGetLastError(), "kernel launch");
}

FragmentOperandCheck fragment_operand_check(const std::vector<std::uint32_t>& words, const std::vector<std::uint32_t>& b,
                                            const std::vector<float>& c, int bits) {
  const std::size_t cases = words.size() / 32;
  VIDKV_REQUIRE((bits == 1 || bits == 2) && words.size() == cases * 32 && b.size() == 2 * words.size() &&
                    c.size() == 4 * words.size(),
                ShapeError, "fragment_operand_check: ", words.size(), " words (a multiple of 32), ", b.size(), " B words (2 per word), ",
                c.size(), " C floats (4 per word), bits ", bits, " (1 or 2)");
  FragmentOperandCheck out;
  const std::size_t outputs = cases * static_cast<std::size_t>(4 / bits) * 32 * 4;
  out.subnormal.resize(outputs);
  out.integer.resize(outputs);
  out.transposed.resize(words.size());
  if (cases == 0) return out;
  DeviceBuffer dw(words.size() * 4), db(b.size() * 4), dc(c.size() * 4), ds(outputs * 4), di(outputs * 4), dt(words.size() * 4);
  copy_to_device(dw.data(), words.data(), words.size() * 4);
  copy_to_device(db.data(), b.data(), b.size() * 4);
  copy_to_device(dc.data(), c.data(), c.size() * 4);
  auto kernel = bits == 2 ? operand_check_kernel<2> : operand_check_kernel<1>;
  kernel<<<static_cast<unsigned>(cases), 32>>>(dw.as<std::uint32_t>(), db.as<std::uint32_t>(), dc.as<float>(), ds.as<float>(),
                                               di.as<float>(), dt.as<std::uint32_t>());
  check(cudaGetLastError(), "operand check launch");
  copy_to_host(out.subnormal.data(), ds.data(), outputs * 4);
  copy_to_host(out.integer.data(), di.data(), outputs * 4);
  copy_to_host(out.transposed.data(), dt.data(), words.size() * 4);
  return out;
}

AttentionKernel fragment_residual_kernel_for(const Problem& p) {
  VIDKV_REQUIRE(fr::residual_tensor_core_formats(p), NotSupportedError,
                "decode attention: the residual tiles' tensor-core kernel does not take these formats "
                "(attention_fragment::residual_tensor_core_formats)");
  return p.channels == 128 ? fragment_residual_kernel<128> : fragment_residual_kernel<64>;
}

int fragment_blocks_per_sm(const Problem& p) {
  return cuda_kernels::resident_blocks(reinterpret_cast<const void*>(kernel_for(p)), kThreads, smem_for(p),
                                       "decode attention (fragment kernel)");
}

}  // namespace vidkv::attention_cuda
