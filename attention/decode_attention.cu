// Fused decode attention kernels (decode_attention_cuda.h). C++17; the per-element reads are the host-device
// functions of decode_attention_format.h / decode_attention_tables.h, which the CPU emulation
// (decode_attention_emulation.cpp) runs in the same tile / split order and the [cpu] tests check.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "vidkv/attention/decode_attention_cuda.h"
#include "vidkv/attention/decode_attention_device.cuh"
#include "vidkv/attention/decode_attention_fragment.h"
#include "vidkv/attention/decode_attention_staging.h"
#include "vidkv/core/cuda/dependent_launch.cuh"
#include "vidkv/core/cuda/kernel_occupancy.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"

namespace vidkv::attention_cuda {

namespace af = attention_format;
using namespace attention_tables;

namespace {

using namespace device;

// Shared memory (floats, 16-byte aligned pieces): the block's queries transposed and padded to kMaxQ heads,
// qT[D][kMaxQ] (zeros past qpk: a score update is two 16-byte loads and kMaxQ FMAs per element); per warp the
// transformed query tqT[W][kMaxQ] (W = key_width: D, or up to 2 D with fft: complex keys), the staged key metadata
// (W Meta) and value metadata (value_meta_capacity(D) Meta). The merge at the end reuses it: per warp m[qpk],
// l[qpk], acc[qpk][D].
__host__ __device__ inline std::int64_t warp_floats(std::int64_t d, std::int64_t w) {
  return (kMaxQ * w + 2 * w + 2 * value_meta_capacity(d) + 3) / 4 * 4;
}
std::size_t smem_floats(std::int64_t qpk, std::int64_t d, std::int64_t w) {
  const std::int64_t work = kMaxQ * d + kWarps * warp_floats(d, w);
  const std::int64_t merge = kWarps * qpk * (d + 2);
  return static_cast<std::size_t>(work > merge ? work : merge);
}

static_assert(kMaxQ == 8, "score_update reads two float4 per channel");

// sc[hq] += qT[i][hq] * k for all kMaxQ (padded) heads: two 16-byte shared loads and kMaxQ fused multiply-adds
// (one rounding per term; the tolerance's (D + 4) u per score bounds separate roundings too).
__device__ inline void score_update(float (&sc)[kMaxQ], const float* qT, std::int64_t i, float k) {
  const float4 a = *reinterpret_cast<const float4*>(qT + i * kMaxQ);
  const float4 b = *reinterpret_cast<const float4*>(qT + i * kMaxQ + 4);
  sc[0] = __fmaf_rn(a.x, k, sc[0]);
  sc[1] = __fmaf_rn(a.y, k, sc[1]);
  sc[2] = __fmaf_rn(a.z, k, sc[2]);
  sc[3] = __fmaf_rn(a.w, k, sc[3]);
  sc[4] = __fmaf_rn(b.x, k, sc[4]);
  sc[5] = __fmaf_rn(b.y, k, sc[5]);
  sc[6] = __fmaf_rn(b.z, k, sc[6]);
  sc[7] = __fmaf_rn(b.w, k, sc[7]);
}

// An empty online-softmax partial (decode_attention_format.h Partial): m = -inf, l = 0, acc = 0.
template <int kC>
__device__ inline void reset_partial(float (&m)[kMaxQ], float (&l)[kMaxQ], float (&acc)[kMaxQ][kC]) {
#pragma unroll
  for (int hq = 0; hq < kMaxQ; ++hq) {
    m[hq] = -HUGE_VALF;
    l[hq] = 0.0f;
#pragma unroll
    for (int ci = 0; ci < kC; ++ci) acc[hq][ci] = 0.0f;
  }
}

// One tile's online-softmax update of the warp's partial (m, l, acc) for the first Q heads, scores in log2 units
// (sc * score_scale); sc becomes the tile's probabilities exp2(s - m) (0 for an inactive lane and for the padding
// heads hq >= Q).
template <int kC>
__device__ inline void softmax_update(float (&sc)[kMaxQ], bool active, float score_scale, std::int64_t Q,
                                      float (&m)[kMaxQ], float (&l)[kMaxQ], float (&acc)[kMaxQ][kC]) {
#pragma unroll
  for (int hq = 0; hq < kMaxQ; ++hq) {
    if (hq >= Q) {
      sc[hq] = 0.0f;
      continue;
    }
    const float sv = active ? sc[hq] * score_scale : -HUGE_VALF;
    const float mn = fmaxf(m[hq], warp_max(sv));
    const float alpha = af::merge_factor(m[hq], mn);
    const float pe = active ? exp2f(sv - mn) : 0.0f;
    l[hq] = l[hq] * alpha + warp_sum(pe);
#pragma unroll
    for (int ci = 0; ci < kC; ++ci) acc[hq][ci] *= alpha;
    m[hq] = mn;
    sc[hq] = pe;
  }
}

// Merges the block's warps' partials (m, l, acc) in shared memory and writes them as partial `slot` of (sequence b,
// KV head h). Channel c of lane `lane`, value slot ci: c = lane + 32 ci, or kC lane + ci when kInterleaved (the fast
// kernel's token-axis values). Reuses the block's shared memory: every warp must be done with it (a barrier first).
template <int kC, bool kInterleaved>
__device__ inline void write_split_partial(const Problem& p, float* smem, const float (&m)[kMaxQ], const float (&l)[kMaxQ],
                                           const float (&acc)[kMaxQ][kC], std::int64_t b, std::int64_t h, int slot) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t D = p.channels, Q = p.qpk;
  __syncthreads();
  float* wm = smem;
  float* wl = wm + kWarps * Q;
  float* wacc = wl + kWarps * Q;
#pragma unroll
  for (int hq = 0; hq < kMaxQ; ++hq) {
    if (hq >= Q) continue;
    if (lane == 0) {
      wm[warp * Q + hq] = m[hq];
      wl[warp * Q + hq] = l[hq];
    }
#pragma unroll
    for (int ci = 0; ci < kC; ++ci) {
      const std::int64_t c = kInterleaved ? kC * lane + ci : lane + 32 * ci;
      if (c < D) wacc[(warp * Q + hq) * D + c] = acc[hq][ci];
    }
  }
  __syncthreads();
  merge_warp_partials(p, smem, b, h, slot);
}

// --- Residual tiles ------------------------------------------------------------------------------------------------
// The residual window's tokens are exact inputs in the cache's store ([heads, capacity, D] of the store's dtype F,
// af::residual_element): read here with the dtype fixed at compile time, the row address computed once per token
// and the loads unrolled so that several are in flight (per element the same value as residual_element: the load,
// then the rounding to the residual dtype), instead of one element read through the format functions at a time.
// (load_as_float with F a template constant: its dtype branches fold.)

// Scores of one residual token over its channels c0, c0 + step, ... < D: sc[hq] += qT[c][hq] * k_c in that
// order, 8 loads in flight per lane. row: the token's element offset in the store.
template <DType F>
__device__ inline void residual_scores(float (&sc)[kMaxQ], const float* qT, const void* store, std::int64_t row, int D, DType rd,
                                       int c0, int step) {
  constexpr int kU = 8;  // loads in flight per lane
  int c = c0;
  for (; c + (kU - 1) * step < D; c += kU * step) {
    float k[kU];
#pragma unroll
    for (int e = 0; e < kU; ++e) k[e] = load_as_float(store, F, static_cast<std::size_t>(row + c + e * step));
#pragma unroll
    for (int e = 0; e < kU; ++e) score_update(sc, qT, c + e * step, round_to_dtype(k[e], rd));
  }
  for (; c < D; c += step) score_update(sc, qT, c, round_to_dtype(load_as_float(store, F, static_cast<std::size_t>(row + c)), rd));
}

// Narrow tiles (n <= kNarrowTokens: DecodeAttention::kResidualTileTokens, the tiles touching a residual window) take
// 4 lanes per token for the scores: at batch 1 these few tiles are all the general kernel runs, and a warp's serial
// work per tile is its time (32-token tiles with a lane per token over D part indices: 77 us at kivi-2, 32k x 1).
// join_narrow_scores adds the 4 lanes' partial sums of token j (lanes 4 j .. 4 j + 3) by two butterfly shuffles and
// moves token j's scores to lane j, the layout softmax_update reads. The sum order differs from the element-wise
// loop (four partial sums, then two additions): the tolerance's (D + 4) u per score bounds any order.
constexpr int kNarrowLanesPerToken = 4;
constexpr int kNarrowTokens = 32 / kNarrowLanesPerToken;
__device__ inline void join_narrow_scores(float (&sc)[kMaxQ], int lane) {
#pragma unroll
  for (int hq = 0; hq < kMaxQ; ++hq) {
    sc[hq] += __shfl_xor_sync(0xffffffffu, sc[hq], 1);
    sc[hq] += __shfl_xor_sync(0xffffffffu, sc[hq], 2);
    sc[hq] = __shfl_sync(0xffffffffu, sc[hq], (lane % kNarrowTokens) * kNarrowLanesPerToken);
  }
}

// Values of a residual tile of n tokens (row0: the first token's element offset in the store): acc[hq][ci] +=
// p[hq] of token j * v[j][c], c = lane + 32 ci, tokens in order (as the element-wise loop). The loads of four
// tokens are issued before any is used: rows past n and channels past D read a valid element (the last row, the last
// channel) that no product uses, so no load sits behind a branch, and the rounding to the residual dtype (a
// run-time choice) comes after them. It was per element, between the loads, and the compiler kept each load behind
// its branch: one round trip to memory per element (Nsight Compute, kivi-2 64k x 8: about half the general kernel's
// stall samples, long scoreboard on the conversion after each 2-byte load).
template <DType F, int kC>
__device__ inline void residual_values(float (&acc)[kMaxQ][kC], const float (&sc)[kMaxQ], std::int64_t Q, const void* store,
                                       std::int64_t row0, int D, int n, DType rd, int lane) {
  constexpr int kJ = 4;
  // An element of dtype F rounded to rd changes only where rd is narrower or of another kind (fp16 <-> bf16).
  const bool rounds = rd != F && rd != DType::f32;
  for (int j0 = 0; j0 < n; j0 += kJ) {
    float v[kJ][kC];
#pragma unroll
    for (int jj = 0; jj < kJ; ++jj) {
      const std::int64_t row = row0 + static_cast<std::int64_t>(j0 + jj < n ? j0 + jj : n - 1) * D;
#pragma unroll
      for (int ci = 0; ci < kC; ++ci) {
        const int c = lane + 32 * ci;
        v[jj][ci] = load_as_float(store, F, static_cast<std::size_t>(row + (c < D ? c : D - 1)));
      }
    }
    if (rounds) {
#pragma unroll
      for (int jj = 0; jj < kJ; ++jj)
#pragma unroll
        for (int ci = 0; ci < kC; ++ci) v[jj][ci] = round_to_dtype(v[jj][ci], rd);
    }
#pragma unroll
    for (int jj = 0; jj < kJ; ++jj) {
      if (j0 + jj >= n) break;
      float pj[kMaxQ];
#pragma unroll
      for (int hq = 0; hq < kMaxQ; ++hq) pj[hq] = __shfl_sync(0xffffffffu, sc[hq], j0 + jj);
#pragma unroll
      for (int ci = 0; ci < kC; ++ci) {
        if (lane + 32 * ci >= D) break;
#pragma unroll
        for (int hq = 0; hq < kMaxQ; ++hq)
          if (hq < Q) acc[hq][ci] = __fmaf_rn(pj[hq], v[jj][ci], acc[hq][ci]);
      }
    }
  }
}

// Scores of one token (row tr of a key child whose metadata is staged in kmeta) over the part indices i = i0, i0 +
// step, ... < i1 (child index i - base): sc += q_i k_i in index order, each k_i the child's decode of its code. A
// channel-axis child with dense codes (uniform, sign, ternary slots2: the presets' key children) walks its codes by
// bit offset, the row stride added per index, and a uniform child decodes inline: per element a byte load, a field
// extraction and the decode's product and sum, where view_code recomputed the row's 64-bit offset and branched on
// the layout and decode_code on the codec (58 instructions per element in the narrow tiles of the residual windows,
// 28% of the general kernel's instructions at kivi-2 32k x 1). Other children go through view_code. The same
// values and the same order either way.
__device__ inline void staged_key_scores(float (&sc)[kMaxQ], const float* qk, const af::ChildView& v, const af::Meta* kmeta,
                                         std::int64_t tr, std::int64_t i0, std::int64_t step, std::int64_t i1,
                                         std::int64_t base) {
  if (i0 >= i1) return;
  if (v.f.axis == group_format::GroupAxis::channel && v.f.layout == group_format::CodeLayout::dense && v.code_bits > 0) {
    const unsigned code_bits = v.code_bits;
    // dense_get's bit offset of (row, tr), then one row stride per part index
    std::size_t bit = static_cast<std::size_t>(((v.head * v.rows + (i0 - base)) * v.length + tr) * code_bits);
    const auto dbit = static_cast<std::size_t>(step * v.length * code_bits);
    if (v.f.codec == af::ChildCodec::uniform) {
      // kU codes' loads in flight per lane before their products (as residual_scores): a narrow tile's lane walks
      // 32 part indices of a 128-channel key, and one load at a time made that walk a chain of dependent round
      // trips (the general kernel's hottest loop at kivi-2 64k x 1). Same values, same order.
      constexpr int kU = 8;
      std::int64_t i = i0;
      for (; i + (kU - 1) * step < i1; i += kU * step, bit += kU * dbit) {
        unsigned code[kU];
#pragma unroll
        for (int e = 0; e < kU; ++e) code[e] = bits::dense_get_at_bit(v.codes, bit + e * dbit, code_bits);
#pragma unroll
        for (int e = 0; e < kU; ++e) {
          const af::Meta m = kmeta[i + e * step];
          score_update(sc, qk, i + e * step, uniform_format::decode_value(code[e], m.scale, m.mn));
        }
      }
      for (; i < i1; i += step, bit += dbit) {
        const af::Meta m = kmeta[i];
        score_update(sc, qk, i, uniform_format::decode_value(bits::dense_get_at_bit(v.codes, bit, code_bits), m.scale, m.mn));
      }
    } else {
      for (std::int64_t i = i0; i < i1; i += step, bit += dbit)
        score_update(sc, qk, i, af::decode_code(v, bits::dense_get_at_bit(v.codes, bit, code_bits), kmeta[i]));
    }
    return;
  }
  for (std::int64_t i = i0; i < i1; i += step) score_update(sc, qk, i, af::decode_code(v, af::view_code(v, tr, i - base), kmeta[i]));
}

// Whether a narrow tile's keys [tr0, tr0 + n) of key part kp can be read by fragment_key_scores: one child (plain
// keys), uniform 2-bit codes in layout fragment on the channel axis with the part index the channel (no transform),
// the tokens inside one whole 32-token tile and the codes 4-byte aligned (fragment_narrow_tile). Warp-uniform.
__device__ inline bool fragment_narrow_keys(const af::PartRef& kp, std::int64_t tr0, std::int64_t n) {
  const af::ChildView& v = kp.first;
  return kp.second_n == 0 && v.f.codec == af::ChildCodec::uniform && v.f.layout == group_format::CodeLayout::fragment &&
         v.f.axis == group_format::GroupAxis::channel && v.code_bits == 2 && kp.first_n == v.rows &&
         group_format::fragment_channels_ok(v.rows) && fragment_narrow_tile(v.codes, v.length, tr0, n);
}

// Scores of token tr of a narrow tile whose keys fragment_narrow_keys takes, lane t4 of its 4: the channels
// 16 kc + 8 b + 2 t4 + {0, 1} that the token's fragment lane holds (group_format.h fragment_key_word / _field: D / 4
// of them, the count of the element-wise loop's channels t4, t4 + 4, ...), read as D / 32 words with all loads
// issued before any product, then per code a shift and a mask. Per channel c the same decode (uniform_format::
// decode_value with the staged metadata of c) and product (score_update) as staged_key_scores; the lane's channels
// and their order differ, within the tolerance's any-order bound ((D + 4) u per score). It replaces a per-element
// view_code (fragment_code_index's 64-bit index arithmetic and a dependent byte load per code: the general kernel's
// 45 us at kivi-2-fragment 8 x 64k on the H100, Nsight Compute, for the 128 tokens whose values were still exact).
__device__ inline void fragment_key_scores(float (&sc)[kMaxQ], const float* qk, const af::ChildView& v, const af::Meta* kmeta,
                                           std::int64_t tr, int t4) {
  const auto* words = reinterpret_cast<const std::uint32_t*>(v.codes);
  const int kcs = static_cast<int>(v.rows / 16);
  constexpr int kU = 4;  // words in flight per lane (8 chunks kc of 16 channels: 128 channels)
  for (int kc0 = 0; kc0 < kcs; kc0 += 2 * kU) {
    std::uint32_t wd[kU];
#pragma unroll
    for (int e = 0; e < kU; ++e) {
      const int kc = kc0 + 2 * e;  // chunks kc and kc + 1 share a word
      wd[e] = kc < kcs ? words[group_format::fragment_key_word(v.length, v.rows, v.head, tr, t4, kc)] : 0u;
    }
#pragma unroll
    for (int e = 0; e < kU; ++e) {
#pragma unroll
      for (int p = 0; p < 2; ++p) {
        const int kc = kc0 + 2 * e + p;
        if (kc >= kcs) break;
#pragma unroll
        for (int b = 0; b < 2; ++b) {
          const int field = group_format::fragment_key_field(tr, kc, b);
          const int c = 16 * kc + 8 * b + 2 * t4;
          const af::Meta m0 = kmeta[c], m1 = kmeta[c + 1];
          score_update(sc, qk, c, uniform_format::decode_value((wd[e] >> (2 * field)) & 3u, m0.scale, m0.mn));
          score_update(sc, qk, c + 1, uniform_format::decode_value((wd[e] >> (16 + 2 * field)) & 3u, m1.scale, m1.mn));
        }
      }
    }
  }
}

// The general kernel's compact instance (kNarrowOnly, Problem::general_narrow_only): a warp's tiles of a sequence's
// general part, each a narrow residual-window tile with exact values, its keys exact (residual_scores) or in a whole
// fragment tile (fragment_key_scores), both stores of dtype F. The same functions in the same order as the full
// kernel's loop takes for such tiles, so the same results; only the code for other tiles is left out. Why: the full
// instance's code is about 42k instructions, and at kivi-2-fragment 8 x 64k its warps, one narrow tile each, stalled
// on instruction fetch for 47% of their samples (Nsight Compute source counters on the H200: no_inst 1588 of 3408).
template <int kC, DType F>
__device__ __forceinline__ void narrow_residual_tiles(const Problem& p, const SequenceEntry& seq, std::int64_t first_tile,
                                                      const TileRange& range, const float* q, af::Meta* kmeta, std::int64_t h,
                                                      int warp, int lane, float (&m)[kMaxQ], float (&l)[kMaxQ],
                                                      float (&acc)[kMaxQ][kC]) {
  const std::int64_t D = p.channels, Q = p.qpk;
  const int tj = lane / kNarrowLanesPerToken, t4 = lane % kNarrowLanesPerToken;
  for (std::int64_t ti = range.first + warp; ti < range.last; ti += kWarps) {
    const TileEntry tile = p.tiles[first_tile + ti];
    float sc[kMaxQ];
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq) sc[hq] = 0.0f;
    if (tile.key_block >= 0) {
      const af::PartRef kp = key_part(p, tile, h);
      const af::ChildView& v = kp.first;
      const std::int64_t ktr0 = tile.t0 - p.key_blocks[tile.key_block].begin;
      // The tile's group's metadata, fp16 and group-major (Problem::fragment: decode_attention_fragment.h formats_ok):
      // channel c's at entry key_meta_base + c, the values key_meta_entry reads.
      const std::int64_t base = attention_fragment::key_meta_base(v.head, v.groups_per_row, ktr0 / v.f.group, D);
      const auto* scales = reinterpret_cast<const std::uint16_t*>(v.scales) + base;
      const auto* mins = reinterpret_cast<const std::uint16_t*>(v.mins) + base;
      __syncwarp();
#pragma unroll 4
      for (std::int64_t i = lane; i < D; i += 32) kmeta[i] = af::Meta{half_bits_to_float(scales[i]), half_bits_to_float(mins[i])};
      __syncwarp();
      if (tj < tile.n) fragment_key_scores(sc, q, kp.first, kmeta, ktr0 + tj, t4);
    } else if (tj < tile.n) {
      const std::int64_t row = (h * seq.key_capacity + tile.t0 + tj - seq.key_first) * D;
      residual_scores<F>(sc, q, seq.key_full, row, static_cast<int>(D), p.residual_dtype, t4, kNarrowLanesPerToken);
    }
    join_narrow_scores(sc, lane);
    softmax_update(sc, lane < tile.n, p.score_scale, Q, m, l, acc);
    const std::int64_t row0 = (h * seq.value_capacity + tile.t0 - seq.value_first) * D;
    residual_values<F, kC>(acc, sc, Q, seq.value_full, row0, static_cast<int>(D), tile.n, p.residual_dtype, lane);
  }
}

