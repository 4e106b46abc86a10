// Decode-step metrics: the attention the recorded decode-step queries get from the cache AS IT STOOD when each was
// computed, which is what the live model read (algorithms.md section 8.2; docs/metric-validation.md for how well
// each one predicts the live model's next-token KL).
//
// Schedule (the same as `vidkv live`, experiments/python/vidkv/live.py): the first `prefill` tokens are the prompt,
// appended to a LayerCache in one call (the prefill); every later token is one decode step. A recorded query at
// trace token t >= prefill is scored right after token t was appended: its keys are tokens [0, t] of the cache
// materialized then (quantized blocks followed by the full-precision residual, exactly what the live hook returns
// to attention at that step). Queries at t < prefill (prompt tokens) read the exact K/V live (prefill attention
// never sees quantization, algorithms.md section 5), so they are not decode-step queries and are left out.
//
// Definitions, for each decode-step query q at token t of query head h (KV head h / (Hq / Hkv)), with d = dim,
// p = softmax(q K[0..t]^T / sqrt(d)) from the exact keys, o = p V, and p', o' from the snapshot's K', V':
//   decode_attn_out_rel_error  = sqrt(sum ||o - o'||^2 / sum ||o||^2)                 (pooled over queries, heads)
//   decode_attn_out_rel_value  = sqrt(sum ||o - o'||^2 / sum sum_j p_j ||v_j||^2)    error relative to the
//                                 attention-weighted energy of the values read (does not blow up when o cancels)
//   decode_attn_out_mse        = sum ||o - o'||^2 / (queries * query heads * d)      absolute, in value units^2
//   decode_attn_kl             = mean over queries and heads of KL(p || p') in nats
// All sums in double, in index order (a scalar reference; no optimised twin). Absent when the layer has no
// decode-step query (a trace without generated tokens, or without recorded queries past the prompt).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/rotary.h"
#include "vidkv/core/token_context.h"
#include "vidkv/experiments/src/metrics.h"

namespace vidkv {

// Per trace (not per layer): decode_attn_out_depth_error = sum_l w_l e_l / sum_l w_l over the L layers, e_l the
// layer's decode_attn_out_rel_error and w_l = (L - l)^2 (l = 0 the first layer): an error in layer l reaches the
// next-token distribution through the L - l layers above it, so early layers weigh more. The weighting was chosen
// on the bundled SmolLM2 trace among six ways to pool layers (docs/metric-validation.md gives the figures of all of
// them and the held-out check); it is the headline metric of summary.md and the report.
double depth_weighted_mean(const std::vector<double>& per_layer);
inline constexpr const char* kHeadlineMetric = "decode_attn_out_depth_error";

// The metric names above (the per-layer ones, then the per-trace one), in table order.
const std::vector<std::string>& decode_step_metric_names();

// Whether `names` asks for any decode-step metric.
bool wants_decode_step_metrics(const std::vector<std::string>& names);

// Tokens of the prompt: those before the first generated token (modality 3); all of them when none is generated.
std::int64_t trace_prompt_tokens(const TraceTokens& tokens);

// Optional rotary embedding for `rope: pre` traces: keys (exact and snapshot) and queries are rotated to their
// positions before the attention (core/rotary.h); nullptr for post-RoPE traces.
struct DecodeRotary {
  const RotaryParams* params = nullptr;
  const std::int32_t* positions = nullptr;  // [T] /tokens/position
};

// Replays one layer through `codec` and `params` with prefill = params.prefill_tokens (-1: all tokens, so no decode
// step) and returns the decode-step metrics of the whole layer (every KV head). key / value: [heads, T, dim] fp32
// host memory; queries: the recorded queries of the layer (token_index ascending or not). Throws ShapeError when
// the queries do not fit the keys (dim, GQA), and what LayerCache throws (ValueError on non-finite input).
MetricValues decode_step_metrics(const KvCodec& codec, const LifecycleParams& params, const float* key,
                                 const float* value, const BlockShape& shape, const TokenContext& ctx,
                                 DType data_dtype, const LayerQueries& queries, const DecodeRotary& rotary = {});

}  // namespace vidkv
