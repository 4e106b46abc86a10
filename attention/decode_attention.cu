// Fused decode attention kernels (decode_attention_cuda.h). C++17; the per-element reads are the host-device
// functions of decode_attention_format.h / decode_attention_tables.h, which the CPU emulation
// (decode_attention_emulation.cpp) runs in the same tile / split order and the [cpu] tests check.
#include <cuda_runtime.h>

#include <climits>
#include <cmath>

#include "vidkv/attention/decode_attention_cuda.h"
#include "vidkv/core/error.h"

namespace vidkv::attention_cuda {

namespace af = attention_format;
using namespace attention_tables;

namespace {

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxQ = 8;  // DecodeAttention::kMaxQueryHeadsPerKv
constexpr int kMaxC = 8;  // value channels per lane: DecodeAttention::kMaxHeadDim / 32

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Shared memory (floats, 16-byte aligned pieces): the block's queries transposed and padded to kMaxQ heads,
// qT[D][kMaxQ] (zeros past qpk: a score update is two 16-byte loads and kMaxQ FMAs per element); per warp the
// transformed query tqT[D][kMaxQ], the gathered query [qpk][D], the staged key metadata (D Meta) and value metadata
// (value_meta_capacity(D) Meta). The merge at the end reuses it: per warp m[qpk], l[qpk], acc[qpk][D].
__host__ __device__ inline std::int64_t warp_floats(std::int64_t qpk, std::int64_t d) {
  return (kMaxQ * d + qpk * d + 2 * d + 2 * value_meta_capacity(d) + 3) / 4 * 4;
}
std::size_t smem_floats(std::int64_t qpk, std::int64_t d) {
  const std::int64_t work = kMaxQ * d + kWarps * warp_floats(qpk, d);
  const std::int64_t merge = kWarps * qpk * (d + 2);
  return static_cast<std::size_t>(work > merge ? work : merge);
}

static_assert(kMaxQ == 8, "score_update reads two float4 per channel");

// sc[hq] += qT[i][hq] * k for all kMaxQ (padded) heads: two 16-byte shared loads.
__device__ inline void score_update(float (&sc)[kMaxQ], const float* qT, std::int64_t i, float k) {
  const float4 a = *reinterpret_cast<const float4*>(qT + i * kMaxQ);
  const float4 b = *reinterpret_cast<const float4*>(qT + i * kMaxQ + 4);
  sc[0] += a.x * k;
  sc[1] += a.y * k;
  sc[2] += a.z * k;
  sc[3] += a.w * k;
  sc[4] += b.x * k;
  sc[5] += b.y * k;
  sc[6] += b.z * k;
  sc[7] += b.w * k;
}

// kC: value channels per lane (D <= 32 kC): 4 for head_dim <= 128 (fewer registers), kMaxC up to 256.
// kFast: the fast tiles of each sequence only (decode_attention_tables.h tile_is_fast: staged key and value
// metadata), without the code of the other paths (168 instead of 230 registers on sm_90: 3 blocks per SM instead of
// 2); else the other tiles, every path.
template <int kC, bool kFast>
__global__ void __launch_bounds__(kThreads) split_kernel(const Problem p) {
  extern __shared__ float4 smem4[];
  float* smem = reinterpret_cast<float*>(smem4);
  const int s = static_cast<int>(blockIdx.x);
  const std::int64_t h = blockIdx.y, b = blockIdx.z;
  const int warp = static_cast<int>(threadIdx.x) / 32, lane = static_cast<int>(threadIdx.x) % 32;
  const std::int64_t D = p.channels, Q = p.qpk;
  float* q = smem;  // qT[D][kMaxQ]
  float* tq = smem + kMaxQ * D + warp * warp_floats(Q, D);  // tqT[D][kMaxQ]
  float* gathered = tq + kMaxQ * D;                          // [Q][D]
  af::Meta* kmeta = reinterpret_cast<af::Meta*>(gathered + Q * D);  // [D]
  af::Meta* vmeta = kmeta + D;                                      // [value_meta_capacity(D)]
  for (std::int64_t i = threadIdx.x; i < kMaxQ * D; i += kThreads) {
    const std::int64_t c = i / kMaxQ, hq = i % kMaxQ;
    q[i] = hq < Q ? query_element(p, b, h * Q + hq, c) : 0.0f;
  }
  for (std::int64_t i = lane; i < kMaxQ * D; i += 32) tq[i] = 0.0f;  // this warp's; the padding heads stay 0
  __syncthreads();

  const SequenceEntry seq = p.sequences[b];
  const std::int64_t first_tile = seq.tile_begin + (kFast ? 0 : seq.fast_count);
  const TileRange range = split_tiles(kFast ? seq.fast_count : seq.tile_count - seq.fast_count,
                                      kFast ? p.splits : p.generic_splits, s);
  float m[kMaxQ], l[kMaxQ], acc[kMaxQ][kC];
#pragma unroll
  for (int hq = 0; hq < kMaxQ; ++hq) {
    m[hq] = -HUGE_VALF;
    l[hq] = 0.0f;
#pragma unroll
    for (int ci = 0; ci < kC; ++ci) acc[hq][ci] = 0.0f;
  }
  const bool transform = af::needs_transform(p.key);
  std::int32_t cached_block = INT_MIN;

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
          __syncwarp();
          for (std::int64_t c = lane; c < D; c += 32) {
            const std::int64_t idx = af::gathered_index(p.key, kp, D, c);
            for (std::int64_t hq = 0; hq < Q; ++hq) gathered[hq * D + idx] = q[c * kMaxQ + hq];
          }
          __syncwarp();
          for (std::int64_t i = lane; i < D; i += 32)
            for (std::int64_t hq = 0; hq < Q; ++hq)
              tq[i * kMaxQ + hq] = af::transform_entry(p.key, kp.first_n, kp.second_n, gathered + hq * D, i);
          __syncwarp();
          cached_block = tile.key_block;
        }
        qk = tq;
      }
      kstaged = kFast || key_meta_staged(kp, ktr0, tile.n);
      if (kstaged) {
        __syncwarp();
        for (std::int64_t i = lane; i < D; i += 32) kmeta[i] = key_meta_entry(kp, ktr0, i);
        __syncwarp();
      }
    }

    // Scores, lane -> token t0 + lane.
    const bool active = lane < tile.n;
    const std::int64_t t = tile.t0 + lane;
    float sc[kMaxQ];
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq) sc[hq] = 0.0f;
    if (active) {
      if (kFast || kstaged) {
        const std::int64_t tr = ktr0 + lane;
        for (std::int64_t i = 0; i < kp.first_n; ++i) {
          const float k = af::decode_code(kp.first, af::view_code(kp.first, tr, i), kmeta[i]);
          score_update(sc, qk, i, k);
        }
        for (std::int64_t i = kp.first_n; i < D; ++i) {
          const float k = af::decode_code(kp.second, af::view_code(kp.second, tr, i - kp.first_n), kmeta[i]);
          score_update(sc, qk, i, k);
        }
      } else if constexpr (!kFast) {
        for (std::int64_t i = 0; i < D; ++i) {
          const float k = key_element(p, seq, tile, kp, kbegin, h, t, i);
          score_update(sc, qk, i, k);
        }
      }
    }
    // Online softmax update of the warp's partial; sc becomes the tile's probabilities exp2(s - m).
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq) {
      if (hq >= Q) continue;
      const float sv = active ? sc[hq] * p.score_scale : -HUGE_VALF;
      const float mn = fmaxf(m[hq], warp_max(sv));
      const float alpha = af::merge_factor(m[hq], mn);
      const float pe = active ? exp2f(sv - mn) : 0.0f;
      l[hq] = l[hq] * alpha + warp_sum(pe);
#pragma unroll
      for (int ci = 0; ci < kC; ++ci) acc[hq][ci] *= alpha;
      m[hq] = mn;
      sc[hq] = pe;
    }
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
    for (int j = 0; j < tile.n; ++j) {
      float pj[kMaxQ];
#pragma unroll
      for (int hq = 0; hq < kMaxQ; ++hq) pj[hq] = __shfl_sync(0xffffffffu, sc[hq], j);
#pragma unroll
      for (int ci = 0; ci < kC; ++ci) {
        const std::int64_t c = lane + 32 * ci;
        if (c >= D) break;
        float v;
        if constexpr (kFast) {
          v = value_staged_element(vmode, vp, vtr0, j, c, vmeta);
        } else {
          v = vmode != kValueMetaNone ? value_staged_element(vmode, vp, vtr0, j, c, vmeta)
                                      : value_element(p, seq, tile, vp, vbegin, h, tile.t0 + j, c);
        }
#pragma unroll
        for (int hq = 0; hq < kMaxQ; ++hq)
          if (hq < Q) acc[hq][ci] += pj[hq] * v;
      }
    }
  }

  // Merge the warps' partials, write the split's.
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
      const std::int64_t c = lane + 32 * ci;
      if (c < D) wacc[(warp * Q + hq) * D + c] = acc[hq][ci];
    }
  }
  __syncthreads();
  const std::int64_t base = ((b * p.heads + h) * (p.splits + p.generic_splits) + (kFast ? s : p.splits + s)) * Q;
  for (std::int64_t i = threadIdx.x; i < Q * D; i += kThreads) {
    const std::int64_t hq = i / D, c = i % D;
    float mt = -HUGE_VALF;
    for (int w = 0; w < kWarps; ++w) mt = fmaxf(mt, wm[w * Q + hq]);
    float a = 0.0f;
    for (int w = 0; w < kWarps; ++w) a += wacc[(w * Q + hq) * D + c] * af::merge_factor(wm[w * Q + hq], mt);
    p.partial_acc[(base + hq) * D + c] = a;
  }
  for (std::int64_t hq = threadIdx.x; hq < Q; hq += kThreads) {
    float mt = -HUGE_VALF;
    for (int w = 0; w < kWarps; ++w) mt = fmaxf(mt, wm[w * Q + hq]);
    float lt = 0.0f;
    for (int w = 0; w < kWarps; ++w) lt += wl[w * Q + hq] * af::merge_factor(wm[w * Q + hq], mt);
    p.partial_ml[(base + hq) * 2] = mt;
    p.partial_ml[(base + hq) * 2 + 1] = lt;
  }
}