// The general kernel: the tiles of each sequence that are not fast (the residual's, layouts whose codes or metadata
// are not staged), every element through the format functions. kC: value channels per lane (D <= 32 kC): 4 for
// head_dim <= 128 (fewer registers), kMaxC up to 256. kNarrowOnly: the compact instance for Problem::
// general_narrow_only (narrow_residual_tiles), its exact stores of dtype kStore.
template <int kC, bool kNarrowOnly = false, DType kStore = DType::f32>
__global__ void __launch_bounds__(kThreads) split_kernel(const Problem p) {
  // launch() may start the fast / tensor-core kernel beside this one (p.generic_target != 0): its blocks may be
  // dispatched as soon as every block of this one has begun.
  dependent_launch::allow_next_grid();
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t D = p.channels, Q = p.qpk, W = af::key_width(p.key, D);
  float* q = smem;  // qT[D][kMaxQ]
  float* tq = smem + kMaxQ * D + warp * warp_floats(D, W);  // tqT[W][kMaxQ]
  af::Meta* kmeta = reinterpret_cast<af::Meta*>(tq + kMaxQ * W);  // [W]
  af::Meta* vmeta = kmeta + W;                                    // [value_meta_capacity(D)]
  load_queries(p, q, b, h);
  __syncthreads();

  const SequenceEntry seq = p.sequences[b];
  const std::int64_t first_tile = seq.tile_begin + seq.fast_count;
  const TileRange range = split_tiles(seq.tile_count - seq.fast_count, p.generic_splits, s);
  float m[kMaxQ], l[kMaxQ], acc[kMaxQ][kC];
  reset_partial(m, l, acc);
  const bool transform = af::needs_transform(p.key);
  std::int32_t cached_block = INT_MIN;
  // mixed_token values: the protected tokens before the last tile's first token in its block (a warp's tiles of a
  // block come in token order, so each tile counts only the mask bits since the warp's previous one).
  std::int32_t rank_block = INT_MIN;
  std::int64_t rank_pos = 0, rank_base = 0;

  if constexpr (kNarrowOnly) {
    narrow_residual_tiles<kC, kStore>(p, seq, first_tile, range, q, kmeta, h, warp, lane, m, l, acc);
  } else {
    for (std::int64_t ti = range.first + warp; ti < range.last; ti += kWarps) {
      const TileEntry tile = p.tiles[first_tile + ti];
      const std::int64_t kbegin = key_block_begin(p, tile), vbegin = value_block_begin(p, tile);
      const std::int64_t ktr0 = tile.t0 - kbegin, vtr0 = tile.t0 - vbegin;  // the tile's first token in its blocks
      af::PartRef kp;
      bool kstaged = false;
      const float* qk = q;  // the query in the tile's key coordinates
      if (tile.key_block >= 0) {
        kp = key_part(p, tile, h);
        if (transform) {
          if (tile.key_block != cached_block) {
            load_transformed(p, tile.key_block, h, tq, lane);
            cached_block = tile.key_block;
          }
          qk = tq;
        }
        kstaged = key_meta_staged(kp, ktr0, tile.n);
        if (kstaged) {
          __syncwarp();
          for (std::int64_t i = lane; i < W; i += 32) kmeta[i] = key_meta_entry(kp, ktr0, i);
          __syncwarp();
        }
      }

      // Scores. A tile of at most kNarrowTokens tokens (those touching a residual window: DecodeAttention::
      // kResidualTileTokens) takes 4 lanes per token, lane (j = lane / 4, r = lane % 4) summing the part indices r,
      // r + 4, ... of token j (join_narrow_scores adds them up and moves token j's scores to lane j; keys in layout
      // fragment: the channels that token j's fragment lane 4 (j mod 8) + r holds, fragment_key_scores); a longer
      // tile a lane per token over all part indices.
      const bool narrow = tile.n <= kNarrowTokens;  // warp-uniform
      const int tj = narrow ? lane / kNarrowLanesPerToken : lane;
      const std::int64_t r0 = narrow ? lane % kNarrowLanesPerToken : 0, step = narrow ? kNarrowLanesPerToken : 1;
      const bool active = lane < tile.n;
      const bool fragment_keys = narrow && tile.key_block >= 0 && fragment_narrow_keys(kp, ktr0, tile.n);
      const std::int64_t t = tile.t0 + tj;
      float sc[kMaxQ];
#pragma unroll
      for (int hq = 0; hq < kMaxQ; ++hq) sc[hq] = 0.0f;
      if (tj < tile.n) {
        if (fragment_keys && kstaged) {
          fragment_key_scores(sc, qk, kp.first, kmeta, ktr0 + tj, static_cast<int>(r0));
        } else if (kstaged) {
          const std::int64_t tr = ktr0 + tj;
          staged_key_scores(sc, qk, kp.first, kmeta, tr, r0, step, kp.first_n, 0);
          // the second child's first index congruent to r0 modulo step
          staged_key_scores(sc, qk, kp.second, kmeta, tr, kp.first_n + ((r0 - kp.first_n % step) + step) % step, step, W,
                            kp.first_n);
        } else if (tile.key_block < 0) {  // the residual: D channels of the exact-input store
          const std::int64_t row = (h * seq.key_capacity + t - seq.key_first) * D;
          const int d = static_cast<int>(D), c0 = static_cast<int>(r0), cs = static_cast<int>(step);
          if (seq.key_full_dtype == DType::f16) residual_scores<DType::f16>(sc, qk, seq.key_full, row, d, p.residual_dtype, c0, cs);
          else if (seq.key_full_dtype == DType::bf16) residual_scores<DType::bf16>(sc, qk, seq.key_full, row, d, p.residual_dtype, c0, cs);
          else residual_scores<DType::f32>(sc, qk, seq.key_full, row, d, p.residual_dtype, c0, cs);
        } else {
          for (std::int64_t i = r0; i < W; i += step) {
            const float k = key_element(p, seq, tile, kp, kbegin, h, t, i);
            score_update(sc, qk, i, k);
          }
        }
      }
      if (narrow) join_narrow_scores(sc, lane);
      // Online softmax update of the warp's partial; sc becomes the tile's probabilities exp2(s - m).
      softmax_update(sc, active, p.score_scale, Q, m, l, acc);
      // Values, lane -> channels lane + 32 ci (the value part is read after the scores: kp and vp are never live at
      // once, which keeps the kernel's registers down).
      af::PartRef vp;
      int vmode = kValueMetaNone;
      if (tile.value_block >= 0) {
        vp = value_part(p, tile, h);
        vmode = value_meta_mode(p.value, vp, vtr0, tile.n, D);
        const std::int64_t count = value_meta_count(vmode, vp, tile.n, D);
        __syncwarp();
        for (std::int64_t e = lane; e < count; e += 32) vmeta[e] = value_meta_entry(vmode, vp, vtr0, e);
        __syncwarp();
      }
      // mixed_token values: lane j's token's rank (protected tokens of the block before it).
      std::int64_t my_rank = 0;
      if (p.value.token_mixed && tile.value_block >= 0) {
        const bool cont = tile.value_block == rank_block && vtr0 >= rank_pos;
        rank_base = (cont ? rank_base : 0) + warp_mask_count(vp.mask, cont ? rank_pos : 0, vtr0, lane);
        rank_block = tile.value_block;
        rank_pos = vtr0;
        my_rank = rank_base + (lane < tile.n ? af::mask_count(vp.mask, vtr0, vtr0 + lane) : 0);
      }
      if (tile.value_block < 0) {  // the residual: the exact-input store
        const std::int64_t row0 = (h * seq.value_capacity + tile.t0 - seq.value_first) * D;
        const int d = static_cast<int>(D);
        if (seq.value_full_dtype == DType::f16) residual_values<DType::f16, kC>(acc, sc, Q, seq.value_full, row0, d, tile.n, p.residual_dtype, lane);
        else if (seq.value_full_dtype == DType::bf16) residual_values<DType::bf16, kC>(acc, sc, Q, seq.value_full, row0, d, tile.n, p.residual_dtype, lane);
        else residual_values<DType::f32, kC>(acc, sc, Q, seq.value_full, row0, d, tile.n, p.residual_dtype, lane);
        continue;
      }
      for (int j = 0; j < tile.n; ++j) {
        float pj[kMaxQ];
#pragma unroll
        for (int hq = 0; hq < kMaxQ; ++hq) pj[hq] = __shfl_sync(0xffffffffu, sc[hq], j);
        const std::int64_t rank = __shfl_sync(0xffffffffu, my_rank, j);
#pragma unroll
        for (int ci = 0; ci < kC; ++ci) {
          const std::int64_t c = lane + 32 * ci;
          if (c >= D) break;
          const float v = vmode != kValueMetaNone ? value_staged_element(vmode, vp, vtr0, j, c, vmeta)
                                                  : value_element(p, seq, tile, vp, vbegin, h, tile.t0 + j, c, rank);
#pragma unroll
          for (int hq = 0; hq < kMaxQ; ++hq)
            if (hq < Q) acc[hq][ci] = __fmaf_rn(pj[hq], v, acc[hq][ci]);
        }
      }
    }
  }

  write_split_partial<kC, false>(p, smem, m, l, acc, b, h, p.splits + s);
  count_general_block(p, b, h);
}

