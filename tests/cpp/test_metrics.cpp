#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/thread_pool.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/traces/synthetic_trace.h"
#include "vidkv/traces/trace_reader.h"

using namespace vidkv;

namespace {
bool near(double a, double b, double tol = 1e-9) { return std::fabs(a - b) <= tol * std::max(1.0, std::fabs(b)); }
}  // namespace

TEST_CASE("layer metrics on a hand-worked 1-head, 2-token, 2-channel slab", "[experiments][metrics]") {
  // K = [[1, 0], [0, 1]], K^ = [[1, 0], [0, 0.5]]: diff (0, 0, 0, 0.5), ||diff|| = 0.5, ||K|| = sqrt 2.
  //   rel error = 0.5 / sqrt 2 = 0.353553...; mse = 0.25 / 4 = 0.0625; snr = 10 log10(2 / 0.25) = 9.0309 dB;
  //   cosine = <K, K^> / (||K|| ||K^||) = 1.5 / (sqrt 2 sqrt 1.25) = 0.948683...
  // V = [[1, 2], [3, 4]], V^ = [[1, 2], [3, 3]].
  // One query head, query at token 1 with q = (0, sqrt 2): logits s = q.k / sqrt 2 = (0, 1), s^ = (0, 0.5);
  //   logit rel error = 0.5 / 1 = 0.5; p = softmax(0, 1) = (0.268941, 0.731059), p^ = (0.377541, 0.622459);
  //   KL(p || p^) = 0.0263446; top-k with k = 2 keeps both keys: overlap 1.
  //   o = p V = (2.462117, 3.462117), o^ = p^ V^; ||o - o^|| / ||o|| = 0.2041498 (key-only p^ V: 0.0723026,
  //   value-only p V^: 0.1720816) -- computed in double precision by hand with a calculator script.
  const std::vector<float> K = {1, 0, 0, 1}, Kh = {1, 0, 0, 0.5f}, V = {1, 2, 3, 4}, Vh = {1, 2, 3, 3};
  LayerQueries q;
  q.heads = 1;
  q.count = 1;
  q.dim = 2;
  q.data = {0.0f, static_cast<float>(std::sqrt(2.0))};
  q.token_index = {1};
  LayerTensors t{K.data(), V.data(), Kh.data(), Vh.data(), BlockShape{1, 2, 2}, &q};
  const MetricValues m = layer_metrics_reference(t, 0);
  CHECK(near(m.at("key_rel_error"), 0.5 / std::sqrt(2.0)));
  CHECK(near(m.at("key_mse"), 0.0625));
  CHECK(near(m.at("key_snr_db"), 10 * std::log10(8.0)));
  CHECK(near(m.at("key_cosine"), 1.5 / std::sqrt(2.5)));
  CHECK(near(m.at("attn_logit_rel_error"), 0.5, 1e-6));  // q is rounded to fp32: sqrt 2 carries 1e-8 error
  CHECK(near(m.at("attn_kl"), 0.02634458597688623, 1e-6));
  CHECK(m.at("attn_topk_overlap") == 1.0);
  CHECK(near(m.at("attn_out_rel_error"), 0.20414978721839241, 1e-6));
  CHECK(near(m.at("attn_out_rel_error_key_only"), 0.07230260520108026, 1e-6));
  CHECK(near(m.at("attn_out_rel_error_value_only"), 0.1720815521123989, 1e-6));
  // The layer view (head -1) of a one-head layer is the same.
  CHECK(layer_metrics_reference(t, -1).at("attn_kl") == m.at("attn_kl"));
}

TEST_CASE("exact reconstruction gives zero error, 999 dB SNR and no attention change", "[experiments][metrics]") {
  const std::vector<float> K = {0.5f, -1, 2, 3, 0, 1, -2, 4}, V = {1, 1, 2, 2, 3, 3, 4, 4};
  LayerQueries q{2, 2, 2, {1, 0, 0, 1, 0.5f, 0.5f, -1, 2}, {0, 3}};
  LayerTensors t{K.data(), V.data(), K.data(), V.data(), BlockShape{1, 4, 2}, &q};
  const MetricValues m = layer_metrics_reference(t, -1);
  CHECK(m.at("key_rel_error") == 0);
  CHECK(m.at("value_snr_db") == 999);
  CHECK(m.at("attn_kl") == 0);
  CHECK(m.at("attn_topk_overlap") == 1);
  CHECK(m.at("attn_out_rel_error") == 0);
  // Without queries, attention metrics are absent rather than zero.
  LayerTensors no_q{K.data(), V.data(), K.data(), V.data(), BlockShape{1, 4, 2}, nullptr};
  CHECK(layer_metrics_reference(no_q, 0).count("attn_kl") == 0);
}