// One block per (KV head, sequence): out = sum_s f_s acc_s / sum_s f_s l_s, f_s = exp2(m_s - max m).
__global__ void __launch_bounds__(kThreads) combine_kernel(const Problem p) {
  const std::int64_t h = blockIdx.x, b = blockIdx.y;
  const std::int64_t D = p.channels, Q = p.qpk, S = p.splits + p.generic_splits;
  for (std::int64_t i = threadIdx.x; i < Q * D; i += kThreads) {
    const std::int64_t hq = i / D, c = i % D;
    const std::int64_t base = (b * p.heads + h) * S;
    float mt = -HUGE_VALF;
    for (std::int64_t s = 0; s < S; ++s) mt = fmaxf(mt, p.partial_ml[((base + s) * Q + hq) * 2]);
    float lt = 0.0f, a = 0.0f;
    for (std::int64_t s = 0; s < S; ++s) {
      const float f = af::merge_factor(p.partial_ml[((base + s) * Q + hq) * 2], mt);
      lt += p.partial_ml[((base + s) * Q + hq) * 2 + 1] * f;
      a += p.partial_acc[((base + s) * Q + hq) * D + c] * f;
    }
    store_from_float(p.out, p.out_dtype, static_cast<std::size_t>((b * p.heads * Q + h * Q + hq) * D + c), a / lt);
  }
}