// --- The fast kernel ------------------------------------------------------------------------------------------------
// The fast tiles of each sequence (decode_attention_tables.h tile_is_fast): per tile, each warp stages the key part's
// metadata and codes (row runs: 32 tokens of each part index in up to 4 words, decode_attention_staging.h) and the
// values' (row runs per channel, or token runs of kC channels per lane for token-axis values), then a code is a
// shift and a mask of a staged word, decoded by the child's own fp32 operations (the same element as view_element),
// and every product is a fused multiply-add. The probabilities go through shared memory (two 16-byte loads per
// token) instead of kMaxQ shuffles. Value channels per lane: c = lane + 32 ci (channel-axis values), or
// c = kC lane + ci (token-axis values: one token run per lane and token).

namespace as = attention_staging;

// Per-warp shared memory of the fast kernel, in floats, each piece 16-byte aligned: tqT[D][kMaxQ], key metadata [D] Meta, value metadata [value_meta_capacity(D)] Meta, probabilities [32][kMaxQ], key words
// [kMaxRowWords][D + 1], value words [max(kMaxRowWords D, 32 x 32)].
struct FastWarpLayout {
  std::int64_t tq, kmeta, vmeta, prob, kwords, vwords, total;
};
__host__ __device__ inline std::int64_t round4(std::int64_t n) { return (n + 3) / 4 * 4; }
// Without a query transform (plain keys without FFT) tqT takes no space: more blocks fit an SM.
__host__ __device__ inline FastWarpLayout fast_warp_layout(std::int64_t d, bool transform) {
  FastWarpLayout l;
  l.tq = 0;
  l.kmeta = l.tq + (transform ? round4(kMaxQ * d) : 0);
  l.vmeta = l.kmeta + round4(2 * d);
  l.prob = l.vmeta + round4(2 * value_meta_capacity(d));
  l.kwords = l.prob + 32 * kMaxQ;
  l.vwords = l.kwords + round4(static_cast<std::int64_t>(as::kMaxRowWords) * (d + 1));
  const std::int64_t vw = static_cast<std::int64_t>(as::kMaxRowWords) * d > 32 * 32 ? static_cast<std::int64_t>(as::kMaxRowWords) * d : 32 * 32;
  l.total = l.vwords + round4(vw);
  return l;
}
std::size_t fast_smem_floats(std::int64_t qpk, std::int64_t d, bool transform) {
  const std::int64_t work = kMaxQ * d + kWarps * fast_warp_layout(d, transform).total;
  const std::int64_t merge = kWarps * qpk * (d + 2);
  return static_cast<std::size_t>(work > merge ? work : merge);
}