// ---------------------------------------------------------------------------------------------------------------
// The optimised path (layer_metrics_all: fp32 GEMMs through Eigen) against the scalar reference, within tolerances
// derived here. Notation: u = 2^-24 (fp32 unit roundoff), gamma_n = n u / (1 - n u); over the query rows i and
// causal keys j of the head (or of the layer): Qm = max ||q_i||, Km = max ||k_j||, Dm = max ||k_j - k'_j||,
// Vm = max |v_jc|, DVm = max |v_jc - v'_jc|, d = head dim, B = 512 (the keys of one fp32 output product).
// A dot product of length n in fp32, in any order, with or without FMA, is within gamma_n sum |x_c y_c| of the
// exact value (Higham, Accuracy and Stability of Numerical Algorithms, 3.1); the reference's double sums are exact
// by comparison (2^-29 of that).
//  - logits: |s - s^| <= ds_err := gamma_d Qm Km / sqrt(d) for s = q.k / sqrt d; the logit differences
//    q.(k - k') come from K - K' rounded to fp32 (u Dm) and a product: |(s - s') - (s - s')^| <= dd_err :=
//    gamma_{d+2} Qm Dm / sqrt(d); the quantized logits s' = s - (s - s') are within ds_err + dd_err.
//  - attn_logit_rel_error r = ||s - s'|| / ||s|| over N logits: |r^ - r| <= sqrt(N) (dd_err + r ds_err) /
//    (||s|| - sqrt(N) ds_err).
//  - attn_kl: dKL/ds_k = p_k ((s_k - s'_k) - E_p[s - s']), dKL/ds'_k = p'_k - p_k, so to first order
//    |KL^ - KL| <= 2 max|s - s'| ds_err + 2 (ds_err + dd_err), max|s - s'| <= Qm Dm / sqrt(d); the clamp at 0 and
//    the mean over queries keep the bound.
//  - outputs o = sum_j p_j v_j: a softmax moves by |dp_j| <= 2 p_j x for logit errors <= x; P, P - P', P' are
//    rounded to fp32 (u relative) and each output product adds gamma_B sum_j |p_j| |v_j| (blocks of B keys,
//    accumulated in double). Per channel: o within eo := (2 ds_err + u + gamma_B) Vm; (P - P') V within
//    ek := (4 ds_err + 2 dd_err + 2u + 2 gamma_B) Vm; P (V - V') within ev := (2 ds_err + 2u + gamma_B) DVm;
//    o - o' = (P - P') V + P' (V - V') within eb := ek + (2 ds_err + 2 dd_err + 2u + gamma_B) DVm. A ratio
//    ||x|| / ||o|| over nq queries x d channels moves by at most sqrt(nq d) (e_x + ratio eo) / (||o|| - sqrt(nq d) eo).
//  - the softmax runs in fp32 (metrics_gemm.cpp): its arguments (S - max S) / sqrt(d) and, for the quantized
//    side, (fl(S - D) - max) / sqrt(d) are rounded a few times (within 7u Qm (Km + Dm) / sqrt(d) in all, |S - max|
//    <= 2 Qm Km and |S'| <= Qm (Km + Dm)); expf (Cephes' polynomial, as Eigen vectorises it) is within about 2 ulp,
//    allowed 8u; p = e fl(1 / z) adds 3u. Each acts on p like a logit error, so the softmax sees logits within
//    xs_err := ds_err + sm_err, sm_err := 7u Qm (Km + Dm) / sqrt(d) + 11u, and xs_err replaces ds_err in the KL and
//    output bounds above (the logit sums of attn_logit_rel_error stay in double from the GEMM's fp32 values).
//  - The attention bounds are first order in the errors; the test allows twice them (the second-order terms are
//    smaller than the first-order ones by a factor ds_err, below 1e-2 here).
//  - attn_topk_overlap: the optimised path finds the reference's top-k sets exactly (layer_metrics_all.cpp), so
//    equal unless two probabilities are one rounding apart: equality is required.
//  - reconstruction errors: the same double terms summed in another order (8 lanes, then heads): each sum of n
//    terms is within 2 gamma^(double)_n of the reference's relative to the sum of |terms|, so rel_error, mse and
//    cosine within 4 n 2^-53 (relative), snr_db within 10 / ln(10) 4 n 2^-53 dB.
namespace {

struct AttentionScales {
  double qm = 0, km = 0, dm = 0, vm = 0, dvm = 0, logits = 0, logit_norm = 0, queries = 0, out_norm = 0;
};

// The magnitudes the tolerances need, for KV head `head` (or every head for -1), in double.
AttentionScales attention_scales(const LayerTensors& t, std::int64_t head) {
  const BlockShape& sh = t.shape;
  const LayerQueries& q = *t.queries;
  const std::int64_t d = sh.channels, slab = sh.slab_elements(), group = q.heads / sh.heads;
  AttentionScales a;
  double s2 = 0, o2 = 0;
  for (std::int64_t qh = 0; qh < q.heads; ++qh) {
    const std::int64_t kv = qh / group;
    if (head >= 0 && kv != head) continue;
    const float* K = t.key + kv * slab;
    const float* Kh = t.key_hat + kv * slab;
    const float* V = t.value + kv * slab;
    const float* Vh = t.value_hat + kv * slab;
    for (std::int64_t qi = 0; qi < q.count; ++qi) {
      const std::int64_t pos = q.token_index[static_cast<std::size_t>(qi)];
      if (pos < 0 || pos >= sh.tokens) continue;
      const float* qv = q.data.data() + (qh * q.count + qi) * d;
      double qn = 0;
      for (std::int64_t c = 0; c < d; ++c) qn += static_cast<double>(qv[c]) * qv[c];
      a.qm = std::max(a.qm, std::sqrt(qn));
      std::vector<double> s(static_cast<std::size_t>(pos + 1));
      double mx = -INFINITY;
      for (std::int64_t j = 0; j <= pos; ++j) {
        double dot = 0, kn = 0, dn = 0;
        for (std::int64_t c = 0; c < d; ++c) {
          const double k = K[j * d + c], kh = Kh[j * d + c];
          dot += qv[c] * k;
          kn += k * k;
          dn += (k - kh) * (k - kh);
          a.vm = std::max(a.vm, std::fabs(static_cast<double>(V[j * d + c])));
          a.dvm = std::max(a.dvm, std::fabs(static_cast<double>(V[j * d + c]) - Vh[j * d + c]));
        }
        a.km = std::max(a.km, std::sqrt(kn));
        a.dm = std::max(a.dm, std::sqrt(dn));
        s[static_cast<std::size_t>(j)] = dot / std::sqrt(static_cast<double>(d));
        s2 += s[static_cast<std::size_t>(j)] * s[static_cast<std::size_t>(j)];
        mx = std::max(mx, s[static_cast<std::size_t>(j)]);
      }
      double z = 0;
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (std::int64_t c = 0; c < d; ++c) {
        double o = 0;
        for (std::int64_t j = 0; j <= pos; ++j) o += s[static_cast<std::size_t>(j)] / z * V[j * d + c];
        o2 += o * o;
      }
      a.logits += static_cast<double>(pos + 1);
      a.queries += 1;
    }
  }
  a.logit_norm = std::sqrt(s2);
  a.out_norm = std::sqrt(o2);
  return a;
}

double gamma(double n) { return n * 0x1p-24 / (1 - n * 0x1p-24); }

// Checks every metric of layer_metrics_all(t) against the reference for every head and the layer, and that a pool
// of workers gives the same doubles.
void check_against_reference(const LayerTensors& t, const std::string& label) {
  const BlockShape& sh = t.shape;
  const auto fast = layer_metrics_all(t);
  ThreadPool pool(1);
  const auto pooled = layer_metrics_all(t, MetricSelection::all(), &pool);
  REQUIRE(fast.size() == static_cast<std::size_t>(sh.heads + 1));
  const double d = static_cast<double>(sh.channels), u = 0x1p-24;
  for (std::int64_t h = -1; h < sh.heads; ++h) {
    INFO(label << ", head " << h);
    const MetricValues ref = layer_metrics_reference(t, h);
    const std::size_t at = static_cast<std::size_t>(h < 0 ? sh.heads : h);
    const MetricValues& got = fast[at];
    REQUIRE(got.size() == ref.size());
    const double n_elems = static_cast<double>((h < 0 ? sh.heads : 1) * sh.slab_elements());
    const double sum_tol = 4 * n_elems * 0x1p-53;
    AttentionScales a;
    if (ref.count("attn_kl")) a = attention_scales(t, h);
    const double ds_err = gamma(d) * a.qm * a.km / std::sqrt(d), dd_err = gamma(d + 2) * a.qm * a.dm / std::sqrt(d);
    // The softmax in fp32 (see the derivation above): logit-equivalent error sm_err of its inputs and outputs;
    // xs_err stands for ds_err wherever a softmax reads the logits.
    const double sm_err = 7 * u * a.qm * (a.km + a.dm) / std::sqrt(d) + 11 * u, xs_err = ds_err + sm_err;
    const double gb = gamma(512), cells = std::sqrt(a.queries * d);
    const double eo = (2 * xs_err + u + gb) * a.vm, ek = (4 * xs_err + 2 * dd_err + 2 * u + 2 * gb) * a.vm;
    const double ev = (2 * xs_err + 2 * u + gb) * a.dvm, eb = ek + (2 * xs_err + 2 * dd_err + 2 * u + gb) * a.dvm;
    for (const auto& [name, value] : ref) {
      INFO(name << ": reference " << value << ", optimised " << got.at(name));
      CHECK(std::memcmp(&pooled[at].at(name), &got.at(name), sizeof(double)) == 0);
      const double x = got.at(name);
      double tol = 0;
      if (name.rfind("key_", 0) == 0 || name.rfind("value_", 0) == 0) {
        // snr_db and cosine: absolute (|<x, y>| <= ||x|| ||y||); rel_error and mse: relative.
        tol = name.find("snr_db") != std::string::npos ? 10 / std::log(10.0) * sum_tol
              : name.find("cosine") != std::string::npos ? sum_tol
                                                         : sum_tol * std::fabs(value);
      } else if (name == "attn_logit_rel_error") {
        tol = 2 * std::sqrt(a.logits) * (dd_err + value * ds_err) / (a.logit_norm - std::sqrt(a.logits) * ds_err);
      } else if (name == "attn_kl") {
        tol = 2 * (2 * a.qm * a.dm / std::sqrt(d) * xs_err + 2 * (xs_err + dd_err)) + 1e-12;
      } else if (name == "attn_topk_overlap") {
        tol = 0;
      } else {
        const double e = name == "attn_out_rel_error" ? eb : name == "attn_out_rel_error_key_only" ? ek : ev;
        tol = 2 * cells * (e + value * eo) / (a.out_norm - cells * eo);
      }
      INFO("tolerance " << tol);
      CHECK(std::fabs(x - value) <= tol);
    }
  }
}

}  // namespace

