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
//   and V'. All in double precision.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "vidkv/core/tensor_view.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

// name -> value; metrics that cannot be computed (no queries) are absent.
using MetricValues = std::map<std::string, double>;

struct LayerTensors {
  const float* key = nullptr;        // [heads, tokens, dim]
  const float* value = nullptr;      // [heads, tokens, dim]
  const float* key_hat = nullptr;    // reconstruction
  const float* value_hat = nullptr;  // reconstruction
  BlockShape shape;
  const LayerQueries* queries = nullptr;  // optional
};

// Metrics of KV head `head` (0..heads-1), or of the whole layer when head == -1 (errors pooled over heads,
// attention metrics averaged over every query head).
MetricValues layer_metrics(const LayerTensors& t, std::int64_t head);

// The same metrics for every KV head and the layer at once: element h (0..heads-1) equals layer_metrics(t, h) and
// element heads equals layer_metrics(t, -1), bit for bit (layer_metrics_all.cpp). One pass over the attention
// instead of two, with the logits computed from a transposed copy of each head's keys so the dot products
// vectorise across keys while every sum keeps the reference's order.
std::vector<MetricValues> layer_metrics_all(const LayerTensors& t);

}  // namespace vidkv
