// Decode-step metrics (experiments/src/decode_step_metrics.h): each decode-step query is scored against the cache as
// it stood at its step. Checked against the scalar reference of the attention metrics (metrics.h), run by hand on
// the snapshot: a LayerCache fed the same prefill and decode steps, materialized at the query's token, with the
// exact K/V cut to tokens [0, t]. The two compute attention independently (different code), in double.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/decode_step_metrics.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/traces/trace_reader.h"

using namespace vidkv;

namespace {

struct Preset {
  KvCodec codec;
  LifecycleParams lifecycle;
};

Preset preset(const std::string& name) {
  const PluginRegistry& registry = test::builtin_registry();
  const ConfigNode doc = load_preset(name, ConfigNode::scalar(name));
  return Preset{KvCodec(registry.make_quantizer(doc.at("codec").at("key")), registry.make_quantizer(doc.at("codec").at("value"))),
                parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle")};
}

// [heads, n, dim] of the first n tokens of x [heads, T, dim].
std::vector<float> first_tokens(const std::vector<float>& x, const BlockShape& s, std::int64_t n) {
  std::vector<float> out;
  for (std::int64_t h = 0; h < s.heads; ++h)
    out.insert(out.end(), x.begin() + h * s.tokens * s.channels, x.begin() + (h * s.tokens + n) * s.channels);
  return out;
}

// The cache of `p` after prefill `prefill` and decode steps up to token t (inclusive), materialized.
void snapshot(const Preset& p, const LayerData& d, const BlockShape& s, const TokenContext& ctx, DType dtype,
              std::int64_t prefill, std::int64_t t, std::vector<float>& kh, std::vector<float>& vh) {
  LayerCache cache(p.codec, p.lifecycle, s.heads, s.channels, ctx, dtype);
  const auto k = first_tokens(d.key, s, t + 1), v = first_tokens(d.value, s, t + 1);
  const TensorView kv{const_cast<float*>(k.data()), DType::f32, Device::cpu, {s.heads, t + 1, s.channels}};
  const TensorView vv{const_cast<float*>(v.data()), DType::f32, Device::cpu, {s.heads, t + 1, s.channels}};
  cache.append(kv, vv, 0, prefill);
  for (std::int64_t i = prefill; i <= t; ++i) cache.append(kv, vv, i, i + 1);
  cache.materialize(kh, vh);
}

// The recorded queries of `q` at token t only.
LayerQueries queries_at(const LayerQueries& q, std::int32_t t) {
  LayerQueries out;
  out.heads = q.heads;
  out.dim = q.dim;
  std::int64_t i = 0;
  for (; i < q.count; ++i)
    if (q.token_index[static_cast<std::size_t>(i)] == t) break;
  REQUIRE(i < q.count);
  out.count = 1;
  out.token_index = {t};
  for (std::int64_t h = 0; h < q.heads; ++h)
    out.data.insert(out.data.end(), q.data.begin() + (h * q.count + i) * q.dim, q.data.begin() + (h * q.count + i + 1) * q.dim);
  return out;
}

}  // namespace

TEST_CASE("decode-step metrics equal the reference attention metrics on the cache as it stood at the query's step",
          "[experiments][metrics][decode]") {
  const TraceReader reader(std::string(VIDKV_SOURCE_DIR) + "/traces/data/smollm2-135m-longdoc.h5");
  const TraceTokens tokens = reader.tokens(false);
  const std::int64_t prompt = trace_prompt_tokens(tokens);
  CHECK(prompt == 464);  // traces/README-recorded.md: 464 prompt tokens, then 35 generated (modality 3)
  const LayerData d = reader.read_layer(3);
  REQUIRE(d.queries);
  const BlockShape s{d.heads, d.tokens, d.dim};
  TokenContext ctx;
  ctx.layer = 3;
  ctx.tokens = &tokens;
  ctx.queries = &*d.queries;
  // Only the decode-step query at token 470 (recorded generated tokens: 464..471): cut the queries to it.
  const std::int32_t t = 470;
  const LayerQueries one = queries_at(*d.queries, t);
  for (const std::string name : {"vidkv-2-release", "kivi-2", "vidkv-k1.5-v1.58"}) {
    Preset p = preset(name);
    // A small residual, so that decode steps quantize blocks (paper, kivi) or re-quantize everything (release)
    // between the prompt and token 470.
    p.lifecycle.residual = 4;
    p.lifecycle.group = 4;
    p.lifecycle.prefill_tokens = static_cast<int>(prompt);
    const MetricValues got = decode_step_metrics(p.codec, p.lifecycle, d.key.data(), d.value.data(), s, ctx,
                                                 reader.info().dtype, one);
    std::vector<float> kh, vh;
    snapshot(p, d, s, ctx, reader.info().dtype, prompt, t, kh, vh);
    const BlockShape cut{s.heads, t + 1, s.channels};
    const auto k = first_tokens(d.key, s, t + 1), v = first_tokens(d.value, s, t + 1);
    const MetricValues ref = layer_metrics_reference(LayerTensors{k.data(), v.data(), kh.data(), vh.data(), cut, &one}, -1);
    INFO(name);
    REQUIRE(got.count("decode_attn_out_rel_error"));
    CHECK(got.at("decode_attn_out_rel_error") > 0.0);
    CHECK(std::fabs(got.at("decode_attn_out_rel_error") - ref.at("attn_out_rel_error")) <= 1e-9 * ref.at("attn_out_rel_error"));
    CHECK(std::fabs(got.at("decode_attn_kl") - ref.at("attn_kl")) <= 1e-9 * std::max(1e-12, ref.at("attn_kl")));

    // The final cache (every decode step done) is not what the query saw: the metric on it differs.
    const ReplayedLayer fin = replay_layer(p.codec, p.lifecycle, d.key.data(), d.value.data(), s, ctx, reader.info().dtype);
    const auto kf = first_tokens(fin.key, s, t + 1), vf = first_tokens(fin.value, s, t + 1);
    const MetricValues final_ref = layer_metrics_reference(LayerTensors{k.data(), v.data(), kf.data(), vf.data(), cut, &one}, -1);
    CHECK(final_ref.at("attn_out_rel_error") != got.at("decode_attn_out_rel_error"));
  }
}

TEST_CASE("decode-step metrics: zero for the exact codec, absent without decode-step queries", "[experiments][metrics][decode]") {
  const TraceReader reader(std::string(VIDKV_SOURCE_DIR) + "/traces/data/smollm2-135m-longdoc.h5");
  const TraceTokens tokens = reader.tokens(false);
  const LayerData d = reader.read_layer(0);
  REQUIRE(d.queries);
  const BlockShape s{d.heads, d.tokens, d.dim};
  TokenContext ctx;
  ctx.tokens = &tokens;
  Preset fp16 = preset("fp16");
  fp16.lifecycle.prefill_tokens = static_cast<int>(trace_prompt_tokens(tokens));
  const MetricValues exact = decode_step_metrics(fp16.codec, fp16.lifecycle, d.key.data(), d.value.data(), s, ctx,
                                                 reader.info().dtype, *d.queries);
  for (const auto& name : decode_step_metric_names())
    if (name != kHeadlineMetric) CHECK(exact.at(name) == 0.0);  // the headline is per trace (the runner pools layers)
  // prefill_tokens -1: the whole trace is the prefill, so no query is a decode step.
  Preset kivi = preset("kivi-2");
  kivi.lifecycle.prefill_tokens = -1;
  CHECK(decode_step_metrics(kivi.codec, kivi.lifecycle, d.key.data(), d.value.data(), s, ctx, reader.info().dtype,
                            *d.queries)
            .empty());
}

TEST_CASE("depth-weighted pooling of layers: weights (L - l)^2", "[experiments][metrics][decode]") {
  // L = 2: weights 4 and 1, so (4 * 1 + 1 * 2) / 5 = 1.2; L = 3: weights 9, 4, 1: (9 * 3 + 0 + 0) / 14.
  CHECK(depth_weighted_mean({1.0, 2.0}) == Approx(1.2).epsilon(1e-15));
  CHECK(depth_weighted_mean({3.0, 0.0, 0.0}) == Approx(27.0 / 14.0).epsilon(1e-15));
  CHECK(std::string(kHeadlineMetric) == decode_step_metric_names().back());
}
