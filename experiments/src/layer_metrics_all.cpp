// layer_metrics_all(): the optimised metric path (metrics.h). Per KV head, one task (heads in parallel on a pool
// when one is given):
//   - reconstruction errors: the four sums of each head's K and V slabs in one pass (8 double lanes); the layer's
//     sums are the heads' sums added in head order;
//   - attention: the query rows of the head (its GQA group of query heads x the usable queries, in the reference's
//     order) go through metrics_gemm's kernels at once: logits and logit differences as fp32 GEMMs, softmax and
//     KL in double, outputs as four fp32 GEMMs in key blocks accumulated in double (metrics_gemm.cpp);
//   - top-k overlap: the reference's top-k sets exactly (see top_k_of_reference below);
//   - the layer's attention sums are the heads' sums added in head order (the reference pools query by query).
// Only the selected groups are computed; without an attention group the queries are never read. Per-head results
// are combined in a fixed order, so the result is the same with or without a pool.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <functional>
#include <iterator>
#include <numeric>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/metric_kernels.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/experiments/src/metrics_gemm.h"

namespace vidkv {

namespace metrics_gemm {

const Kernels& gemm_kernels() {
  static const Kernels kernels = [] {
#if defined(VIDKV_HAVE_METRICS_GEMM_AVX2)
    const char* env = std::getenv("VIDKV_CPU_KERNELS");
    const bool portable_only = env && std::string(env) == "portable";
    __builtin_cpu_init();
    if (!portable_only && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      return Kernels{&avx2::attention, &avx2::error_sums, "avx2"};
#endif
    return Kernels{&portable::attention, &portable::error_sums, "portable"};
  }();
  return kernels;
}

}  // namespace metrics_gemm

namespace {

using metric_kernels::ErrorSums;
using metric_kernels::put_errors;
using metrics_gemm::AttentionRowSums;
using metrics_gemm::ErrorSumValues;

constexpr double kUnitRoundoff = 0x1p-24;  // fp32

struct AttentionSums {
  double logit_d2 = 0, logit_r2 = 0, kl = 0, overlap = 0, o_ref2 = 0, o_both2 = 0, o_k2 = 0, o_v2 = 0;
  std::int64_t queries_seen = 0;
  void add(const AttentionSums& o) {
    logit_d2 += o.logit_d2;
    logit_r2 += o.logit_r2;
    kl += o.kl;
    overlap += o.overlap;
    o_ref2 += o.o_ref2;
    o_both2 += o.o_both2;
    o_k2 += o.o_k2;
    o_v2 += o.o_v2;
    queries_seen += o.queries_seen;
  }
  void put(MetricValues& m, const MetricSelection& sel) const {
    if (queries_seen == 0) return;
    const double nq = static_cast<double>(queries_seen);
    if (sel.attention_logits) {
      m["attn_logit_rel_error"] = logit_r2 > 0 ? std::sqrt(logit_d2 / logit_r2) : 0.0;
      m["attn_kl"] = kl / nq;
    }
    if (sel.attention_topk) m["attn_topk_overlap"] = overlap / nq;
    if (sel.attention_outputs) {
      m["attn_out_rel_error"] = o_ref2 > 0 ? std::sqrt(o_both2 / o_ref2) : 0.0;
      m["attn_out_rel_error_key_only"] = o_ref2 > 0 ? std::sqrt(o_k2 / o_ref2) : 0.0;
      m["attn_out_rel_error_value_only"] = o_ref2 > 0 ? std::sqrt(o_v2 / o_ref2) : 0.0;
    }
  }
};

struct HeadResult {
  ErrorSumValues key, value;
  AttentionSums attention;
};

// The query rows shared by every KV head: usable queries (position inside the replayed tokens) in query order.
struct QueryRows {
  std::vector<std::int64_t> query;      // indices into the recorded queries
  std::vector<std::int64_t> keys_seen;  // position + 1
  std::int64_t max_keys = 0;
};

// The reference's logit of one key: the dot product in double in ascending channel order, then the scale
// (metrics.cpp; the same operations, so the same double).
double reference_logit(const float* q, const float* k, std::int64_t d, double inv_sqrt_d) {
  double a = 0;
  for (std::int64_t c = 0; c < d; ++c) a += static_cast<double>(q[c]) * k[c];
  return a * inv_sqrt_d;
}

struct TopKScratch {
  std::vector<double> exact, e;
  std::vector<float> estimate_hat, block_max, selection;
  std::vector<std::int64_t> candidates;
  std::vector<std::size_t> order, set_p, set_ph, common;
};

// Largest of x[0..16): two 8-lane halves, then the lanes (vectorised by the compiler; x holds no NaN).
inline float max_of_16(const float* x) {
  float m[8];
  for (int l = 0; l < 8; ++l) m[l] = x[l] < x[8 + l] ? x[8 + l] : x[l];
  for (int l = 1; l < 8; ++l) m[0] = m[0] < m[l] ? m[l] : m[0];
  return m[0];
}

// Keys per block of the top-k scans: 16, fewer for short rows so that there are about 4k blocks or more.
std::int64_t top_k_block(std::int64_t n, std::size_t k) {
  return std::clamp<std::int64_t>(n / (4 * static_cast<std::int64_t>(k)), 1, 16);
}

// The reference's top-k set of one query's softmax (ascending key indices into `out`), found from fp32 estimates:
// estimate[j] is the unscaled logit q . k_j (or q . k'_j) from the GEMMs, within `bound` of the exact value for
// every j < n. Every key of the reference's top-k has an exact logit >= the k-th largest exact logit >= t_k - bound
// (t_k: the k-th largest estimate; k keys have estimates >= t_k), so its estimate is >= t_k - 2 bound: the
// candidates {j : estimate[j] >= t_k - 2 bound} hold the reference's set. Their logits are recomputed with the
// reference's operations (bit-identical doubles), the maximum is among them, and they are ranked as the reference
// ranks p: exp(s_j - max) descending, then index ascending. The result equals the reference's set unless two
// candidates' exp values differ by less than the rounding of the reference's division by its normaliser (a tie it
// breaks by index): then the two sets may differ in that one key.
// Finding t_k: the k largest block maxima are k distinct keys, so t_k >= t_low, the k-th largest block maximum;
// only the keys >= t_low (in blocks whose maximum is >= t_low) are ranked. When exactly k keys are candidates they
// are the reference's set, and nothing needs recomputing.
void top_k_of_reference(const float* estimate, std::int64_t n, std::size_t k, double bound, const float* q,
                        const float* keys, std::int64_t d, double inv_sqrt_d, TopKScratch& w, std::vector<std::size_t>& out) {
  const std::int64_t block = top_k_block(n, k), blocks = (n + block - 1) / block;
  w.block_max.resize(static_cast<std::size_t>(blocks));
  for (std::int64_t b = 0; b < blocks; ++b) {
    const std::int64_t j0 = b * block, j1 = std::min(n, j0 + block);
    if (j1 - j0 == 16) {
      w.block_max[static_cast<std::size_t>(b)] = max_of_16(estimate + j0);
      continue;
    }
    float m = estimate[j0];
    for (std::int64_t j = j0 + 1; j < j1; ++j) m = std::max(m, estimate[j]);
    w.block_max[static_cast<std::size_t>(b)] = m;
  }
  float t_low = -INFINITY;
  if (static_cast<std::size_t>(blocks) >= k) {
    w.selection.assign(w.block_max.begin(), w.block_max.end());
    std::nth_element(w.selection.begin(), w.selection.begin() + static_cast<long>(k - 1), w.selection.end(), std::greater<float>());
    t_low = w.selection[k - 1];
  }
  w.selection.clear();
  for (std::int64_t b = 0; b < blocks; ++b) {
    if (w.block_max[static_cast<std::size_t>(b)] < t_low) continue;
    const std::int64_t j0 = b * block, j1 = std::min(n, j0 + block);
    for (std::int64_t j = j0; j < j1; ++j)
      if (estimate[j] >= t_low) w.selection.push_back(estimate[j]);
  }
  std::nth_element(w.selection.begin(), w.selection.begin() + static_cast<long>(k - 1), w.selection.end(), std::greater<float>());
  const double threshold = static_cast<double>(w.selection[k - 1]) - 2.0 * bound;
  w.candidates.clear();
  for (std::int64_t b = 0; b < blocks; ++b) {
    if (static_cast<double>(w.block_max[static_cast<std::size_t>(b)]) < threshold) continue;
    const std::int64_t j0 = b * block, j1 = std::min(n, j0 + block);
    for (std::int64_t j = j0; j < j1; ++j)
      if (static_cast<double>(estimate[j]) >= threshold) w.candidates.push_back(j);
  }
  const std::size_t nc = w.candidates.size();
  if (nc == k) {  // candidates are in ascending key order
    out.assign(w.candidates.begin(), w.candidates.end());
    return;
  }
  w.exact.resize(nc);
  w.e.resize(nc);
  // Eight candidates at a time: eight independent chains, each in the reference's channel order.
  constexpr std::size_t kChains = 8;
  std::size_t c0 = 0;
  for (; c0 + kChains <= nc; c0 += kChains) {
    double a[kChains] = {};
    const float* kr[kChains];
    for (std::size_t l = 0; l < kChains; ++l) kr[l] = keys + w.candidates[c0 + l] * d;
    for (std::int64_t c = 0; c < d; ++c)
      for (std::size_t l = 0; l < kChains; ++l) a[l] += static_cast<double>(q[c]) * kr[l][c];
    for (std::size_t l = 0; l < kChains; ++l) w.exact[c0 + l] = a[l] * inv_sqrt_d;
  }
  for (; c0 < nc; ++c0) w.exact[c0] = reference_logit(q, keys + w.candidates[c0] * d, d, inv_sqrt_d);
  double mx = -INFINITY;
  for (std::size_t c = 0; c < nc; ++c) mx = std::max(mx, w.exact[c]);
  for (std::size_t c = 0; c < nc; ++c) w.e[c] = std::exp(w.exact[c] - mx);
  w.order.resize(nc);
  std::iota(w.order.begin(), w.order.end(), std::size_t{0});
  auto before = [&](std::size_t a, std::size_t b) { return w.e[a] > w.e[b] || (w.e[a] == w.e[b] && a < b); };
  if (k < nc) std::nth_element(w.order.begin(), w.order.begin() + static_cast<long>(k), w.order.end(), before);
  out.clear();
  for (std::size_t c = 0; c < k; ++c) out.push_back(static_cast<std::size_t>(w.candidates[w.order[c]]));
  std::sort(out.begin(), out.end());
}

struct HeadScratch {
  std::vector<float> queries, logits, logit_diff;
  std::vector<std::int64_t> keys_seen;
  std::vector<AttentionRowSums> rows;
  TopKScratch top_k;
};

HeadScratch& head_scratch() {
  thread_local HeadScratch s;
  return s;
}

// Attention sums of KV head h over its query rows, in the reference's order (query head, then query).
AttentionSums head_attention(const LayerTensors& t, const LayerQueries& q, std::int64_t h, const QueryRows& qr,
                             const MetricSelection& sel, const metrics_gemm::Kernels& kernels) {
  const BlockShape& sh = t.shape;
  const std::int64_t group = q.heads / sh.heads, d = sh.channels, slab = sh.slab_elements();
  const auto usable = static_cast<std::int64_t>(qr.query.size());
  const std::int64_t rows = group * usable, n_keys = qr.max_keys;
  HeadScratch& w = head_scratch();
  w.queries.resize(static_cast<std::size_t>(rows * d));
  w.keys_seen.resize(static_cast<std::size_t>(rows));
  for (std::int64_t g = 0; g < group; ++g)
    for (std::int64_t u = 0; u < usable; ++u) {
      const std::int64_t qh = h * group + g, row = g * usable + u;
      const float* src = q.data.data() + (qh * q.count + qr.query[static_cast<std::size_t>(u)]) * d;
      std::copy(src, src + d, w.queries.begin() + row * d);
      w.keys_seen[static_cast<std::size_t>(row)] = qr.keys_seen[static_cast<std::size_t>(u)];
    }
  w.logits.resize(static_cast<std::size_t>(rows * n_keys));
  w.logit_diff.resize(static_cast<std::size_t>(rows * n_keys));
  w.rows.resize(static_cast<std::size_t>(rows));
  const float* key = t.key + h * slab;
  const float* key_hat = t.key_hat + h * slab;
  metrics_gemm::AttentionProblem pr;
  pr.key = key;
  pr.key_hat = key_hat;
  pr.value = t.value + h * slab;
  pr.value_hat = t.value_hat + h * slab;
  pr.queries = w.queries.data();
  pr.keys_seen = w.keys_seen.data();
  pr.rows = rows;
  pr.keys = n_keys;
  pr.dim = d;
  pr.outputs = sel.attention_outputs;
  metrics_gemm::KeyNorms norms;
  kernels.attention(pr, w.logits.data(), w.logit_diff.data(), w.rows.data(), &norms);

  // Error bounds of the fp32 logits (top-k): |fl(q . x) - q . x| <= gamma_d ||q|| ||x|| for a dot product of length
  // d in any order, with or without FMA (Higham, Accuracy and Stability, 3.1). The quantized logits' estimate
  // fl(S - D) adds the rounding of K - K' to fp32 (u ||K - K'||, with ||K - K'|| <= ||fl(K - K')|| / (1 - u)) and of
  // the subtraction (u |s'| <= u ||q|| (||k|| + ||K - K'||)). 1% on top covers the reference's own double rounding
  // (2^-29 of that) and the scaling.
  const double key_norm = norms.key, diff_norm = norms.diff / (1.0 - kUnitRoundoff);
  const double du = static_cast<double>(d) * kUnitRoundoff, gamma_d = du / (1.0 - du);
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(d));