TEST_CASE("optimised metrics equal the reference within the derived tolerance: GQA, tails, queries outside",
          "[experiments][metrics]") {
  // 3 KV heads, 6 query heads (GQA 2), 70 tokens, 9 channels; queries at tokens 0, 40 and 69 and one outside.
  const std::int64_t heads = 3, tokens = 70, dim = 9;
  const std::size_t n = static_cast<std::size_t>(heads * tokens * dim);
  std::vector<float> K(n), Kh(n), V(n), Vh(n);
  std::uint64_t state = 12345;
  auto next = [&] {  // xorshift64*: deterministic values in [-2, 2)
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return static_cast<float>(static_cast<double>((state * 2685821657736338717ull) >> 11) / 9007199254740992.0 * 4.0 - 2.0);
  };
  for (std::size_t i = 0; i < n; ++i) {
    K[i] = next();
    Kh[i] = K[i] + 0.1f * next();
    V[i] = next();
    Vh[i] = V[i] + 0.2f * next();
  }
  LayerQueries q;
  q.heads = 6;
  q.count = 4;
  q.dim = dim;
  q.token_index = {0, 40, 69, 90};
  for (std::int64_t i = 0; i < q.heads * q.count * dim; ++i) q.data.push_back(next());
  check_against_reference(LayerTensors{K.data(), V.data(), Kh.data(), Vh.data(), BlockShape{heads, tokens, dim}, &q},
                          "random 3x70x9");
  // Exact reconstruction: zero errors and no attention change, as in the reference.
  const auto exact = layer_metrics_all(LayerTensors{K.data(), V.data(), K.data(), V.data(), BlockShape{heads, tokens, dim}, &q});
  CHECK(exact.back().at("attn_kl") == 0);
  CHECK(exact.back().at("attn_out_rel_error") == 0);
  CHECK(exact.back().at("attn_topk_overlap") == 1);
  CHECK(exact.back().at("key_snr_db") == 999);
}

