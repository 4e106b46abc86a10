// The tensor-core kernel of fused decode attention (decode_attention_cuda.h launch_tensor_core): the fast tiles of
// formats that attention_tensor_core::formats_ok accepts, with the dot products of scores and values as bf16 MMAs
// on the small-integer codes (decode_attention_tensor_core.h says how and why that is exact up to the split of the
// fp32 factors). C++17, sm_80 and newer (mma.sync m16n8k16 bf16).
//
// One thread block of kWarps warps per (split, KV head, sequence), as the fast kernel; each warp takes every kWarps-th
// tile of the split (32 tokens, one group of every channel-axis key child). Per tile a warp
//   1. stages the key part's codes as 2-bit slot runs [2][D] words (tokens 0..15, 16..31) and each part index's
//      affine (a, b); the values' codes (channel-axis: per channel the same runs with the pairs unzipped; token-axis:
//      per token D / 16 words of 16 channels) and their affine (per channel, or per token and group);
//   2. scores: for each 16-index chunk k of the part, A = codes [16 tokens x 16 indices] built in registers
//      (shift, mask, byte permute, one bf16 subtraction per two codes), B = (q a) [16 x 8 query heads] as bf16
//      hi + lo: two MMAs per chunk and half-tile; plus sum_i q_i b_i;
//   3. online softmax in fp32 over the C fragments (heads 2 tig, 2 tig + 1 of each lane, tokens over its group);
//      the probabilities through shared memory into the B layout;
//   4. values: A = codes [16 channels x 16 tokens], B = p (or p a per group) [16 tokens x 8 heads], two MMAs per
//      16-token chunk and 16-channel tile, into per-lane accumulators [D / 16][4] (channel 16 m + g (+8), heads
//      2 tig (+1)).
// The warps' partials merge in shared memory as in the other kernels (merge_warp_partials).
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "vidkv/attention/decode_attention_cuda.h"
#include "vidkv/attention/decode_attention_device.cuh"
#include "vidkv/attention/decode_attention_staging.h"
#include "vidkv/attention/decode_attention_tensor_core.h"
#include "vidkv/core/cuda/async_copy.cuh"
#include "vidkv/core/cuda/kernel_occupancy.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"