// A staged code decoded as the child's decode does it (af::decode_code with the codec known at compile time):
// uniform q * scale + mn, sign s / 0 / -s, ternary t or t * scale. flag: sign symmetric, ternary scaled.
template <af::ChildCodec C>
__device__ __forceinline__ float decode_as(unsigned code, const af::Meta& m, bool flag) {
  if constexpr (C == af::ChildCodec::uniform) {
    return uniform_format::decode_value(code, m.scale, m.mn);
  } else if constexpr (C == af::ChildCodec::sign) {
    return code ? m.scale : (flag ? -m.scale : 0.0f);
  } else {
    const float t = static_cast<float>(static_cast<int>(code) - 1);
    return flag ? t * m.scale : t;
  }
}
__device__ inline bool decode_flag(const af::ChildFormat& f) {
  return f.codec == af::ChildCodec::sign ? f.symmetric : f.scaled;
}

// Scores of this lane's token over part indices [i0, i1) of one child: words = the staged row runs [kMaxRowWords][D + 1].
template <af::ChildCodec C>
__device__ __forceinline__ void score_span(float (&sc)[kMaxQ], const float* qk, const af::Meta* meta, const std::uint32_t* words,
                                  int d, int i0, int i1, unsigned b, unsigned lane, bool flag) {
  const unsigned pos = b * lane, sh = pos & 31u, mask = (1u << b) - 1u;
  const std::uint32_t* w = words + (pos >> 5) * (d + 1);  // word k of part index i at k (D + 1) + i: no bank conflict
#pragma unroll 4
  for (int i = i0; i < i1; ++i) score_update(sc, qk, i, decode_as<C>((w[i] >> sh) & mask, meta[i], flag));
}
__device__ __forceinline__ void score_child(float (&sc)[kMaxQ], const af::ChildFormat& f, const float* qk, const af::Meta* meta,
                                   const std::uint32_t* words, int d, int i0, int i1, unsigned lane) {
  const unsigned b = as::staged_bits(f);
  const bool flag = decode_flag(f);
  switch (f.codec) {
    case af::ChildCodec::uniform: score_span<af::ChildCodec::uniform>(sc, qk, meta, words, d, i0, i1, b, lane, flag); break;
    case af::ChildCodec::sign: score_span<af::ChildCodec::sign>(sc, qk, meta, words, d, i0, i1, b, lane, flag); break;
    default: score_span<af::ChildCodec::ternary>(sc, qk, meta, words, d, i0, i1, b, lane, flag); break;
  }
}