TEST_CASE("optimised metrics equal the reference on synthetic traces with tails (T % 32 != 0, D = 80) through presets",
          "[experiments][metrics]") {
  const PluginRegistry& registry = test::builtin_registry();
  for (const char* shape : {"2x2x333x80", "1x2x1100x80"}) {
    SyntheticTraceSpec spec;
    parse_synthetic_shape(shape, spec);
    spec.frames = 2;
    const SyntheticTrace trace(spec.resolved());
    const TraceTokens tokens = trace.tokens();
    for (const char* preset : {"kivi-2", "vidkv-k1.5-v1.58"}) {
      const ConfigNode doc = load_preset(preset, ConfigNode::scalar(preset));
      const KvCodec codec(registry.make_quantizer(doc.at("codec").at("key")), registry.make_quantizer(doc.at("codec").at("value")));
      const LifecycleParams lifecycle = parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle");
      for (int layer = 0; layer < spec.layers; ++layer) {
        const LayerData data = trace.layer(layer);
        REQUIRE(data.queries);
        const BlockShape bs{data.heads, data.tokens, data.dim};
        TokenContext ctx;
        ctx.layer = layer;
        ctx.tokens = &tokens;
        ctx.queries = &*data.queries;
        const ReplayedLayer out = replay_layer(codec, lifecycle, data.key.data(), data.value.data(), bs, ctx, spec.dtype);
        check_against_reference(LayerTensors{data.key.data(), data.value.data(), out.key.data(), out.value.data(), bs, &*data.queries},
                                std::string(shape) + " " + preset + " layer " + std::to_string(layer));
      }
    }
  }
}