namespace vidkv::attention_cuda {

namespace {

using namespace device;
using namespace attention_tables;
namespace as = attention_staging;
namespace tc = attention_tensor_core;

constexpr int kMaxTiles16 = static_cast<int>(tc::kMaxHeadDim / 16);  // 16-channel MMA tiles of the values

// The next tile's raw words and metadata words (cp.async, see RawTile), per channel of head_dim.
constexpr std::int64_t kRawWords = 10;

// Per-warp shared memory, in floats (every piece a multiple of 4 floats: D is a multiple of 16): tqT[D][kMaxQ]
// when the keys need the query transform; key affine [D] float2; key slot runs [2][D] words; value
// affine [2 D] float2 (channel-axis: D used; token-axis: [32 tokens][D / 16 groups at most]); value words [2 D]
// (channel-axis [2][D]; token-axis [32][D / 16]); probabilities [32][kMaxQ]; the next tile's raw words
// [kRawWords D] (RawTile).
struct TcWarpLayout {
  std::int64_t tq, kab, kw, vab, vw, prob, raw, total;
};
// Whether a value child's codes can be prefetched as words (direct_child can hold): dense 1- or 2-bit codes (not
// ternary base3, not the release layouts). Without it the raw area holds the keys' words only.
__host__ __device__ inline bool value_words_direct(const af::ChildFormat& f) {
  return f.codec == af::ChildCodec::ternary ? f.packing == ternary_format::Packing::slots2
                                            : f.layout == group_format::CodeLayout::dense;
}
__host__ __device__ inline TcWarpLayout tc_warp_layout(std::int64_t d, bool transform, bool raw_values) {
  TcWarpLayout l;
  l.tq = 0;
  l.kab = l.tq + (transform ? kMaxQ * d : 0);
  l.kw = l.kab + 2 * d;
  l.vab = l.kw + 2 * d;
  l.vw = l.vab + 4 * d;
  l.prob = l.vw + 2 * d;
  l.raw = l.prob + 32 * kMaxQ;
  l.total = l.raw + (raw_values ? kRawWords : 4) * d;
  return l;
}
std::size_t tc_smem_floats(std::int64_t qpk, std::int64_t d, bool transform, bool raw_values) {
  const std::int64_t work = kMaxQ * d + kWarps * tc_warp_layout(d, transform, raw_values).total;
  const std::int64_t merge = kWarps * qpk * (d + 2);
  return static_cast<std::size_t>(work > merge ? work : merge);
}

__device__ __forceinline__ std::uint32_t bf162_bits(__nv_bfloat162 v) { return *reinterpret_cast<std::uint32_t*>(&v); }
__device__ __forceinline__ __nv_bfloat162 bits_bf162(std::uint32_t v) { return *reinterpret_cast<__nv_bfloat162*>(&v); }

// D += A B for one m16n8k16 tile: A [16 x 16] bf16 row-major fragment (a0: row g, k 2 tig..+1; a1: row g + 8; a2, a3:
// k + 8), B [16 x 8] bf16 (b0: k 2 tig..+1, column g; b1: k + 8), D [16 x 8] fp32 (d0, d1: row g, columns 2 tig..+1;
// d2, d3: row g + 8). g = lane / 4, tig = lane % 4 (PTX ISA, "Matrix fragments for mma.m16n8k16").
__device__ __forceinline__ void mma_bf16(float (&d)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// x0, x1 (fp32) as two bf16 pairs hi + lo (x0 in the low halves): hi = bf16(x), lo = bf16(x - hi) (x - hi is exact),
// |x - hi - lo| <= 2^-9 |x - hi| <= 2^-18 |x|.
struct SplitPair {
  std::uint32_t hi, lo;
};
__device__ __forceinline__ SplitPair split_bf16(float x0, float x1) {
  const __nv_bfloat162 h = __floats2bfloat162_rn(x0, x1);
  const float2 hf = __bfloat1622float2(h);
  return {bf162_bits(h), bf162_bits(__floats2bfloat162_rn(__fsub_rn(x0, hf.x), __fsub_rn(x1, hf.y)))};
}

// The two 2-bit slots of w at bits sh..sh + 1 and sh + 16..sh + 17 as the bf16 pair (128 + code): 0x4300 | c is
// the bf16 128 + c exactly (group_cuda::biased_code_pair, one shift and one lop3). Two such words joined by a byte
// permute are still such a pair.
__device__ __forceinline__ std::uint32_t biased_slot_pair(std::uint32_t w, unsigned sh) {
  return group_cuda::biased_code_pair(w, sh, 0x00030003u, 0x43004300u);
}
// A biased pair (biased_slot_pair) as the bf16 pair (code - zero): minus the bf16 128 + zero (`offset`, both halves).
__device__ __forceinline__ std::uint32_t codes_bf16(std::uint32_t biased, std::uint32_t offset) {
  return bf162_bits(__hsub2(bits_bf162(biased), bits_bf162(offset)));
}
__host__ __device__ inline std::uint32_t code_offset(unsigned zero) { return 0x43004300u + zero * 0x00010001u; }

// Group metadata element i of a section of dtype t (fp16 / bf16 / fp32), exact, with the device's conversions.
__device__ __forceinline__ float meta_at(const std::uint8_t* section, DType t, std::int64_t i) {
  if (t == DType::f32) return reinterpret_cast<const float*>(section)[i];
  const unsigned short bits = reinterpret_cast<const unsigned short*>(section)[i];
  return t == DType::f16 ? __half2float(__ushort_as_half(bits)) : __uint_as_float(static_cast<unsigned>(bits) << 16);
}

// A child whose codes of a tile are whole aligned 32-bit words (dense 1- or 2-bit codes, a 4-byte aligned section,
// rows of a multiple of 32 bits, a power-of-two group, aligned metadata; channel-axis: the tile starts at a word),
// read with plain loads and no bit joins: the presets' layouts (per block; a channel-axis tile must also start at a
// word: direct_start). Else the tile is staged through
// decode_attention_staging.h (any offset, base3, release layouts).
struct DirectChild {
  const std::uint32_t* words = nullptr;
  const std::uint8_t* scales = nullptr;
  const std::uint8_t* mins = nullptr;
  std::int64_t row_words = 0, first_row = 0, groups_per_row = 0;
  int group_shift = 0;
  bool ok = false;
};
__device__ inline DirectChild direct_child(const af::ChildView& v) {
  DirectChild d;
  const unsigned b = v.code_bits;
  const int size = dtype_size(v.f.scale_dtype);
  const auto aligned = [](const void* ptr, int n) { return reinterpret_cast<std::uintptr_t>(ptr) % static_cast<std::uintptr_t>(n) == 0; };
  d.ok = v.f.layout == group_format::CodeLayout::dense && (b == 1 || b == 2) && aligned(v.codes, 4) &&
         (v.length * b) % 32 == 0 && v.group_shift >= 0 && (!af::has_meta(v.f) || aligned(v.scales, size)) &&
         (v.f.codec != af::ChildCodec::uniform || aligned(v.mins, size));
  d.words = reinterpret_cast<const std::uint32_t*>(v.codes);
  d.scales = v.scales;
  d.mins = v.mins;
  d.row_words = v.length * b / 32;
  d.first_row = v.head * v.rows;
  d.groups_per_row = v.groups_per_row;
  d.group_shift = v.group_shift;
  return d;
}
__device__ __forceinline__ bool direct_start(const af::ChildView& v, const DirectChild& d, std::int64_t tr0) {
  return d.ok && (tr0 * static_cast<std::int64_t>(v.code_bits)) % 32 == 0;
}

// The affine of group gi of a direct child.
__device__ __forceinline__ float2 direct_affine(const af::ChildView& v, const DirectChild& d, std::int64_t gi) {
  af::Meta m;
  if (af::has_meta(v.f)) {
    m.scale = meta_at(d.scales, v.f.scale_dtype, gi);
    if (v.f.codec == af::ChildCodec::uniform) m.mn = meta_at(d.mins, v.f.scale_dtype, gi);
  }
  const tc::CodeAffine ca = tc::code_affine(v.f, m);
  return make_float2(ca.a, ca.b);
}

// Stages part indices [i0, i1) of a channel-axis child (part index i -> child row i - i0) for the tile [tr0, tr0 + n):
// affine to ab[i], the 32 codes as 2-bit slot words to w0[i], w1[i] (unzipped pairs when `unzip`: the values'
// A fragments). Tokens past n: zero codes. v, d: the warp's block setup in shared memory.
__device__ inline void stage_rows(const af::ChildView& v, const DirectChild& d, std::int64_t tr0, int n, int i0, int i1,
                                  float2* ab, std::uint32_t* w0, std::uint32_t* w1, bool unzip,
                                  const std::uint16_t* trit_slots, unsigned lane) {
  const unsigned b = as::staged_bits(v.f);
  if (direct_start(v, d, tr0)) {
    const std::uint32_t keep = n * static_cast<int>(b) >= 32 ? ~0u : (1u << (n * b)) - 1u;  // codes of tokens < n
    const std::uint32_t keep1 = n >= 32 ? ~0u : (n > 16 ? (1u << (2 * (n - 16))) - 1u : 0u);
    const std::int64_t word0 = tr0 * b / 32, group = tr0 >> d.group_shift;
    for (int i = i0 + static_cast<int>(lane); i < i1; i += 32) {
      const std::int64_t row = d.first_row + (i - i0);
      const std::uint32_t* src = d.words + row * d.row_words + word0;
      std::uint32_t w[as::kMaxRowWords] = {src[0] & keep, b == 2 && n > 16 ? src[1] & keep1 : 0u, 0u, 0u};
      ab[i] = direct_affine(v, d, row * d.groups_per_row + group);
      tc::to_slots(w, b);
      w0[i] = unzip ? tc::unzip_pairs(w[0]) : w[0];
      w1[i] = unzip ? tc::unzip_pairs(w[1]) : w[1];
    }
    return;
  }
  if (v.f.codec == af::ChildCodec::ternary && v.code_bits == 0) {
    // base3 (vidkv's values): read_trit_run_table's two words directly, in registers (the general row_run below
    // indexes its words at run time, which puts them in local memory).
    const af::ChildFormat f = v.f;
    const std::uint8_t* codes = v.codes;
    const std::int64_t first = v.head * v.rows * v.length + tr0, length = v.length;
    for (int i = i0 + static_cast<int>(lane); i < i1; i += 32) {
      const tc::CodeAffine ca = tc::code_affine(f, as::staged_meta(v, af::view_group(v, tr0, i - i0)));
      ab[i] = make_float2(ca.a, ca.b);
      std::uint32_t w[2] = {0u, 0u};
      as::read_trit_run_table(codes, first + (i - i0) * length, n, w, trit_slots);
      w0[i] = unzip ? tc::unzip_pairs(w[0]) : w[0];
      w1[i] = unzip ? tc::unzip_pairs(w[1]) : w[1];
    }
    return;
  }
  for (int i = i0 + static_cast<int>(lane); i < i1; i += 32) {
    const tc::CodeAffine ca = tc::code_affine(v.f, as::staged_meta(v, af::view_group(v, tr0, i - i0)));
    ab[i] = make_float2(ca.a, ca.b);
    std::uint32_t w[as::kMaxRowWords] = {0u, 0u, 0u, 0u};
    as::row_run(v, tr0, n, i - i0, w, trit_slots);
    tc::to_slots(w, b);
    w0[i] = unzip ? tc::unzip_pairs(w[0]) : w[0];
    w1[i] = unzip ? tc::unzip_pairs(w[1]) : w[1];
  }
}

// --- Prefetch of the next tile (direct children only) -----------------------------------------------------------
// While a warp computes tile i it copies tile i + 1's code words and metadata words from global to shared memory with
// cp.async (no registers held, one wait at the next tile), so that the tile's loads overlap the MMAs. Layout of the
// raw area (words): key codes [2][D] (word k of part index i at k D + i), key metadata [2][D] (the aligned word holding
// the scale, then the min), value codes [2 D] and value metadata [2][2 D] (channel-axis as the keys; token-axis: codes
// [32][D / 16], metadata [2][32 groups]).
using cuda_async::copy4;  // core/cuda/async_copy.cuh

// A metadata element of dtype t (fp16 / bf16 / fp32) from the word that holds it, `shift` bits up (word_shift), exact.
__device__ __forceinline__ float meta_from_word(std::uint32_t w, DType t, unsigned shift) {
  if (t == DType::f32) return __uint_as_float(w);
  const unsigned short bits = static_cast<unsigned short>(w >> shift);
  return t == DType::f16 ? __half2float(__ushort_as_half(bits)) : __uint_as_float(static_cast<unsigned>(bits) << 16);
}

// A direct channel-axis child's tile [tr0, tr0 + n) in registers: row r's code words at codes + r * row_words and its
// group's metadata elements at scales / mins + r * meta_stride bytes. Built once per call from the warp's block setup,
// which lives in shared memory: the loops below would otherwise reload every field per row, as the copies they issue
// write shared memory too (the compiler cannot keep a shared-memory field in a register across them).
struct RowTile {
  const std::uint32_t* codes;
  const std::uint8_t *scales, *mins;
  int row_words, meta_stride;
  DType sd;
  bool meta, with_min, second;  // second: the tile's codes need a second word (2-bit codes, n > 16)
};
__device__ __forceinline__ RowTile row_tile(const af::ChildView& v, const DirectChild& d, std::int64_t tr0, int n) {
  RowTile t;
  const unsigned b = v.code_bits;
  t.codes = d.words + d.first_row * d.row_words + tr0 * b / 32;
  t.sd = v.f.scale_dtype;
  t.meta = af::has_meta(v.f);
  t.with_min = v.f.codec == af::ChildCodec::uniform;
  const int size = dtype_size(t.sd);
  const std::int64_t g0 = d.first_row * d.groups_per_row + (tr0 >> d.group_shift);
  t.scales = d.scales + g0 * size;
  t.mins = t.with_min ? d.mins + g0 * size : nullptr;
  t.row_words = static_cast<int>(d.row_words);
  t.meta_stride = static_cast<int>(d.groups_per_row) * size;
  t.second = b == 2 && n > 16;
  return t;
}
// The aligned word holding the metadata element at p (an fp32 element is aligned, an fp16 / bf16 one is the low or
// the high half of its word), and the element's shift in it.
__device__ __forceinline__ const void* aligned_word(const std::uint8_t* p) {
  return reinterpret_cast<const void*>(reinterpret_cast<std::uintptr_t>(p) & ~std::uintptr_t{3});
}
__device__ __forceinline__ unsigned word_shift(const std::uint8_t* p) {
  return static_cast<unsigned>(reinterpret_cast<std::uintptr_t>(p) & 2u) * 8u;
}

// Channel-axis rows [i0, i1) of a direct child for the tile [tr0, tr0 + n): issue (into raw words rw0/rw1 and metadata
// words rm0/rm1, indexed by part index), then, at the next tile, convert as stage_rows does.
__device__ inline void issue_rows(const af::ChildView& v, const DirectChild& d, std::int64_t tr0, int n, int i0, int i1,
                                  std::uint32_t* rw0, std::uint32_t* rw1, std::uint32_t* rm0, std::uint32_t* rm1,
                                  unsigned lane) {
  const RowTile t = row_tile(v, d, tr0, n);
  for (int i = i0 + static_cast<int>(lane); i < i1; i += 32) {
    const int r = i - i0;
    const std::uint32_t* src = t.codes + r * t.row_words;
    copy4(rw0 + i, src);
    if (t.second) copy4(rw1 + i, src + 1);
    if (t.meta) {
      copy4(rm0 + i, aligned_word(t.scales + r * t.meta_stride));
      if (t.with_min) copy4(rm1 + i, aligned_word(t.mins + r * t.meta_stride));
    }
  }
}
__device__ inline void convert_rows(const af::ChildView& v, const DirectChild& d, std::int64_t tr0, int n, int i0, int i1,
                                    const std::uint32_t* rw0, const std::uint32_t* rw1, const std::uint32_t* rm0,
                                    const std::uint32_t* rm1, float2* ab, std::uint32_t* w0, std::uint32_t* w1, bool unzip,
                                    unsigned lane) {
  const RowTile t = row_tile(v, d, tr0, n);
  const af::ChildFormat f = v.f;
  const unsigned b = v.code_bits;
  const std::uint32_t keep = n * static_cast<int>(b) >= 32 ? ~0u : (1u << (n * b)) - 1u;
  const std::uint32_t keep1 = n >= 32 ? ~0u : (n > 16 ? (1u << (2 * (n - 16))) - 1u : 0u);
  for (int i = i0 + static_cast<int>(lane); i < i1; i += 32) {
    const int r = i - i0;
    std::uint32_t w[as::kMaxRowWords] = {rw0[i] & keep, t.second ? rw1[i] & keep1 : 0u, 0u, 0u};
    af::Meta m;
    if (t.meta) {
      const std::uint8_t* sp = t.scales + r * t.meta_stride;
      m.scale = meta_from_word(rm0[i], t.sd, word_shift(sp));
      if (t.with_min) m.mn = meta_from_word(rm1[i], t.sd, word_shift(t.mins + r * t.meta_stride));
    }
    const tc::CodeAffine ca = tc::code_affine(f, m);
    ab[i] = make_float2(ca.a, ca.b);
    tc::to_slots(w, b);
    w0[i] = unzip ? tc::unzip_pairs(w[0]) : w[0];
    w1[i] = unzip ? tc::unzip_pairs(w[1]) : w[1];
  }
}

// Token-axis values of a direct child for the tile whose first token row is row0 (n tokens): entry e = j groups + gr
// of the metadata is token j's group gr, at element row0 groups + e; with 2-bit codes (a token row of D / 16 words)
// the code words of the tile are contiguous, word e = token j's word k = e - j tiles16.
struct TokenTile {
  const std::uint32_t* words;  // token row0's first word
  const std::uint8_t *scales, *mins;  // token row0's group 0 elements
  int size;
  DType sd;
  bool meta, with_min;
};
__device__ __forceinline__ TokenTile token_tile(const af::ChildView& v, const DirectChild& d, std::int64_t row0, int groups) {
  TokenTile t;
  t.words = d.words + row0 * d.row_words;
  t.sd = v.f.scale_dtype;
  t.size = dtype_size(t.sd);
  t.meta = af::has_meta(v.f);
  t.with_min = v.f.codec == af::ChildCodec::uniform;
  t.scales = d.scales + row0 * groups * t.size;
  t.mins = t.with_min ? d.mins + row0 * groups * t.size : nullptr;
  return t;
}

// A lane's walk over the token-axis value words [32 tokens][tiles16 words of 16 channels]: entry e = lane + 32 r is
// token j = e / tiles16, word k = e % tiles16, advanced without divisions.
struct TokenWordWalk {
  int e, j, k, dj, dk, tiles16;
  __device__ TokenWordWalk(unsigned lane, int t16)
      : e(static_cast<int>(lane)), j(e / t16), k(e % t16), dj(32 / t16), dk(32 % t16), tiles16(t16) {}
  __device__ void next() {
    e += 32;
    j += dj;
    k += dk;
    if (k >= tiles16) {
      k -= tiles16;
      ++j;
    }
  }
};

// Per warp in shared memory: the parts of the warp's current key and value blocks and their direct views,
// recomputed when a tile's block changes (part_of is a few hundred integer operations; the registers stay free).
struct BlockSetup {
  af::PartRef kp, vp;
  DirectChild k1, k2, v;
  std::int64_t kbegin = 0, vbegin = 0;  // the blocks' first tokens
  std::int32_t kblock = -1, vblock = -1;
};

// 3 blocks of 4 warps per multiprocessor: about 165 registers, no spills (2 blocks measured no faster; 4 blocks, 128
// registers: about 300 bytes spill).
// kD: head_dim as a compile-time constant (128: the staging loops over channels unroll, the shared-memory offsets are
// constants), or 0 for head_dim read from p (any multiple of 16 up to kMaxHeadDim).
template <bool kTokenValues, int kD>
__global__ void __launch_bounds__(kThreads, 3) tensor_core_kernel(const Problem p) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const unsigned lane = threadIdx.x % 32u;
  const int g = static_cast<int>(lane >> 2), tig = static_cast<int>(lane & 3u);
  const int D = kD != 0 ? kD : static_cast<int>(p.channels), Q = static_cast<int>(p.qpk), tiles16 = D / 16;
  __shared__ std::uint16_t trit_slots[ternary_format::kByteSlotEntries];
  for (int i = threadIdx.x; i < ternary_format::kByteSlotEntries; i += kThreads) trit_slots[i] = ternary_format::base3_byte_slots(static_cast<unsigned>(i));
  const bool transform = af::needs_transform(p.key);
  const bool raw_values = value_words_direct(p.value.first);
  const TcWarpLayout lay = tc_warp_layout(D, transform, raw_values);
  float* q = smem;  // qT[D][kMaxQ]
  float* wbase = smem + kMaxQ * D + warp * lay.total;
  float* tq = wbase + lay.tq;
  float2* kab = reinterpret_cast<float2*>(wbase + lay.kab);
  std::uint32_t* kw = reinterpret_cast<std::uint32_t*>(wbase + lay.kw);
  float2* vab = reinterpret_cast<float2*>(wbase + lay.vab);
  std::uint32_t* vw = reinterpret_cast<std::uint32_t*>(wbase + lay.vw);
  float* prob = wbase + lay.prob;
  load_queries(p, q, b, h);
  __syncthreads();

  const SequenceEntry seq = p.sequences[b];
  const TileRange range = split_tiles(seq.fast_count, p.splits, s);
  // This lane's partial: heads 2 tig + e (e = 0, 1); acc[m][r]: channel 16 m + g + 8 (r / 2), head 2 tig + r % 2.
  float m[2] = {-HUGE_VALF, -HUGE_VALF}, l[2] = {0.0f, 0.0f};
  float acc[kMaxTiles16][4];
#pragma unroll
  for (int t = 0; t < kMaxTiles16; ++t)
    for (int r = 0; r < 4; ++r) acc[t][r] = 0.0f;
  const af::ChildFormat& vf = p.value.first;
  const unsigned vb = as::staged_bits(vf);
  const std::uint32_t key_offset = code_offset(0);
  const std::uint32_t value_offset = code_offset(vf.codec == af::ChildCodec::ternary ? 1u : 0u);
  const int value_group = static_cast<int>(vf.group);

  // The tile entries are read one tile ahead and the blocks' parts set up once per block (the block entry is a
  // dependent global load: tile -> block -> codes), so that a tile waits for one round trip, its codes and metadata.
  __shared__ BlockSetup setups[kWarps];
  BlockSetup& su = setups[warp];
  if (lane == 0) {
    su.kblock = -1;
    su.vblock = -1;
  }
  __syncwarp();
  // Warp w takes tiles w, w + kWarps, ... of the split: the block's 4 warps read neighbouring tiles at once, whose
  // codes share 32-byte sectors (a row of a tile is 8 bytes of a 2-bit channel-axis child).
  std::uint32_t* raw = reinterpret_cast<std::uint32_t*>(wbase + lay.raw);
  std::uint32_t *rk0 = raw, *rk1 = raw + D, *rkm0 = raw + 2 * D, *rkm1 = raw + 3 * D;
  std::uint32_t *rv0 = raw + 4 * D, *rv1 = raw + 5 * D, *rvm0 = raw + 6 * D, *rvm1 = raw + 8 * D;
  bool keys_ready = false, values_ready = false;  // raw holds this tile's key / value words (issued at the last tile)
  TileEntry next = range.first + warp < range.last ? p.tiles[seq.tile_begin + range.first + warp] : TileEntry{};
  for (std::int64_t ti = range.first + warp; ti < range.last; ti += kWarps) {
    const TileEntry tile = next;
    const bool has_next = ti + kWarps < range.last;
    if (has_next) next = p.tiles[seq.tile_begin + ti + kWarps];
    __syncwarp();  // the previous tile's reads of the staged words, affines, probabilities and setup are done
    const bool new_key_block = tile.key_block != su.kblock, new_value_block = tile.value_block != su.vblock;
    __syncwarp();  // every lane has read the setup's block indices before lane 0 rewrites them
    if (new_key_block) {
      const BlockEntry kb = p.key_blocks[tile.key_block];
      const af::PartRef kp = af::part_of(p.key, kb.bytes, p.heads, kb.tokens, p.channels, h);
      const DirectChild d1 = direct_child(kp.first), d2 = direct_child(kp.second);
      if (lane == 0) {
        su.kp = kp;
        su.k1 = d1;
        su.k2 = d2;
        su.kbegin = kb.begin;
        su.kblock = tile.key_block;
      }
      if (transform) load_transformed(p, tile.key_block, h, tq, static_cast<int>(lane));  // warp-synchronous
      __syncwarp();
    }
    if (new_value_block) {
      const BlockEntry vb_ = p.value_blocks[tile.value_block];
      const af::PartRef vp = af::part_of(p.value, vb_.bytes, p.heads, vb_.tokens, p.channels, h);
      const DirectChild dv = direct_child(vp.first);
      if (lane == 0) {
        su.vp = vp;
        su.v = dv;
        su.vbegin = vb_.begin;
        su.vblock = tile.value_block;
      }
      __syncwarp();
    }
    const int n = tile.n;
    const af::PartRef& kp = su.kp;
    const std::int64_t ktr0 = tile.t0 - su.kbegin, vtr0 = tile.t0 - su.vbegin;
    const int first_n = kp.first_n == D ? D : static_cast<int>(kp.first_n);  // D: a compile-time constant where kD is
    const float* qk = transform ? tq : q;  // the query in the block's key coordinates
    const af::ChildView& tv = su.vp.first;
    const int groups = static_cast<int>(tv.groups_per_row);
    const std::int64_t row0 = tv.head * tv.rows + vtr0;  // token-axis values: the tile's first token row
    // 1. Stage the tile: words that arrived in `raw` during the previous tile are converted, the others read now.
    if (keys_ready || values_ready) {
      cuda_async::wait_all();
      __syncwarp();
    }
    if (keys_ready) {
      if (first_n == D) {  // one child: the loop's bound is D
        convert_rows(kp.first, su.k1, ktr0, n, 0, D, rk0, rk1, rkm0, rkm1, kab, kw, kw + D, false, lane);
      } else {
        convert_rows(kp.first, su.k1, ktr0, n, 0, first_n, rk0, rk1, rkm0, rkm1, kab, kw, kw + D, false, lane);
        convert_rows(kp.second, su.k2, ktr0, n, first_n, D, rk0, rk1, rkm0, rkm1, kab, kw, kw + D, false, lane);
      }
    } else {
      // The keys: per part index its affine and its 32 codes as 2-bit slots (tokens past n are zero codes).
      stage_rows(kp.first, su.k1, ktr0, n, 0, first_n, kab, kw, kw + D, false, trit_slots, lane);
      if (first_n < D) stage_rows(kp.second, su.k2, ktr0, n, first_n, D, kab, kw, kw + D, false, trit_slots, lane);
    }
    if (values_ready) {
      if constexpr (kTokenValues) {
        const TokenTile t = token_tile(tv, su.v, row0, groups);
        const int valid = n * groups;  // entries e = j groups + gr of tokens j < n
        for (int e = lane; e < 32 * groups; e += 32) {
          float2 ab = make_float2(0.0f, 0.0f);  // tokens past n: weight 0 times a finite 0
          if (e < valid) {
            af::Meta m;
            if (t.meta) {
              m.scale = meta_from_word(rvm0[e], t.sd, word_shift(t.scales + e * t.size));
              if (t.with_min) m.mn = meta_from_word(rvm1[e], t.sd, word_shift(t.mins + e * t.size));
            }
            const tc::CodeAffine ca = tc::code_affine(vf, m);
            ab = make_float2(ca.a, ca.b);
          }
          vab[e] = ab;
        }
        if (vb == 2) {
          const int valid_words = n * tiles16;
          for (int e = lane; e < 32 * tiles16; e += 32) vw[e] = e < valid_words ? rv0[e] : 0u;
        } else {
          for (TokenWordWalk w(lane, tiles16); w.e < 32 * tiles16; w.next())
            vw[w.e] = w.j >= n ? 0u : tc::spread_bits(rv0[w.e] >> (16 * (w.k % 2)));
        }
      } else {
        convert_rows(tv, su.v, vtr0, n, 0, D, rv0, rv1, rvm0, rvm1, vab, vw, vw + D, true, lane);
      }
    } else {
      if constexpr (kTokenValues) {
        const DirectChild& d = su.v;
        for (int e = lane; e < 32 * groups; e += 32) {
          const int j = e / groups, gr = e - j * groups;
          float2 ab = make_float2(0.0f, 0.0f);  // tokens past n: weight 0 times a finite 0
          if (j < n) {
            const std::int64_t gi = (row0 + j) * groups + gr;
            if (d.ok) {
              ab = direct_affine(tv, d, gi);
            } else {
              const tc::CodeAffine ca = tc::code_affine(vf, as::staged_meta(tv, gi));
              ab = make_float2(ca.a, ca.b);
            }
          }
          vab[e] = ab;
        }
        for (TokenWordWalk w(lane, tiles16); w.e < 32 * tiles16; w.next()) {
          std::uint32_t word = 0u;
          if (w.j < n) {
            if (d.ok) {  // 16 channels of a token row: a word (2 bits) or half a word (1 bit)
              const std::uint32_t* row = d.words + (row0 + w.j) * d.row_words;
              word = vb == 2 ? row[w.k] : tc::spread_bits(row[w.k / 2] >> (16 * (w.k % 2)));
            } else {
              word = as::token_run(tv, vtr0 + w.j, 16 * w.k, 16, trit_slots);
              if (vb == 1) word = tc::spread_bits(word);
            }
          }
          vw[w.e] = word;
        }
      } else {
        stage_rows(tv, su.v, vtr0, n, 0, D, vab, vw, vw + D, true, trit_slots, lane);
      }
    }
    __syncwarp();  // the staged tile is visible to the warp, and `raw` is free
    // Prefetch the next tile's words, each side when the tile lies in the same block and its children are direct.
    const std::int64_t nk = next.t0 - su.kbegin, nv = next.t0 - su.vbegin;
    keys_ready = has_next && next.key_block == su.kblock && direct_start(kp.first, su.k1, nk) &&
                 (first_n == D || direct_start(kp.second, su.k2, nk));
    values_ready = raw_values && has_next && next.value_block == su.vblock &&
                   (kTokenValues ? su.v.ok : direct_start(tv, su.v, nv));
    if (keys_ready) {
      if (first_n == D) {
        issue_rows(kp.first, su.k1, nk, next.n, 0, D, rk0, rk1, rkm0, rkm1, lane);
      } else {
        issue_rows(kp.first, su.k1, nk, next.n, 0, first_n, rk0, rk1, rkm0, rkm1, lane);
        issue_rows(kp.second, su.k2, nk, next.n, first_n, D, rk0, rk1, rkm0, rkm1, lane);
      }
    }
    {
      if (values_ready) {
        if constexpr (kTokenValues) {
          const TokenTile t = token_tile(tv, su.v, tv.head * tv.rows + nv, groups);
          if (t.meta)
            for (int e = lane; e < next.n * groups; e += 32) {
              copy4(rvm0 + e, aligned_word(t.scales + e * t.size));
              if (t.with_min) copy4(rvm1 + e, aligned_word(t.mins + e * t.size));
            }
          if (vb == 2) {  // the tile's words are contiguous: 16-byte copies where aligned and whole per token
            const int valid_words = next.n * tiles16;
            if (tiles16 % 4 == 0 && (reinterpret_cast<std::uintptr_t>(t.words) & 15u) == 0) {
              for (int c = 4 * static_cast<int>(lane); c < valid_words; c += 128) cuda_async::copy16(rv0 + c, t.words + c);
            } else {
              for (int e = lane; e < valid_words; e += 32) copy4(rv0 + e, t.words + e);
            }
          } else {
            const DirectChild& d = su.v;
            const std::int64_t nrow0 = tv.head * tv.rows + nv;
            for (TokenWordWalk w(lane, tiles16); w.e < 32 * tiles16; w.next())
              if (w.j < next.n) copy4(rv0 + w.e, d.words + (nrow0 + w.j) * d.row_words + w.k / 2);
          }
        } else {
          issue_rows(tv, su.v, nv, next.n, 0, D, rv0, rv1, rvm0, rvm1, lane);
        }
      }
      if (keys_ready || values_ready) cuda_async::commit();
    }

    // 2. Scores: sc[half][r] = token 16 half + g + 8 (r / 2), head 2 tig + r % 2.
    float sc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    float bias = 0.0f;  // sum_i q_i b_i for head g, this lane's indices
    const unsigned gsh = 2u * static_cast<unsigned>(g);
    constexpr int kScoreUnroll = kD != 0 ? kD / 16 : 4;  // whole with a constant head_dim
#pragma unroll kScoreUnroll
    for (int k = 0; k < tiles16; ++k) {
      const int i0 = 16 * k + 2 * tig;
      const float2 f0 = kab[i0], f1 = kab[i0 + 1], f8 = kab[i0 + 8], f9 = kab[i0 + 9];
      const float q0 = qk[i0 * kMaxQ + g], q1 = qk[(i0 + 1) * kMaxQ + g];
      const float q8 = qk[(i0 + 8) * kMaxQ + g], q9 = qk[(i0 + 9) * kMaxQ + g];
      bias = __fmaf_rn(q0, f0.y, bias);
      bias = __fmaf_rn(q1, f1.y, bias);
      bias = __fmaf_rn(q8, f8.y, bias);
      bias = __fmaf_rn(q9, f9.y, bias);
      const SplitPair b01 = split_bf16(__fmul_rn(q0, f0.x), __fmul_rn(q1, f1.x));
      const SplitPair b89 = split_bf16(__fmul_rn(q8, f8.x), __fmul_rn(q9, f9.x));
#pragma unroll
      for (int half = 0; half < 2; ++half) {
        const std::uint32_t* w = kw + half * D;
        const std::uint32_t x0 = biased_slot_pair(w[i0], gsh), x1 = biased_slot_pair(w[i0 + 1], gsh);
        const std::uint32_t x8 = biased_slot_pair(w[i0 + 8], gsh), x9 = biased_slot_pair(w[i0 + 9], gsh);
        const std::uint32_t a[4] = {codes_bf16(__byte_perm(x0, x1, 0x5410), key_offset),
                                    codes_bf16(__byte_perm(x0, x1, 0x7632), key_offset),
                                    codes_bf16(__byte_perm(x8, x9, 0x5410), key_offset),
                                    codes_bf16(__byte_perm(x8, x9, 0x7632), key_offset)};
        mma_bf16(sc[half], a, b01.hi, b89.hi);
        mma_bf16(sc[half], a, b01.lo, b89.lo);
      }
    }
    bias += __shfl_xor_sync(0xffffffffu, bias, 1);
    bias += __shfl_xor_sync(0xffffffffu, bias, 2);
    const float bias_h[2] = {__shfl_sync(0xffffffffu, bias, 8 * tig), __shfl_sync(0xffffffffu, bias, 8 * tig + 4)};

    // 3. Online softmax per head 2 tig + e; the tile's probabilities to prob[token][head].
    float alpha[2], tile_l[2];
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const bool head_on = 2 * tig + e < Q;
      float sv[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int half = r / 2, t = 16 * half + g + 8 * (r % 2);
        sv[r] = t < n ? __fmul_rn(__fadd_rn(sc[half][(r % 2) * 2 + e], bias_h[e]), p.score_scale) : -HUGE_VALF;
      }
      float tmax = fmaxf(fmaxf(sv[0], sv[1]), fmaxf(sv[2], sv[3]));
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 4));
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 8));
      tmax = fmaxf(tmax, __shfl_xor_sync(0xffffffffu, tmax, 16));
      const float mn = fmaxf(m[e], tmax);
      alpha[e] = af::merge_factor(m[e], mn);
      float psum = 0.0f;
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int half = r / 2, t = 16 * half + g + 8 * (r % 2);
        const float pe = (head_on && t < n) ? exp2f(sv[r] - mn) : 0.0f;
        prob[t * kMaxQ + 2 * tig + e] = pe;
        psum += pe;
      }
      psum += __shfl_xor_sync(0xffffffffu, psum, 4);
      psum += __shfl_xor_sync(0xffffffffu, psum, 8);
      psum += __shfl_xor_sync(0xffffffffu, psum, 16);
      l[e] = l[e] * alpha[e] + psum;
      m[e] = mn;
      tile_l[e] = psum;
    }
    __syncwarp();

    // 4. Values. B rows: tokens 16 k + 2 tig (+1, +8, +9), column (head) g.
    float pk[2][4];
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int t0 = 16 * k + 2 * tig;
      pk[k][0] = prob[t0 * kMaxQ + g];
      pk[k][1] = prob[(t0 + 1) * kMaxQ + g];
      pk[k][2] = prob[(t0 + 8) * kMaxQ + g];
      pk[k][3] = prob[(t0 + 9) * kMaxQ + g];
    }
    if constexpr (!kTokenValues) {
      SplitPair bp[2][2];
#pragma unroll
      for (int k = 0; k < 2; ++k) {
        bp[k][0] = split_bf16(pk[k][0], pk[k][1]);
        bp[k][1] = split_bf16(pk[k][2], pk[k][3]);
      }
      const unsigned tsh = 2u * static_cast<unsigned>(tig);
#pragma unroll
      for (int mt = 0; mt < kMaxTiles16; ++mt) {
        if (mt >= tiles16) break;
        float ct[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        const int c = 16 * mt + g;
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          const std::uint32_t wg = vw[k * D + c], wg8 = vw[k * D + c + 8];
          const std::uint32_t a[4] = {codes_bf16(biased_slot_pair(wg, tsh), value_offset),
                                      codes_bf16(biased_slot_pair(wg8, tsh), value_offset),
                                      codes_bf16(biased_slot_pair(wg, tsh + 8u), value_offset),
                                      codes_bf16(biased_slot_pair(wg8, tsh + 8u), value_offset)};
          mma_bf16(ct, a, bp[k][0].hi, bp[k][1].hi);
          mma_bf16(ct, a, bp[k][0].lo, bp[k][1].lo);
        }
        const float2 fg = vab[c], fg8 = vab[c + 8];
        acc[mt][0] = __fadd_rn(__fmul_rn(acc[mt][0], alpha[0]), __fadd_rn(__fmul_rn(fg.x, ct[0]), __fmul_rn(fg.y, tile_l[0])));
        acc[mt][1] = __fadd_rn(__fmul_rn(acc[mt][1], alpha[1]), __fadd_rn(__fmul_rn(fg.x, ct[1]), __fmul_rn(fg.y, tile_l[1])));
        acc[mt][2] = __fadd_rn(__fmul_rn(acc[mt][2], alpha[0]), __fadd_rn(__fmul_rn(fg8.x, ct[2]), __fmul_rn(fg8.y, tile_l[0])));
        acc[mt][3] = __fadd_rn(__fmul_rn(acc[mt][3], alpha[1]), __fadd_rn(__fmul_rn(fg8.x, ct[3]), __fmul_rn(fg8.y, tile_l[1])));
      }
    } else {
#pragma unroll
      for (int mt = 0; mt < kMaxTiles16; ++mt) {
        acc[mt][0] *= alpha[0];
        acc[mt][1] *= alpha[1];
        acc[mt][2] *= alpha[0];
        acc[mt][3] *= alpha[1];
      }
      SplitPair bp[2][2];
      float bias_v[2] = {0.0f, 0.0f};
      // Group gr of MMA tile mt is 16 mt / value_group (formats_ok: value_group is a multiple of 16), counted
      // instead of divided: tiles_per_group tiles per group.
      const int tiles_per_group = value_group / 16;
      int gr = 0, in_group = 0;
#pragma unroll
      for (int mt = 0; mt < kMaxTiles16; ++mt) {
        if (mt >= tiles16) break;
        if (mt > 0 && ++in_group == tiles_per_group) {
          in_group = 0;
          ++gr;
        }
        if (in_group == 0) {  // B = p a of group gr, and sum_t p b of it for head g, moved to heads 2 tig (+1)
          float bsum = 0.0f;
#pragma unroll
          for (int k = 0; k < 2; ++k) {
            const int t0 = 16 * k + 2 * tig;
            const float2 f0 = vab[t0 * groups + gr], f1 = vab[(t0 + 1) * groups + gr];
            const float2 f8 = vab[(t0 + 8) * groups + gr], f9 = vab[(t0 + 9) * groups + gr];
            bp[k][0] = split_bf16(__fmul_rn(pk[k][0], f0.x), __fmul_rn(pk[k][1], f1.x));
            bp[k][1] = split_bf16(__fmul_rn(pk[k][2], f8.x), __fmul_rn(pk[k][3], f9.x));
            bsum = __fmaf_rn(pk[k][0], f0.y, bsum);
            bsum = __fmaf_rn(pk[k][1], f1.y, bsum);
            bsum = __fmaf_rn(pk[k][2], f8.y, bsum);
            bsum = __fmaf_rn(pk[k][3], f9.y, bsum);
          }
          bsum += __shfl_xor_sync(0xffffffffu, bsum, 1);
          bsum += __shfl_xor_sync(0xffffffffu, bsum, 2);
          bias_v[0] = __shfl_sync(0xffffffffu, bsum, 8 * tig);
          bias_v[1] = __shfl_sync(0xffffffffu, bsum, 8 * tig + 4);
        }
#pragma unroll
        for (int k = 0; k < 2; ++k) {
          const int t0 = 16 * k + 2 * tig;
          const std::uint32_t x0 = biased_slot_pair(vw[t0 * tiles16 + mt], gsh);
          const std::uint32_t x1 = biased_slot_pair(vw[(t0 + 1) * tiles16 + mt], gsh);
          const std::uint32_t x8 = biased_slot_pair(vw[(t0 + 8) * tiles16 + mt], gsh);
          const std::uint32_t x9 = biased_slot_pair(vw[(t0 + 9) * tiles16 + mt], gsh);
          const std::uint32_t a[4] = {codes_bf16(__byte_perm(x0, x1, 0x5410), value_offset),
                                      codes_bf16(__byte_perm(x0, x1, 0x7632), value_offset),
                                      codes_bf16(__byte_perm(x8, x9, 0x5410), value_offset),
                                      codes_bf16(__byte_perm(x8, x9, 0x7632), value_offset)};
          mma_bf16(acc[mt], a, bp[k][0].hi, bp[k][1].hi);
          mma_bf16(acc[mt], a, bp[k][0].lo, bp[k][1].lo);
        }
        acc[mt][0] += bias_v[0];
        acc[mt][1] += bias_v[1];
        acc[mt][2] += bias_v[0];
        acc[mt][3] += bias_v[1];
      }
    }
  }

  // The warp's partial to shared memory (wm, wl, wacc as merge_warp_partials reads them), then the block's merge.
  __syncthreads();
  write_mma_warp_partial(smem, warp, Q, D, tiles16, g, tig, m, l, acc);
  __syncthreads();
  merge_warp_partials(p, smem, b, h, s);
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) VIDKV_THROW(CudaError, "decode attention (tensor cores): ", what, ": ", cudaGetErrorString(e));
}