// acc[hq][ci] += p_j[hq] v(j, c) over the tile's n tokens. Channel-axis values (kTokenValues false): channel
// c = lane + 32 ci, code j of the row run of c (words [kMaxRowWords][D]), metadata vmeta[c]. Token-axis values: channel
// c = kC lane + ci, code ci of this lane's token run of token j (words [32][32]), metadata vmeta[j groups + g(c)].
template <af::ChildCodec C, int kC, bool kTokenValues>
__device__ __forceinline__ void value_span(float (&acc)[kMaxQ][kC], const float* prob, const af::Meta* vmeta,
                                  const std::uint32_t* words, int d, int n, unsigned b, unsigned lane, bool flag,
                                  int groups, const int (&group_of)[kC]) {
  const unsigned mask = (1u << b) - 1u;
#pragma unroll 2
  for (int j = 0; j < n; ++j) {
    const float4 pa = *reinterpret_cast<const float4*>(prob + j * kMaxQ);
    const float4 pb = *reinterpret_cast<const float4*>(prob + j * kMaxQ + 4);
    const float pj[kMaxQ] = {pa.x, pa.y, pa.z, pa.w, pb.x, pb.y, pb.z, pb.w};
    // Token-axis: this lane's token run of token j; channel-axis: code j of each channel's row run.
    const std::uint32_t run = kTokenValues ? words[j * 32 + lane] : 0u;
    const unsigned sh = (b * static_cast<unsigned>(j)) & 31u;
#pragma unroll
    for (int ci = 0; ci < kC; ++ci) {
      float v;
      if constexpr (kTokenValues) {
        const int c = kC * static_cast<int>(lane) + ci;
        if (c >= d) break;
        v = decode_as<C>((run >> (b * ci)) & mask, vmeta[j * groups + group_of[ci]], flag);
      } else {
        const int c = static_cast<int>(lane) + 32 * ci;
        if (c >= d) break;
        const std::uint32_t w = words[((b * static_cast<unsigned>(j)) >> 5) * d + c];
        v = decode_as<C>((w >> sh) & mask, vmeta[c], flag);
      }
#pragma unroll
      for (int hq = 0; hq < kMaxQ; ++hq)
        acc[hq][ci] = __fmaf_rn(pj[hq], v, acc[hq][ci]);  // padded heads: p = 0, never written out
    }
  }
}

template <int kC, bool kTokenValues>
__global__ void __launch_bounds__(kThreads, 3) fast_kernel(const Problem p) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32;
  const unsigned lane = threadIdx.x % 32u;
  const int D = static_cast<int>(p.channels), Q = static_cast<int>(p.qpk);
  __shared__ std::uint16_t trit_slots[ternary_format::kByteSlotEntries];  // base3 byte -> its 5 digits in 2-bit slots
  for (int i = threadIdx.x; i < ternary_format::kByteSlotEntries; i += kThreads) trit_slots[i] = ternary_format::base3_byte_slots(static_cast<unsigned>(i));
  const bool transform = af::needs_transform(p.key);
  const FastWarpLayout lay = fast_warp_layout(D, transform);
  float* q = smem;  // qT[D][kMaxQ]
  float* wbase = smem + kMaxQ * D + warp * lay.total;
  float* tq = wbase + lay.tq;
  af::Meta* kmeta = reinterpret_cast<af::Meta*>(wbase + lay.kmeta);
  af::Meta* vmeta = reinterpret_cast<af::Meta*>(wbase + lay.vmeta);
  float* prob = wbase + lay.prob;
  std::uint32_t* kwords = reinterpret_cast<std::uint32_t*>(wbase + lay.kwords);
  std::uint32_t* vwords = reinterpret_cast<std::uint32_t*>(wbase + lay.vwords);
  load_queries(p, q, b, h);
  __syncthreads();

  const SequenceEntry seq = p.sequences[b];
  const TileRange range = split_tiles(seq.fast_count, p.splits, s);
  float m[kMaxQ], l[kMaxQ], acc[kMaxQ][kC];
  reset_partial(m, l, acc);
  const af::ChildFormat& vf = p.value.first;
  const unsigned vb = as::staged_bits(vf), kb1 = as::staged_bits(p.key.first);
  const unsigned kb2 = p.key.mixed ? as::staged_bits(p.key.second) : 0u;
  // Token-axis values: the metadata group of each of this lane's channels.
  int group_of[kC];
#pragma unroll
  for (int ci = 0; ci < kC; ++ci) group_of[ci] = (kC * static_cast<int>(lane) + ci) / static_cast<int>(vf.group);
  std::int32_t cached_block = INT_MIN;

  for (std::int64_t ti = range.first + warp; ti < range.last; ti += kWarps) {
    const TileEntry tile = p.tiles[seq.tile_begin + ti];
    const int n = tile.n;
    const std::int64_t ktr0 = tile.t0 - p.key_blocks[tile.key_block].begin;
    const std::int64_t vtr0 = tile.t0 - p.value_blocks[tile.value_block].begin;
    const af::PartRef kp = key_part(p, tile, h);
    const int first_n = static_cast<int>(kp.first_n);
    const float* qk = q;  // the query in the tile's key coordinates
    __syncwarp();  // the previous tile's reads of the staged words, metadata and probabilities are done
    if (transform) {
      if (tile.key_block != cached_block) {
        load_transformed(p, tile.key_block, h, tq, static_cast<int>(lane));
        cached_block = tile.key_block;
      }
      qk = tq;
    }
    // Stage the keys: metadata and row runs of every part index.
#pragma unroll 4
    for (int i = lane; i < D; i += 32) {
      const bool first = i < first_n;
      const af::ChildView& kv = first ? kp.first : kp.second;
      kmeta[i] = as::staged_meta(kv, af::view_group(kv, ktr0, first ? i : i - first_n));
      std::uint32_t w[as::kMaxRowWords];
      as::row_run(first ? kp.first : kp.second, ktr0, n, first ? i : i - first_n, w, trit_slots);
      const unsigned words = (static_cast<unsigned>(n) * (first ? kb1 : kb2) + 31u) / 32u;
      for (unsigned k = 0; k < words; ++k) kwords[k * (D + 1) + i] = w[k];
    }
    // Stage the values: metadata, and row runs per channel or token runs per lane.
    const af::PartRef vp = value_part(p, tile, h);
    const int groups = static_cast<int>(vp.first.groups_per_row);
    if constexpr (kTokenValues) {
      for (int e = lane; e < n * groups; e += 32)
        vmeta[e] = as::staged_meta(vp.first, (vp.first.head * vp.first.rows + vtr0 + e / groups) * groups + e % groups);
      const int c0 = kC * static_cast<int>(lane), count = D - c0 < kC ? D - c0 : kC;
      const af::ChildView& tv = vp.first;
      const std::int64_t row_bits = tv.length * static_cast<std::int64_t>(vb);
      if (c0 < D && tv.f.layout == group_format::CodeLayout::dense && tv.code_bits != 0 && row_bits % 8 == 0 &&
          (c0 * vb) % 8 == 0 && (count * vb) % 8 == 0) {
        // Dense codes with byte-aligned runs (KIVI's 2-bit per-token values: one byte per lane and token, the
        // warp's 32 lanes read 32 consecutive bytes of a token's row).
        const std::uint8_t* src = tv.codes + (((tv.head * tv.rows + vtr0) * tv.length + c0) * vb >> 3);
        const std::int64_t stride = row_bits / 8;
        const int nbytes = count * static_cast<int>(vb) / 8;
#pragma unroll 4
        for (int j = 0; j < n; ++j) {
          std::uint32_t w = 0;
          for (int k = 0; k < nbytes; ++k) w |= static_cast<std::uint32_t>(src[j * stride + k]) << (8 * k);
          vwords[j * 32 + lane] = w;
        }
      } else {
        for (int j = 0; j < n; ++j) vwords[j * 32 + lane] = c0 < D ? as::token_run(tv, vtr0 + j, c0, count, trit_slots) : 0u;
      }
    } else {
#pragma unroll 4
      for (int c = lane; c < D; c += 32) {
        vmeta[c] = as::staged_meta(vp.first, af::view_group(vp.first, vtr0, c));
        std::uint32_t w[as::kMaxRowWords];
        as::row_run(vp.first, vtr0, n, c, w, trit_slots);
        for (unsigned k = 0; k < (static_cast<unsigned>(n) * vb + 31u) / 32u; ++k) vwords[k * D + c] = w[k];
      }
    }
    __syncwarp();

    // Scores, lane -> token t0 + lane.
    const bool active = static_cast<int>(lane) < n;
    float sc[kMaxQ];
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq) sc[hq] = 0.0f;
    if (active) {
      score_child(sc, p.key.first, qk, kmeta, kwords, D, 0, first_n, lane);
      if (first_n < D) score_child(sc, p.key.second, qk, kmeta, kwords, D, first_n, D, lane);
    }
    // Online softmax update of the warp's partial; the tile's probabilities exp2(s - m) go to shared memory.
    softmax_update(sc, active, p.score_scale, Q, m, l, acc);
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq) prob[lane * kMaxQ + hq] = sc[hq];
    __syncwarp();
    const bool vflag = decode_flag(vf);
    switch (vf.codec) {
      case af::ChildCodec::uniform:
        value_span<af::ChildCodec::uniform, kC, kTokenValues>(acc, prob, vmeta, vwords, D, n, vb, lane, vflag, groups, group_of);
        break;
      case af::ChildCodec::sign:
        value_span<af::ChildCodec::sign, kC, kTokenValues>(acc, prob, vmeta, vwords, D, n, vb, lane, vflag, groups, group_of);
        break;
      default:
        value_span<af::ChildCodec::ternary, kC, kTokenValues>(acc, prob, vmeta, vwords, D, n, vb, lane, vflag, groups, group_of);
        break;
    }
  }

  write_split_partial<kC, kTokenValues>(p, smem, m, l, acc, b, h, s);
}