TEST_CASE("optimised metrics equal the reference on the bundled trace (every layer, kivi-2)", "[experiments][metrics]") {
  const PluginRegistry& registry = test::builtin_registry();
  const TraceReader reader(std::string(VIDKV_SOURCE_DIR) + "/traces/data/smollm2-135m-longdoc.h5");
  const TraceTokens tokens = reader.tokens(false);
  const ConfigNode doc = load_preset("kivi-2", ConfigNode::scalar("kivi-2"));
  const KvCodec codec(registry.make_quantizer(doc.at("codec").at("key")), registry.make_quantizer(doc.at("codec").at("value")));
  const LifecycleParams lifecycle = parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle");
  for (int layer = 0; layer < reader.info().num_layers; ++layer) {
    const LayerData data = reader.read_layer(layer);
    REQUIRE(data.queries);
    const BlockShape bs{data.heads, data.tokens, data.dim};
    TokenContext ctx;
    ctx.layer = layer;
    ctx.tokens = &tokens;
    const ReplayedLayer out = replay_layer(codec, lifecycle, data.key.data(), data.value.data(), bs, ctx, reader.info().dtype);
    check_against_reference(LayerTensors{data.key.data(), data.value.data(), out.key.data(), out.value.data(), bs, &*data.queries},
                            "bundled trace layer " + std::to_string(layer));
  }
}

TEST_CASE("only the selected metric groups are computed, without attention metrics the queries are not read",
          "[experiments][metrics]") {
  const std::vector<float> K = {1, 0, 0, 1}, Kh = {1, 0, 0, 0.5f}, V = {1, 2, 3, 4}, Vh = {1, 2, 3, 3};
  // Queries that do not fit the keys (dim 3 against 2): reading them would throw ShapeError.
  LayerQueries bad{1, 1, 3, {1, 2, 3}, {1}};
  const LayerTensors t{K.data(), V.data(), Kh.data(), Vh.data(), BlockShape{1, 2, 2}, &bad};
  const MetricSelection reconstruction = MetricSelection::for_metrics({"key_rel_error", "value_cosine", "effective_bits"});
  CHECK(!reconstruction.attention());
  const auto m = layer_metrics_all(t, reconstruction);
  CHECK(m.back().count("key_rel_error") == 1);
  CHECK(m.back().count("value_cosine") == 1);
  CHECK(m.back().count("attn_kl") == 0);
  CHECK_THROWS_AS(layer_metrics_all(t, MetricSelection::for_metrics({"attn_kl"})), ShapeError);
  const MetricSelection keys_only = MetricSelection::for_metrics({"key_mse"});
  CHECK(layer_metrics_all(t, keys_only).back().count("value_mse") == 0);
  const MetricSelection topk = MetricSelection::for_metrics({"attn_topk_overlap"});
  CHECK((topk.attention_topk && !topk.attention_logits && !topk.attention_outputs && !topk.key_errors));
}