using TcKernel = void (*)(const Problem);

// VIDKV_CUDA_TC_HEAD_DIM=runtime keeps head_dim 128 on the kernel that reads it from p (A / B measurements).
bool head_dim_constant() {
  static const bool off = env_equals("VIDKV_CUDA_TC_HEAD_DIM", "runtime");
  return !off;
}

// The instantiation for p: token- or channel-axis values; head_dim 128 as a constant where it is.
TcKernel kernel_for(const Problem& p) {
  const bool token_values = p.value.first.axis == group_format::GroupAxis::token;
  if (p.channels == 128 && head_dim_constant()) return token_values ? tensor_core_kernel<true, 128> : tensor_core_kernel<false, 128>;
  return token_values ? tensor_core_kernel<true, 0> : tensor_core_kernel<false, 0>;
}

std::size_t smem_bytes(const Problem& p) {
  return tc_smem_floats(p.qpk, p.channels, af::needs_transform(p.key), value_words_direct(p.value.first)) * sizeof(float);
}

// Always opted in: the kernel's static shared memory (the block setups, the digit table) adds to the dynamic part,
// so the sum can pass the 48 KB default while the dynamic part alone does not.
void set_smem(const Problem& p) {
  cuda_kernels::allow_dynamic_smem(reinterpret_cast<const void*>(kernel_for(p)), smem_bytes(p), "decode attention (tensor-core kernel)");
}

}  // namespace

void launch_tensor_core(const Problem& p, void* stream, bool beside_previous) {
  VIDKV_REQUIRE(tc::formats_ok(p) && p.qpk >= 1 && p.qpk <= kMaxQ, NotSupportedError,
                "decode attention: the tensor-core kernel does not take these formats (attention_tensor_core::formats_ok)");
  if (p.splits == 0) return;
  set_smem(p);
  const dim3 grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  auto st = static_cast<cudaStream_t>(stream);
  const TcKernel kernel = kernel_for(p);
  if (beside_previous)
    check(launch_beside_previous(kernel, grid, dim3(kThreads), smem_bytes(p), st, p), "kernel launch");
  else
    kernel<<<grid, kThreads, smem_bytes(p), st>>>(p);
  check(cudaGetLastError(), "kernel launch");
}

int tensor_core_blocks_per_sm(const Problem& p) {
  return cuda_kernels::resident_blocks(reinterpret_cast<const void*>(kernel_for(p)), kThreads, smem_bytes(p), "decode attention (tensor-core kernel)");
}

}  // namespace vidkv::attention_cuda