// --- The query transform ---------------------------------------------------------------------------------------
// Keys read in each key block's own coordinates (a mixed_channel mask's gathered channel order, FFT components:
// af::needs_transform) take the query carried into them, af::transform_entry. It is computed here once per (key
// block, KV head), before the attention kernels, which copy it into shared memory when a warp's tile enters another
// block (load_transformed). Computing it in each warp instead cost every warp n W inverse-FFT weights (cospi /
// sinpi) and n W Q multiply-adds, the same for the few hundred warps of a batch-1 launch that read one block.
// Grid (key blocks, KV heads, slices of kTransformSlice part indices), kTransformThreads = kTransformSlice x kMaxQ
// threads per block: the block
//   1. finds each channel's place in the gathered order (gathered_slots: one mask bit per thread, a ballot per warp;
//      af::gathered_index's value);
//   2. tabulates each FFT child's inverse weights by angle (af::fft_weight_tables) and gathers the query's channels
//      (kTransformLoads loads in flight per thread);
//   3. thread t computes the entry of part index i = slice start + t / kMaxQ and query head hq = t % kMaxQ by
//      af::transform_entry_tabulated: transform_entry's products, sums and order, from the table (the same weights as
//      fft_*_inverse_weight), the function the emulation calls too (decode_attention_emulation.cpp; on the host the
//      weights come from std::cos / std::sin, on the device from cospif / sinpif, as the weight functions').
// Writes p.transformed[((block * heads + h) * W + i) * kMaxQ + hq], zeros for the padding heads hq >= Q (one coalesced
// row of kMaxQ floats per part index).
// Why slices: a prefill is one key block per sequence, so at 8 x 64k tokens only 8 x 4 of a block-per-(key block, KV
// head) grid's blocks had work (the others are the tables' spare entries, tokens 0), 32 of 132 multiprocessors,
// each issuing 16 warps x ~2,200 instructions one after another: 18-20 us (Nsight Compute, H100, 2026-12-06); by
// slices of 32 part indices the same work is 4 times as many blocks of one entry per thread.
// (Earlier: a warp per part index with 32 partial sums and a butterfly per head, first as a block per 8 part indices
// (20 us at 8 x 64k tokens of vidkv-k1.5-v1.58-fragment on an H100), then as a block per (key block, KV head) whose
// 16 warps looped over the part indices (23-29 us: seven shuffle chains and two cospif per part index, one after
// another), then the same block size with a thread per entry and the tables (18-20 us, above).)
constexpr int kTransformSlice = 32;
constexpr int kTransformThreads = kTransformSlice * kMaxQ;
constexpr int kTransformLoads = 4;

// Slices of part indices of a key side of head_dim D: the transform grid's z.
int transform_slices(const Problem& p) {
  return static_cast<int>((af::key_width(p.key, p.channels) + kTransformSlice - 1) / kTransformSlice);
}

// slot[c] = af::gathered_index(f, kp, D, c) for c < D: a mixed part's high channels in ascending order, then its low
// ones (mixed_channel_format::channel_slot: rank among the high channels, or high + rank among the low ones), from one
// mask bit per thread and a ballot per warp instead of channel_slot's bytewise rank per channel. warp_high: one int
// per warp of the block. Ends with __syncthreads (slot complete).
__device__ void gathered_slots(const af::SideFormat& f, const af::PartRef& kp, int D, int* slot, int* warp_high) {
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x % 32u);
  const int warps = static_cast<int>(blockDim.x) / 32;
  int before = 0;  // high channels below this round's first channel
  for (int c0 = 0; c0 < D; c0 += static_cast<int>(blockDim.x)) {
    const int c = c0 + static_cast<int>(threadIdx.x);
    const bool high = f.mixed && c < D &&
                      mixed_channel_format::mask_get(kp.mask, static_cast<std::size_t>(D), static_cast<std::size_t>(kp.mask_index),
                                                     static_cast<std::size_t>(c));
    const unsigned ballot = __ballot_sync(0xffffffffu, high);
    if (lane == 0) warp_high[warp] = __popc(ballot);
    __syncthreads();
    int rank = before + __popc(ballot & ((1u << lane) - 1u));
    int round = 0;
    for (int w = 0; w < warps; ++w) {
      const int n = warp_high[w];
      rank += w < warp ? n : 0;
      round += n;
    }
    if (c < D) slot[c] = !f.mixed ? c : high ? rank : static_cast<int>(f.high) + (c - rank);
    before += round;
    __syncthreads();  // warp_high is read before the next round writes it; slot complete after the last
  }
}

__global__ void __launch_bounds__(kTransformThreads) transform_kernel(const Problem p) {
  // Lets the fragment kernel's blocks start (launched as a programmatic dependent where it reads the result: they
  // wait for this grid before their first read of p.transformed; launch_fragment).
  dependent_launch::allow_next_grid();
  extern __shared__ float4 smem4[];
  __shared__ int warp_high[kTransformThreads / 32];
  const std::int64_t kb = blockIdx.x, h = blockIdx.y;
  const BlockEntry blk = p.key_blocks[kb];
  if (blk.tokens == 0) return;  // an unused entry of a sequence's block region (decode_attention.cpp): no block, no tile reads it
  const int D = static_cast<int>(p.channels), Q = static_cast<int>(p.qpk), row = D + 1;
  const int W = static_cast<int>(af::key_width(p.key, D));
  // [Q][D + 1]: the query's channels in gathered order, rows padded by one float so that the 8 query heads of a warp's
  // lanes (the same channel c of every row) fall in 8 banks, not one; then the FFT children's weight tables (2 n
  // floats each, n <= D), then the slots (D ints).
  float* const gathered = reinterpret_cast<float*>(smem4);
  float* const table_first = gathered + Q * row;
  float* const table_second = table_first + 2 * D;
  int* const slot = reinterpret_cast<int*>(table_second + 2 * D);
  const af::PartRef kp = af::part_of(p.key, blk.bytes, p.heads, blk.tokens, D, h);
  gathered_slots(p.key, kp, D, slot, warp_high);
  af::fft_weight_tables(p.key, kp, table_first, table_second, threadIdx.x, blockDim.x);
  // The query's Q D channels, kTransformLoads loads per thread before their stores (independent loads in flight).
  const std::int64_t qrow = (static_cast<std::int64_t>(blk.sequence) * p.heads + h) * Q;
  for (int e0 = 0; e0 < Q * D; e0 += kTransformLoads * kTransformThreads) {
    float x[kTransformLoads];
#pragma unroll
    for (int u = 0; u < kTransformLoads; ++u) {
      const int e = e0 + u * kTransformThreads + static_cast<int>(threadIdx.x);
      x[u] = e < Q * D ? load_as_float(p.queries, p.query_dtype, static_cast<std::size_t>(qrow * D + e)) : 0.0f;
    }
#pragma unroll
    for (int u = 0; u < kTransformLoads; ++u) {
      const int e = e0 + u * kTransformThreads + static_cast<int>(threadIdx.x);
      if (e < Q * D) gathered[(e / D) * row + slot[e % D]] = x[u];
    }
  }
  __syncthreads();
  const int i = static_cast<int>(blockIdx.z) * kTransformSlice + static_cast<int>(threadIdx.x) / kMaxQ;
  const int hq = static_cast<int>(threadIdx.x) % kMaxQ;
  if (i >= W) return;
  p.transformed[((kb * p.heads + h) * W + i) * kMaxQ + hq] =
      hq < Q ? af::transform_entry_tabulated(p.key, kp, gathered + hq * row, table_first, table_second, i) : 0.0f;
}

