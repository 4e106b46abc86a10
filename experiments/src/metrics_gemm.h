// The dense kernels of the optimised metric path (layer_metrics_all.cpp): one KV head's attention as matrix
// products through Eigen, and the reconstruction-error sums. metrics_gemm.cpp is compiled twice: for baseline
// x86-64 (namespace portable) and, on x86-64 with GCC or Clang, for AVX2 + FMA (namespace avx2), where Eigen's
// GEMM runs 4-8x faster; gemm_kernels() picks one at run time. Host memory only; fp32 inputs.
#pragma once

#include <cstdint>

namespace vidkv::metrics_gemm {

// One KV head and the query rows that read it (every query head of its GQA group x every usable query).
struct AttentionProblem {
  const float* key = nullptr;        // [keys, dim] row-major: the first `keys` tokens of the head's slab
  const float* key_hat = nullptr;    // [keys, dim] reconstruction
  const float* value = nullptr;      // [keys, dim]
  const float* value_hat = nullptr;  // [keys, dim]
  const float* queries = nullptr;    // [rows, dim] row-major, fp32 query states
  const std::int64_t* keys_seen = nullptr;  // [rows] causal length of each row: position + 1, in 1..keys
  std::int64_t rows = 0, keys = 0, dim = 0;  // keys = max of keys_seen
  bool outputs = true;               // also the attention outputs (the four P V products)
};

// Per query row, in double: sum_j (s_j - s'_j)^2 and sum_j s_j^2 over its causal keys; KL(p || p') (before the
// reference's clamp at 0); and, with outputs, ||o||^2, ||o - o'||^2, ||o - o'_key_only||^2,
// ||o - o'_value_only||^2 (definitions in metrics.h).
struct AttentionRowSums {
  double logit_d2 = 0, logit_r2 = 0, kl = 0, o_ref2 = 0, o_both2 = 0, o_k2 = 0, o_v2 = 0;
};

// Sums of x^2, y^2, (x - y)^2 and x*y over n elements, in double (16 lanes, then the lanes in order).
struct ErrorSumValues {
  double ref2 = 0, hat2 = 0, diff2 = 0, dot = 0;
};

// Largest row norms of one head's keys (over the problem's keys), in double: max_j ||k_j|| and
// max_j ||fl(k_j - k'_j)|| (the fp32 difference the logit differences are computed from).
struct KeyNorms {
  double key = 0, diff = 0;
};

struct Kernels {
  // Fills rows[0..rows) and the fp32 logits S = Q K^T [rows, keys] and D = Q (K - K')^T [rows, keys] (row-major,
  // unscaled: the reference's s_j is S * (1/sqrt(dim)) and s'_j = (S - D) / sqrt(dim); entries past a row's
  // keys_seen are computed but unused), and the key norms. Scratch is per thread and reused.
  void (*attention)(const AttentionProblem& problem, float* logits, float* logit_diff, AttentionRowSums* rows,
                    KeyNorms* norms);
  ErrorSumValues (*error_sums)(const float* x, const float* y, std::int64_t n);
  const char* name;  // "avx2" or "portable"
};

namespace portable {
void attention(const AttentionProblem& problem, float* logits, float* logit_diff, AttentionRowSums* rows, KeyNorms* norms);
ErrorSumValues error_sums(const float* x, const float* y, std::int64_t n);
}  // namespace portable
namespace avx2 {
void attention(const AttentionProblem& problem, float* logits, float* logit_diff, AttentionRowSums* rows, KeyNorms* norms);
ErrorSumValues error_sums(const float* x, const float* y, std::int64_t n);
}  // namespace avx2

// The AVX2 + FMA build when it was compiled in, the CPU has AVX2 and FMA and VIDKV_CPU_KERNELS is not
// "portable"; otherwise the baseline build. Evaluated once per process.
const Kernels& gemm_kernels();

}  // namespace vidkv::metrics_gemm