void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) VIDKV_THROW(CudaError, "decode attention: ", what, ": ", cudaGetErrorString(e));
}

template <int kC, bool kFast>
void launch_split(const Problem& p, dim3 grid, std::size_t smem, cudaStream_t st) {
  if (grid.x == 0) return;
  if (smem > 48 * 1024)
    check(cudaFuncSetAttribute(split_kernel<kC, kFast>, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)),
          "shared memory size");
  split_kernel<kC, kFast><<<grid, kThreads, smem, st>>>(p);
  check(cudaGetLastError(), "split kernel launch");
}

}  // namespace

void launch(const Problem& p, void* stream) {
  VIDKV_REQUIRE(p.qpk >= 1 && p.qpk <= kMaxQ && p.channels >= 1 && p.channels <= 32 * kMaxC, ShapeError,
                "decode attention: ", p.qpk, " query heads per KV head (1..", kMaxQ, "), head_dim ", p.channels, " (1..",
                32 * kMaxC, ")");
  auto st = static_cast<cudaStream_t>(stream);
  const std::size_t smem = smem_floats(p.qpk, p.channels) * sizeof(float);
  const dim3 fast_grid(static_cast<unsigned>(p.splits), static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  const dim3 generic_grid(static_cast<unsigned>(p.generic_splits), static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch));
  if (p.channels <= 128) {
    launch_split<4, true>(p, fast_grid, smem, st);
    launch_split<4, false>(p, generic_grid, smem, st);
  } else {
    launch_split<kMaxC, true>(p, fast_grid, smem, st);
    launch_split<kMaxC, false>(p, generic_grid, smem, st);
  }
  check(cudaGetLastError(), "split kernel launch");
  combine_kernel<<<dim3(static_cast<unsigned>(p.heads), static_cast<unsigned>(p.batch)), kThreads, 0, st>>>(p);
  check(cudaGetLastError(), "combine kernel launch");
}

int multiprocessors() {
  int dev = 0, n = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev), "multiprocessor count");
  return n;
}

}  // namespace vidkv::attention_cuda
