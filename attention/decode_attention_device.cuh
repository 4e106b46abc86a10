// Device helpers shared by the decode-attention kernels (decode_attention.cu: the general and the fast kernel;
// decode_attention_tensor_core.cu: the tensor-core kernel). CUDA only, included by .cu files. Each thread block
// is kWarps warps for one (split, KV head, sequence); the queries of the KV head sit transposed in shared memory.
#pragma once

#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "vidkv/attention/decode_attention_tables.h"

namespace vidkv::attention_cuda::device {

namespace af = attention_format;
using attention_tables::Problem;
using attention_tables::query_element;

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

// The block's queries transposed and padded: qT[c][hq] = query head h * Q + hq, channel c (zeros past Q).
__device__ inline void load_queries(const Problem& p, float* q, std::int64_t b, std::int64_t h) {
  const std::int64_t D = p.channels, Q = p.qpk;
  for (std::int64_t i = threadIdx.x; i < kMaxQ * D; i += kThreads) {
    const std::int64_t c = i / kMaxQ, hq = i % kMaxQ;
    q[i] = hq < Q ? query_element(p, b, h * Q + hq, c) : 0.0f;
  }
}

// w[hq] = sum_c g[hq * D + c] * B_jc over the n channels of an FFT child (af::transform_entry's sum, the same fp32
// operations in the same order), the weight kind fixed per call so that the loop over c has no branch on it.
template <bool kComplex>
__device__ inline void adjoint_entry(float (&w)[kMaxQ], const float* g, std::int64_t D, std::int64_t Q, std::int64_t n,
                                     std::int64_t j) {
#pragma unroll
  for (int hq = 0; hq < kMaxQ; ++hq) w[hq] = 0.0f;
  for (std::int64_t c = 0; c < n; ++c) {
    const float b = kComplex ? af::fft_complex_inverse_weight(n, j, c) : af::fft_real_inverse_weight(n, j, c);
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq)
      if (hq < Q) w[hq] = __fadd_rn(w[hq], __fmul_rn(g[hq * D + c], b));
  }
}

// The queries carried into key part kp's coordinates (gathered channel order, FFT frequency domain:
// af::transform_entry): tqT[i][hq] for the part's key_width part indices i, from qT, through this warp's `gathered`
// [Q][D]. Warp-synchronous.
__device__ inline void transform_queries(const Problem& p, const af::PartRef& kp, const float* q, float* gathered,
                                         float* tq, int lane) {
  const std::int64_t D = p.channels, Q = p.qpk, W = kp.first_n + kp.second_n;
  __syncwarp();
  for (std::int64_t c = lane; c < D; c += 32) {
    const std::int64_t idx = af::gathered_index(p.key, kp, D, c);
    for (std::int64_t hq = 0; hq < Q; ++hq) gathered[hq * D + idx] = q[c * kMaxQ + hq];
  }
  __syncwarp();
  // af::transform_entry for every head, with each inverse-FFT weight computed once for all heads (the weights'
  // cospi / sinpi dominate): per head the same fp32 operations in the same order, so the same values.
  for (std::int64_t i = lane; i < W; i += 32) {
    const af::PartSlot slot = af::part_slot(kp, i);
    const af::ChildFormat& child = slot.in_first ? p.key.first : p.key.second;
    const std::int64_t j = i - slot.base;
    if (!af::child_fft(child)) {
      for (std::int64_t hq = 0; hq < Q; ++hq) tq[i * kMaxQ + hq] = gathered[hq * D + slot.channel_base + j];
      continue;
    }
    float w[kMaxQ];
    const float* g = gathered + slot.channel_base;
    if (child.fft_complex) adjoint_entry<true>(w, g, D, Q, slot.channels, j);
    else adjoint_entry<false>(w, g, D, Q, slot.channels, j);
#pragma unroll
    for (int hq = 0; hq < kMaxQ; ++hq)
      if (hq < Q) tq[i * kMaxQ + hq] = w[hq];
  }
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

}  // namespace vidkv::attention_cuda::device
