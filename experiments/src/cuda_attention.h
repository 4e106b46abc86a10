// The attention metrics of trace replay on the device (backend: cuda; definitions in metrics.h). Host-only
// declarations, no CUDA headers (cuda_attention.cu); only in builds with CUDA.
//
// One thread block per item (query head qh, recorded query qi), whose KV head is qh / (q_heads / kv_heads) (GQA).
// Per item, in double as the CPU (metrics.cpp):
//   logits s_j = (sum_c q_c K[j][c]) / sqrt(d) and s'_j with K' for the causal keys j <= t, the dot products in
//   ascending c with separately rounded multiplies and adds (__dmul_rn / __dadd_rn: never contracted into FMA),
//   so s and s' are bit-identical to the CPU's; softmax p, p' (max-subtracted); KL(p || p') with the CPU's guard
//   (p_j > 0, max(p'_j, 1e-300), clamped at 0); the top-k sets (k = min(32, t + 1); p descending, then index
//   ascending, a strict total order: k rounds of a block arg-max below the previous pick) and their overlap / k;
//   outputs o_c = sum_j p_j v_jc in ascending j per channel (as the CPU) with (K, V), (K', V'), (K', V), (K, V').
// Sums over keys and channels use a fixed tree (deterministic), not the CPU's sequential order, and the device's
// exp/log may differ from the host's by an ulp: the metrics agree with backend: cpu to ~1e-12 relative (the tests
// allow 1e-9 and an absolute 1e-13 for KL), the top-k overlap exactly unless two probabilities are within an ulp.
#pragma once

#include <cstdint>

namespace vidkv::attention_cuda {

// Values per item in `out`: valid (1 if the query's token is inside [0, tokens), else 0 and the rest 0),
// logit_d2 = sum (s - s')^2, logit_r2 = sum s^2, kl, overlap (|top-k(p) ∩ top-k(p')| / k), o_ref2 = sum o^2,
// o_both2 = sum (o - o_{K',V'})^2, o_k2 = sum (o - o_{K',V})^2, o_v2 = sum (o - o_{K,V'})^2.
constexpr int kItemValues = 9;

struct Problem {
  const float* queries = nullptr;         // [q_heads, count, dim] device
  const std::int32_t* positions = nullptr;  // [count] device: trace token of each query
  std::int64_t q_heads = 0, count = 0;
  const float* key = nullptr;             // [kv_heads, tokens, dim] device
  const float* key_hat = nullptr;
  const float* value = nullptr;
  const float* value_hat = nullptr;
  std::int64_t kv_heads = 0, tokens = 0, dim = 0;
};

// Bytes of device scratch attention_sums needs (the logits / probabilities of every item: 2 * items * tokens doubles).
std::size_t scratch_bytes(const Problem& p);
// out: q_heads * count * kItemValues doubles of device memory, item qh * count + qi. Enqueued on `stream`.
void attention_sums(const Problem& p, double* scratch, double* out, void* stream);

}  // namespace vidkv::attention_cuda
