#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "catch.h"
#include "vidkv/experiments/src/metrics.h"

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
  const MetricValues m = layer_metrics(t, 0);
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
  CHECK(layer_metrics(t, -1).at("attn_kl") == m.at("attn_kl"));
}

TEST_CASE("exact reconstruction gives zero error, 999 dB SNR and no attention change", "[experiments][metrics]") {
  const std::vector<float> K = {0.5f, -1, 2, 3, 0, 1, -2, 4}, V = {1, 1, 2, 2, 3, 3, 4, 4};
  LayerQueries q{2, 2, 2, {1, 0, 0, 1, 0.5f, 0.5f, -1, 2}, {0, 3}};
  LayerTensors t{K.data(), V.data(), K.data(), V.data(), BlockShape{1, 4, 2}, &q};
  const MetricValues m = layer_metrics(t, -1);
  CHECK(m.at("key_rel_error") == 0);
  CHECK(m.at("value_snr_db") == 999);
  CHECK(m.at("attn_kl") == 0);
  CHECK(m.at("attn_topk_overlap") == 1);
  CHECK(m.at("attn_out_rel_error") == 0);
  // Without queries, attention metrics are absent rather than zero.
  LayerTensors no_q{K.data(), V.data(), K.data(), V.data(), BlockShape{1, 4, 2}, nullptr};
  CHECK(layer_metrics(no_q, 0).count("attn_kl") == 0);
}

TEST_CASE("layer_metrics_all equals layer_metrics per head and for the layer, bit for bit", "[experiments][metrics]") {
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
  const LayerTensors t{K.data(), V.data(), Kh.data(), Vh.data(), BlockShape{heads, tokens, dim}, &q};
  const auto all = layer_metrics_all(t);
  REQUIRE(all.size() == static_cast<std::size_t>(heads + 1));
  for (std::int64_t h = -1; h < heads; ++h) {
    INFO("head " << h);
    const MetricValues ref = layer_metrics(t, h);
    const MetricValues& got = all[static_cast<std::size_t>(h < 0 ? heads : h)];
    REQUIRE(got.size() == ref.size());
    for (const auto& [name, value] : ref) {
      INFO(name);
      CHECK(std::memcmp(&got.at(name), &value, sizeof(double)) == 0);
    }
  }
}