  AttentionSums a;
  for (std::int64_t row = 0; row < rows; ++row) {
    const AttentionRowSums& r = w.rows[static_cast<std::size_t>(row)];
    a.logit_d2 += r.logit_d2;
    a.logit_r2 += r.logit_r2;
    a.kl += std::max(0.0, r.kl);
    a.o_ref2 += r.o_ref2;
    a.o_both2 += r.o_both2;
    a.o_k2 += r.o_k2;
    a.o_v2 += r.o_v2;
    ++a.queries_seen;
    if (!sel.attention_topk) continue;
    const std::int64_t n = w.keys_seen[static_cast<std::size_t>(row)];
    const std::size_t k = std::min<std::size_t>(32, static_cast<std::size_t>(n));
    const float* qv = w.queries.data() + row * d;
    const float* s_row = w.logits.data() + row * n_keys;
    const float* d_row = w.logit_diff.data() + row * n_keys;
    double q_norm = 0;
    for (std::int64_t c = 0; c < d; ++c) q_norm += static_cast<double>(qv[c]) * qv[c];
    q_norm = std::sqrt(q_norm);
    const double bound = 1.01 * gamma_d * q_norm * key_norm;
    const double bound_hat =
        1.01 * (gamma_d * (key_norm + diff_norm) + kUnitRoundoff * diff_norm + kUnitRoundoff * (key_norm + diff_norm)) * q_norm;
    TopKScratch& tk = w.top_k;
    // The quantized logits' estimates fl(S - D), once per row.
    tk.estimate_hat.resize(static_cast<std::size_t>(n));
    float* est_hat = tk.estimate_hat.data();
    for (std::int64_t j = 0; j < n; ++j) est_hat[j] = s_row[j] - d_row[j];
    top_k_of_reference(s_row, n, k, bound, qv, key, d, inv_sqrt_d, tk, tk.set_p);
    top_k_of_reference(est_hat, n, k, bound_hat, qv, key_hat, d, inv_sqrt_d, tk, tk.set_ph);
    tk.common.clear();
    std::set_intersection(tk.set_p.begin(), tk.set_p.end(), tk.set_ph.begin(), tk.set_ph.end(), std::back_inserter(tk.common));
    a.overlap += static_cast<double>(tk.common.size()) / static_cast<double>(k);
  }
  return a;
}

}  // namespace

std::vector<MetricValues> layer_metrics_all(const LayerTensors& t, const MetricSelection& sel, ThreadPool* pool) {
  const BlockShape& sh = t.shape;
  const std::int64_t heads = sh.heads, slab = sh.slab_elements();
  const metrics_gemm::Kernels& kernels = metrics_gemm::gemm_kernels();
  std::vector<MetricValues> out(static_cast<std::size_t>(heads + 1));

  // The queries are looked at only when an attention metric is asked for.
  const LayerQueries* q = sel.attention() ? metric_kernels::usable_queries(t) : nullptr;
  QueryRows qr;
  if (q) {
    for (std::int64_t qi = 0; qi < q->count; ++qi) {
      const std::int64_t pos = q->token_index[static_cast<std::size_t>(qi)];
      if (pos < 0 || pos >= sh.tokens) continue;  // query outside the replayed tokens
      qr.query.push_back(qi);
      qr.keys_seen.push_back(pos + 1);
      qr.max_keys = std::max(qr.max_keys, pos + 1);
    }
    if (qr.query.empty()) q = nullptr;
  }

  std::vector<HeadResult> results(static_cast<std::size_t>(heads));
  auto head_task = [&](std::int64_t h) {
    HeadResult& r = results[static_cast<std::size_t>(h)];
    if (sel.key_errors) r.key = kernels.error_sums(t.key + h * slab, t.key_hat + h * slab, slab);
    if (sel.value_errors) r.value = kernels.error_sums(t.value + h * slab, t.value_hat + h * slab, slab);
    if (q) r.attention = head_attention(t, *q, h, qr, sel, kernels);
  };
  if (pool && heads > 1) {
    pool->parallel_for(heads, head_task);
  } else {
    for (std::int64_t h = 0; h < heads; ++h) head_task(h);
  }

  auto error_sums = [&](const ErrorSumValues& v, std::int64_t n) {
    ErrorSums e;
    e.ref2 = v.ref2;
    e.hat2 = v.hat2;
    e.diff2 = v.diff2;
    e.dot = v.dot;
    e.n = n;
    return e;
  };
  ErrorSumValues layer_key, layer_value;
  AttentionSums layer_attention;
  for (std::int64_t h = 0; h < heads; ++h) {
    const HeadResult& r = results[static_cast<std::size_t>(h)];
    MetricValues& m = out[static_cast<std::size_t>(h)];
    if (sel.key_errors) put_errors(m, "key", error_sums(r.key, slab));
    if (sel.value_errors) put_errors(m, "value", error_sums(r.value, slab));
    r.attention.put(m, sel);
    for (auto [sum, add] : {std::pair{&layer_key, &r.key}, std::pair{&layer_value, &r.value}}) {
      sum->ref2 += add->ref2;
      sum->hat2 += add->hat2;
      sum->diff2 += add->diff2;
      sum->dot += add->dot;
    }
    layer_attention.add(r.attention);
  }
  MetricValues& lm = out[static_cast<std::size_t>(heads)];
  if (sel.key_errors) put_errors(lm, "key", error_sums(layer_key, heads * slab));
  if (sel.value_errors) put_errors(lm, "value", error_sums(layer_value, heads * slab));
  layer_attention.put(lm, sel);
  return out;
}

}  // namespace vidkv
