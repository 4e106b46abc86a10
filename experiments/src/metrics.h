// Trace-level metrics of one layer: reconstruction error of K and V and, for traces with recorded query states,
// the attention they induce (algorithms.md section 8).
//
// Definitions (x = reference, y = reconstruction, sums over the slab or block):
//   rel_error = ||x - y||_F / ||x||_F;  mse = mean (x - y)^2;  snr_db = 10 log10(sum x^2 / sum (x - y)^2)
//   (+inf when exact, reported as 999);  cosine = <x, y> / (||x|| ||y||).
// Attention, for each recorded query q at trace token t (query head h reads KV head h / (Hq / Hkv)): logits
//   s_j = <q, k_j> / sqrt(d) over the causal keys j <= t; p = softmax(s), o = sum_j p_j v_j. With quantized keys
//   and values: s', p', o'. attn_logit_rel_error = ||s - s'|| / ||s|| (pooled over queries); attn_kl = mean over
//   queries of KL(p || p'); attn_topk_overlap = mean |top-k(p) ∩ top-k(p')| / k with k = min(32, t + 1);
//   attn_out_rel_error = ||o - o'|| / ||o|| with K' and V' together, _key_only with K' and V, _value_only with K
//   and V'. The reference computes all of them in double precision.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vidkv/core/tensor_view.h"
#include "vidkv/core/thread_pool.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

// name -> value; metrics that cannot be computed (no queries) or were not asked for are absent.
using MetricValues = std::map<std::string, double>;

struct LayerTensors {
  const float* key = nullptr;        // [heads, tokens, dim]
  const float* value = nullptr;      // [heads, tokens, dim]
  const float* key_hat = nullptr;    // reconstruction
  const float* value_hat = nullptr;  // reconstruction
  BlockShape shape;
  const LayerQueries* queries = nullptr;  // optional
};

// Which groups of metrics to compute. A group is computed only when one of its metrics is asked for; the
// attention groups read the recorded queries, the others never touch them.
struct MetricSelection {
  bool key_errors = true;         // key_rel_error, key_mse, key_snr_db, key_cosine
  bool value_errors = true;       // value_rel_error, value_mse, value_snr_db, value_cosine
  bool attention_logits = true;   // attn_logit_rel_error, attn_kl
  bool attention_topk = true;     // attn_topk_overlap
  bool attention_outputs = true;  // attn_out_rel_error, _key_only, _value_only
  bool attention() const { return attention_logits || attention_topk || attention_outputs; }
  // Every group (what layer_metrics_reference computes).
  static MetricSelection all() { return {}; }
  // The groups needed for `names` (metric names as in all_metric_names(); names of no group, such as
  // effective_bits or seconds, select nothing here).
  static MetricSelection for_metrics(const std::vector<std::string>& names);
};

// The scalar reference (metrics.cpp): metrics of KV head `head` (0..heads-1), or of the whole layer when
// head == -1 (errors pooled over heads, attention metrics pooled over every query head). Every group; every dot
// product and sum in double, in index order. The oracle the optimised path is tested against.
MetricValues layer_metrics_reference(const LayerTensors& t, std::int64_t head);

// The optimised path (layer_metrics_all.cpp): the selected metrics of every KV head and of the layer at once.
// Element h (0..heads-1) holds head h's metrics, element `heads` the layer's, with the meaning of
// layer_metrics_reference(t, h) and (t, -1). Attention as matrix products through Eigen: logits Q K^T and
// Q (K - K')^T in fp32 per KV head (all its GQA query heads and queries at once), softmax in fp32 with its sums and
// KL in double, outputs [P - P'; P] V and [P; P'] (V - V') in fp32 blocks of 512 keys accumulated in double. Equal to the
// reference within the tolerance derived in tests/cpp/test_metrics.cpp (attn_topk_overlap: equal except where
// two probabilities are one rounding apart). `pool` (optional): KV heads in parallel; the result does not depend
// on it. Throws ShapeError when the queries do not fit the keys (dim, GQA).
std::vector<MetricValues> layer_metrics_all(const LayerTensors& t, const MetricSelection& selection = MetricSelection::all(),
                                            ThreadPool* pool = nullptr);

}  // namespace vidkv
