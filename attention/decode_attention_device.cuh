// Device helpers shared by the decode-attention kernels (decode_attention.cu: the general and the fast kernel;
// decode_attention_tensor_core.cu: the tensor-core kernel). CUDA only, included by .cu files. Each thread block
// is kWarps warps for one (split, KV head, sequence); the queries of the KV head sit transposed in shared memory.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <utility>

#include "vidkv/attention/decode_attention_tables.h"
#include "vidkv/core/cuda/dependent_launch.cuh"

namespace vidkv::attention_cuda::device {

namespace af = attention_format;
using attention_tables::Problem;
using attention_tables::query_element;

constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kMaxQ = 8;  // DecodeAttention::kMaxQueryHeadsPerKv
constexpr int kMaxC = 8;  // value channels per lane: DecodeAttention::kMaxHeadDim / 32

// kernel<<<grid, block, smem, stream>>>(args...) as a programmatic dependent launch that does not wait for the kernel
// before it on the stream (no griddepcontrol.wait in it): the caller guarantees that it reads nothing that kernel
// writes and writes nothing that kernel reads, and that the kernel before it lets it start (allow_next_grid) or
// ends. Everything enqueued before that kernel has completed when it starts (a plain launch), so it has when this
// one starts too. What is gained: the two kernels run side by side on one stream, without events.
template <class... KArgs, class... Args>
cudaError_t launch_beside_previous(void (*kernel)(KArgs...), dim3 grid, dim3 block, std::size_t smem, cudaStream_t stream,
                                   Args&&... args) {
  return dependent_launch::launch_programmatic(kernel, grid, block, smem, stream, std::forward<Args>(args)...);
}

// A 32-bit load with acquire semantics at GPU scope: what the writer did before its release (or fence and atomic) is
// visible after it.
__device__ __forceinline__ std::uint32_t load_acquire(const std::uint32_t* p) {
  std::uint32_t v;
  asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
  return v;
}

__device__ inline float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ inline float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// The block's queries transposed and padded: qT[c][hq] = query head h * Q + hq, channel c (zeros past Q).
__device__ inline void load_queries(const Problem& p, float* q, std::int64_t b, std::int64_t h) {
  const std::int64_t D = p.channels, Q = p.qpk;
  for (std::int64_t i = threadIdx.x; i < kMaxQ * D; i += kThreads) {
    const std::int64_t c = i / kMaxQ, hq = i % kMaxQ;
    q[i] = hq < Q ? query_element(p, b, h * Q + hq, c) : 0.0f;
  }
}

// The query in key block kb's coordinates (transform_kernel's output, Problem::transformed) copied into this
// warp's tqT[W][kMaxQ] (W = key_width; 16-byte pieces). Warp-synchronous.
__device__ inline void load_transformed(const Problem& p, std::int64_t kb, std::int64_t h, float* tq, int lane) {
  const std::int64_t n4 = af::key_width(p.key, p.channels) * kMaxQ / 4;
  const float4* src = reinterpret_cast<const float4*>(p.transformed) + (kb * p.heads + h) * n4;
  float4* dst = reinterpret_cast<float4*>(tq);
  __syncwarp();
  for (std::int64_t i = lane; i < n4; i += 32) dst[i] = src[i];
  __syncwarp();
}

// Set bits of a token mask in [from, to) (af::mask_count), the warp's lanes taking a byte each in turn. Every lane
// gets the total.
__device__ inline std::int64_t warp_mask_count(const std::uint8_t* mask, std::int64_t from, std::int64_t to, int lane) {
  int n = 0;
  for (std::int64_t byte = from / 8 + lane; byte * 8 < to; byte += 32) {
    const std::int64_t lo = byte * 8 > from ? byte * 8 : from, hi = byte * 8 + 8 < to ? byte * 8 + 8 : to;
    n += static_cast<int>(af::mask_count(mask, lo, hi));
  }
  for (int o = 16; o > 0; o >>= 1) n += __shfl_xor_sync(0xffffffffu, n, o);
  return n;
}

// A warp's partial held in MMA C-fragment order (lane 4 g + tig: query heads 2 tig and 2 tig + 1; acc[mt][r] channel
// 16 mt + g + 8 (r / 2), head 2 tig + r % 2 for the tiles mt < tiles16) to shared memory as merge_warp_partials reads
// it (wm, wl, wacc from smem). The tensor-core and fragment kernels' last step before that merge.
template <int kTiles>
__device__ inline void write_mma_warp_partial(float* smem, int warp, int Q, int D, int tiles16, int g, int tig, const float (&m)[2],
                                              const float (&l)[2], const float (&acc)[kTiles][4]) {
  float* wm = smem;
  float* wl = wm + kWarps * Q;
  float* wacc = wl + kWarps * Q;
#pragma unroll
  for (int e = 0; e < 2; ++e) {
    const int hq = 2 * tig + e;
    if (hq >= Q) continue;
    if (g == 0) {
      wm[warp * Q + hq] = m[e];
      wl[warp * Q + hq] = l[e];
    }
#pragma unroll
    for (int mt = 0; mt < kTiles; ++mt) {
      if (mt >= tiles16) break;
      wacc[(warp * Q + hq) * D + 16 * mt + g] = acc[mt][e];
      wacc[(warp * Q + hq) * D + 16 * mt + g + 8] = acc[mt][2 + e];
    }
  }
}

// Merges the block's warps' partials, which each warp has written to shared memory as wm[kWarps][Q] (max),
// wl[kWarps][Q] (sum of probabilities) and wacc[kWarps][Q][D] (weighted value sums), in that order from smem, and
// writes them as split partial `slot` of (sequence b, KV head h): p.partial_acc and p.partial_ml. Call after a
// barrier that follows the warps' writes.
__device__ inline void merge_warp_partials(const Problem& p, const float* smem, std::int64_t b, std::int64_t h, int slot) {
  const std::int64_t D = p.channels, Q = p.qpk;
  const float* wm = smem;
  const float* wl = wm + kWarps * Q;
  const float* wacc = wl + kWarps * Q;
  const std::int64_t base = ((b * p.heads + h) * (p.splits + p.generic_splits) + slot) * Q;
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

// The general kernels' last step where launch() runs them beside the other kernel on one stream (p.generic_done set):
// the combine kernel may already run and wait for this block's partial, so every thread's writes are made visible at
// GPU scope, then the block is counted for (sequence b, KV head h) (combine_kernel's acquire load pairs with the fence
// and the atomic). Call after the block's merge_warp_partials; block-synchronous.
__device__ inline void count_general_block(const Problem& p, std::int64_t b, std::int64_t h) {
  if (p.generic_done == nullptr) return;
  __threadfence();
  __syncthreads();
  if (threadIdx.x == 0) atomicAdd(p.generic_done + b * p.heads + h, 1u);
}

}  // namespace vidkv::attention_cuda::device