// The transform kernel's shared memory in bytes: the gathered query [Q][D + 1], two weight tables of 2 D floats and
// D slots.
std::size_t transform_smem_bytes(const Problem& p) {
  return static_cast<std::size_t>(p.qpk * (p.channels + 1) + 4 * p.channels) * sizeof(float) +
         static_cast<std::size_t>(p.channels) * sizeof(int);
}

// One block per (KV head, sequence, query head of the KV head), kCombineThreads threads: thread (part k, column j)
// sums channels j V .. j V + V - 1 of out = sum_s f_s acc_s / sum_s f_s l_s, f_s = exp2(m_s - max m), over the
// splits s = k mod combine_parts(D) in split order (V = combine_vector(D): one 16-byte load per split where D is a
// multiple of 4), and the parts are added in k order (decode_attention_tables.h; the emulation's combine sums the
// same way). At batch 1 the splits are many (about 100: one wave of blocks for 4 KV heads) and the blocks few, so
// the block count (heads x batch x query heads, not heads x batch) and the loads in flight set this kernel's time
// (Nsight Compute, H200, kivi-2 at 32k x 1: a block per (KV head, sequence) and serial loads 155 us; a block per
// query head, one chain of 100 splits per channel 15 us; 4 parts of 128 threads, a channel each, 10-12 us).
__global__ void __launch_bounds__(kCombineThreads) combine_kernel(const Problem p) {
  const std::int64_t h = blockIdx.x, b = blockIdx.y, hq = blockIdx.z;
  // Launched by launch_dependent: the kernel before it (the fast / tensor-core kernel, or the general kernel after
  // it) complete and its writes visible. With the general kernel beside the other (p.generic_target != 0) its
  // blocks are waited for by their count: stream order after a programmatic dependent launch is not documented to
  // cover the kernel before that launch. The general kernel's blocks all run by then (the other kernel started only
  // once all of them had begun), so the wait ends.
  dependent_launch::wait_for_previous_grid();
  if (p.generic_target != 0) {
    // The row's counters return to zero for the next launch: the last of its qpk combine blocks to have seen all
    // the general blocks zeroes both (every other one has passed its wait by then; the next launch's general kernel
    // is a plain launch, after this kernel).
    const std::int64_t row = b * p.heads + h, rows = p.batch * p.heads;
    if (threadIdx.x == 0) {
      while (load_acquire(p.generic_done + row) < p.generic_target) __nanosleep(128);
      if (atomicAdd(p.generic_done + rows + row, 1u) == static_cast<std::uint32_t>(p.qpk) - 1u) {
        atomicExch(p.generic_done + row, 0u);
        atomicExch(p.generic_done + rows + row, 0u);
      }
    }
    __syncthreads();
  }
  const std::int64_t D = p.channels, Q = p.qpk, S = p.splits + p.generic_splits;
  const std::int64_t base = (b * p.heads + h) * S;
  const float* ml = p.partial_ml + (base * Q + hq) * 2;  // split s: (m, l) at ml[2 Q s], ml[2 Q s + 1]
  // max over the splits (exact in any order).
  float mt = -HUGE_VALF;
  for (std::int64_t s = threadIdx.x; s < S; s += kCombineThreads) mt = fmaxf(mt, ml[2 * Q * s]);
  mt = warp_max(mt);
  constexpr int kCombineWarps = kCombineThreads / 32;
  __shared__ float warp_maxes[kCombineWarps];
  __shared__ float part_acc[4 * kCombineThreads];  // [parts][D]: parts * D = kCombineThreads * V
  __shared__ float part_l[kCombineThreads];        // [parts]
  if (threadIdx.x % 32 == 0) warp_maxes[threadIdx.x / 32] = mt;
  __syncthreads();
  mt = warp_maxes[0];
  for (int w = 1; w < kCombineWarps; ++w) mt = fmaxf(mt, warp_maxes[w]);
  const int V = combine_vector(D), cols = static_cast<int>(D) / V, parts = combine_parts(D);
  const int k = static_cast<int>(threadIdx.x) / cols, j = static_cast<int>(threadIdx.x) % cols;
  if (k < parts) {
    const float* acc = p.partial_acc + (base * Q + hq) * D;  // split s: acc[Q D s + c]
    float lt = 0.0f, a[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    if (V == 4) {
#pragma unroll 4
      for (std::int64_t s = k; s < S; s += parts) {
        const float f = af::merge_factor(ml[2 * Q * s], mt);
        lt += ml[2 * Q * s + 1] * f;
        const float4 x = *reinterpret_cast<const float4*>(acc + Q * D * s + 4 * j);  // 16-byte aligned: D % 4 == 0
        a[0] += x.x * f;
        a[1] += x.y * f;
        a[2] += x.z * f;
        a[3] += x.w * f;
      }
    } else {
#pragma unroll 4
      for (std::int64_t s = k; s < S; s += parts) {
        const float f = af::merge_factor(ml[2 * Q * s], mt);
        lt += ml[2 * Q * s + 1] * f;
        a[0] += acc[Q * D * s + j] * f;
      }
    }
    for (int v = 0; v < V; ++v) part_acc[k * D + j * V + v] = a[v];
    if (j == 0) part_l[k] = lt;  // the same in every column
  }
  __syncthreads();
  for (std::int64_t c = threadIdx.x; c < D; c += kCombineThreads) {
    float lt = part_l[0], a = part_acc[c];
    for (int kk = 1; kk < parts; ++kk) {
      lt += part_l[kk];
      a += part_acc[kk * D + c];
    }
    store_from_float(p.out, p.out_dtype, static_cast<std::size_t>((b * p.heads * Q + h * Q + hq) * D + c), a / lt);
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) VIDKV_THROW(CudaError, "decode attention: ", what, ": ", cudaGetErrorString(e));
}

// The general kernel's instance for p: the residual tiles' tensor-core kernel where p.general_tensor_cores, else the
// compact one where p.general_narrow_only (by the stores' dtype), else the full one.
template <int kC>
void (*split_kernel_for(const Problem& p))(const Problem) {
  if (!p.general_narrow_only) return split_kernel<kC>;
  if (p.general_tensor_cores) return fragment_residual_kernel_for(p);
  return p.general_narrow_dtype == DType::bf16 ? split_kernel<kC, true, DType::bf16> : split_kernel<kC, true, DType::f16>;
}

template <int kC>
void launch_split(const Problem& p, dim3 grid, std::size_t smem, cudaStream_t st) {
  if (grid.x == 0) return;
  void (*kernel)(const Problem) = split_kernel_for<kC>(p);
  if (smem > 48 * 1024)
    cuda_kernels::allow_dynamic_smem(reinterpret_cast<const void*>(kernel), smem, "decode attention (split kernel)");
  kernel<<<grid, kThreads, smem, st>>>(p);
  check(cudaGetLastError(), "split kernel launch");
}

// beside_previous: launch_beside_previous (the general kernel enqueued just before it, p.generic_target != 0).
template <int kC, bool kTokenValues>
void launch_fast(const Problem& p, dim3 grid, cudaStream_t st, bool beside_previous) {
  if (grid.x == 0) return;
  const std::size_t smem = fast_smem_floats(p.qpk, p.channels, af::needs_transform(p.key)) * sizeof(float);
  if (smem > 48 * 1024)
    cuda_kernels::allow_dynamic_smem(reinterpret_cast<const void*>(fast_kernel<kC, kTokenValues>), smem,
                                     "decode attention (fast kernel)");
  if (beside_previous) check(launch_beside_previous(fast_kernel<kC, kTokenValues>, grid, dim3(kThreads), smem, st, p), "fast kernel launch");
  else fast_kernel<kC, kTokenValues><<<grid, kThreads, smem, st>>>(p);
  check(cudaGetLastError(), "fast kernel launch");
}

}  // namespace

SideStream::SideStream() {
  cudaStream_t st = nullptr;
  check(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking), "side stream creation");
  cudaEvent_t e0 = nullptr, e1 = nullptr;
  const cudaError_t r0 = cudaEventCreateWithFlags(&e0, cudaEventDisableTiming);
  const cudaError_t r1 = r0 == cudaSuccess ? cudaEventCreateWithFlags(&e1, cudaEventDisableTiming) : r0;
  if (r1 != cudaSuccess) {
    if (e0) cudaEventDestroy(e0);
    cudaStreamDestroy(st);
    check(r1, "side stream events");
  }
  stream_ = st;
  fork_ = e0;
  join_ = e1;
}

SideStream::~SideStream() {
  cudaEventDestroy(static_cast<cudaEvent_t>(fork_));
  cudaEventDestroy(static_cast<cudaEvent_t>(join_));
  cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

void launch(const Problem& p, void* stream, const SideStream* beside) {
  VIDKV_REQUIRE(p.qpk >= 1 && p.qpk <= kMaxQ && p.channels >= 1 && p.channels <= 32 * kMaxC, ShapeError,
                "decode attention: ", p.qpk, " query heads per KV head (1..", kMaxQ, "), head_dim ", p.channels, " (1..",
                32 * kMaxC, ")");
  auto st = static_cast<cudaStream_t>(stream);
  const std::size_t smem = smem_floats(p.qpk, p.channels, af::key_width(p.key, p.channels)) * sizeof(float);
  const dim3 fast_grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  const dim3 generic_grid(static_cast<unsigned>(p.generic_splits), static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  const bool token_values = p.value.first.axis == group_format::GroupAxis::token;
  const bool transform_runs = af::needs_transform(p.key) && p.key_block_count > 0;  // the query transform kernel runs first
  if (af::needs_transform(p.key)) {
    VIDKV_REQUIRE(p.transformed != nullptr, ShapeError, "decode attention: keys that need the query transform, no buffer for it");
    if (transform_runs) {
      // A plain launch, and it must stay one: the fragment kernel launched after it as its programmatic dependent
      // (FragmentLaunch::after_transform) reads the tables and the cache before its wait, which is safe only because
      // everything enqueued before this kernel has completed once all of its blocks have started.
      transform_kernel<<<dim3(static_cast<unsigned>(p.key_block_count), static_cast<unsigned>(p.heads),
                              static_cast<unsigned>(transform_slices(p))),
                         kTransformThreads, transform_smem_bytes(p), st>>>(p);
      check(cudaGetLastError(), "query transform kernel launch");
    }
  }
  // Two ways to run the general kernel beside the fast / tensor-core one. On one stream (p.generic_target != 0:
  // DecodeAttention::run chose it, Hopper): the general kernel first, which lets the next kernel's blocks start at
  // once (allow_next_grid at its start), then the fast / tensor-core kernel by a programmatic dependent launch that
  // does not wait for it (the two read only the tables, the queries and the cache, and write their own partials),
  // then the combine kernel, which waits for the latter (griddepcontrol.wait) and for the general kernel's blocks by
  // their count. No event and no second stream: on the host the same launches as one after another. Or on beside's
  // stream (given, and no count): forked after everything enqueued so far (the tables' upload, the query transform)
  // and joined back before the combine kernel. Otherwise the general kernel after the fast one on the main stream.
  const bool both = p.splits > 0 && p.generic_splits > 0;
  const bool one_stream = both && p.generic_target != 0;
  const bool concurrent = both && !one_stream && beside != nullptr;
  const cudaStream_t gst = concurrent ? static_cast<cudaStream_t>(beside->stream()) : st;
  auto general = [&](cudaStream_t on) {
    if (p.channels <= 128) launch_split<4>(p, generic_grid, smem, on);
    else launch_split<kMaxC>(p, generic_grid, smem, on);
  };
  if (concurrent) {
    check(cudaEventRecord(static_cast<cudaEvent_t>(beside->fork()), st), "fork event record");
    check(cudaStreamWaitEvent(gst, static_cast<cudaEvent_t>(beside->fork()), 0), "side stream wait");
    general(gst);
  }
  if (one_stream) general(st);
  // Joins the side stream back into the main one: after the launches, and also when one of them throws, so that
  // nothing enqueued on the main stream later (a stream-ordered free of the workspace or the tables) can run ahead
  // of the general kernel already launched.
  auto join = [&] {
    check(cudaEventRecord(static_cast<cudaEvent_t>(beside->join()), gst), "join event record");
    check(cudaStreamWaitEvent(st, static_cast<cudaEvent_t>(beside->join()), 0), "main stream wait");
  };
  const bool after = !concurrent && !one_stream;  // the general kernel after the other one
  try {
    if (p.fragment) {
      // beside the general kernel (one stream), else right after the query transform where one ran
      launch_fragment(p, stream, one_stream       ? FragmentLaunch::beside_previous
                                 : transform_runs ? FragmentLaunch::after_transform
                                                  : FragmentLaunch::plain);
      if (after) general(st);
    } else if (p.tensor_cores) {
      launch_tensor_core(p, stream, one_stream);
      if (after) general(st);
    } else if (p.channels <= 128) {
      if (token_values) launch_fast<4, true>(p, fast_grid, st, one_stream);
      else launch_fast<4, false>(p, fast_grid, st, one_stream);
      if (after) general(st);
    } else {
      if (token_values) launch_fast<kMaxC, true>(p, fast_grid, st, one_stream);
      else launch_fast<kMaxC, false>(p, fast_grid, st, one_stream);
      if (after) general(st);
    }
    check(cudaGetLastError(), "split kernel launch");
  } catch (...) {
    if (concurrent) {
      try {
        join();
      } catch (...) {  // the first error is the one reported
      }
    }
    throw;
  }
  const dim3 combine_grid(static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch), static_cast<unsigned>(p.qpk));
  if (concurrent) {
    join();
    combine_kernel<<<combine_grid, kCombineThreads, 0, st>>>(p);  // after the join's stream wait: a plain launch
  } else {
    // A programmatic dependent launch after a kernel (combine_kernel waits for it at its start).
    dependent_launch::launch_dependent<combine_kernel>(combine_grid, dim3(kCombineThreads), 0, st, p);
  }
  check(cudaGetLastError(), "combine kernel launch");
}

bool general_beside_on_one_stream() {
  // VIDKV_CUDA_ATTENTION_ONE_STREAM=0: the side stream (or one after the other) as before, for A / B measurements.
  // The general kernel's code must hold griddepcontrol (a build for sm_90 or newer), else the other kernel would
  // start only at its end.
  static const bool on = !env_equals("VIDKV_CUDA_ATTENTION_ONE_STREAM", "0") && dependent_launch::enabled() &&
                         dependent_launch::kernel_waits(reinterpret_cast<const void*>(split_kernel<4>)) &&
                         dependent_launch::kernel_waits(reinterpret_cast<const void*>(split_kernel<kMaxC>));
  return on;
}

int fast_blocks_per_sm(const Problem& p) {
  if (p.fragment) return fragment_blocks_per_sm(p);
  if (p.tensor_cores) return tensor_core_blocks_per_sm(p);
  const std::size_t smem = fast_smem_floats(p.qpk, p.channels, af::needs_transform(p.key)) * sizeof(float);
  const bool token_values = p.value.first.axis == group_format::GroupAxis::token;
  const void* kernel = p.channels <= 128 ? (token_values ? reinterpret_cast<const void*>(fast_kernel<4, true>)
                                                         : reinterpret_cast<const void*>(fast_kernel<4, false>))
                                         : (token_values ? reinterpret_cast<const void*>(fast_kernel<kMaxC, true>)
                                                         : reinterpret_cast<const void*>(fast_kernel<kMaxC, false>));
  return cuda_kernels::resident_blocks(kernel, kThreads, smem, "decode attention (fast kernel)");
}

int generic_blocks_per_sm(const Problem& p) {
  const std::size_t smem = smem_floats(p.qpk, p.channels, af::key_width(p.key, p.channels)) * sizeof(float);
  const void* kernel = p.channels <= 128 ? reinterpret_cast<const void*>(split_kernel<4>) : reinterpret_cast<const void*>(split_kernel<kMaxC>);
  return cuda_kernels::resident_blocks(kernel, kThreads, smem, "decode attention (split kernel)");
}

}  // namespace vidkv::attention_cuda
