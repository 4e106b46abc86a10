#include "vidkv/plugins/token_protectors/semantic_attention/semantic_attention.h"

#include <algorithm>
#include <cmath>

#include "vidkv/core/error.h"

namespace vidkv {

std::vector<double> SemanticAttentionProtector::score(const float*, const BlockShape&, const TokenContext& ctx,
                                                      const std::vector<std::int32_t>& candidates) const {
  VIDKV_REQUIRE(ctx.tokens != nullptr, ConfigError,
                "token protector semantic_attention needs the trace's token metadata (modality), but the block has no "
                "token context");
  VIDKV_REQUIRE(ctx.queries != nullptr && ctx.queries->count > 0, ConfigError,
                "token protector semantic_attention needs recorded query states (/layers/NNN/query) for layer ",
                ctx.layer, ", none were given");
  VIDKV_REQUIRE(ctx.keys.data != nullptr && ctx.keys.tokens > 0, ConfigError,
                "token protector semantic_attention needs the layer's full-precision keys (ctx.keys) for layer ",
                ctx.layer, ", none were given");
  const LayerQueries& qs = *ctx.queries;
  const LayerKeys& ks = ctx.keys;
  VIDKV_REQUIRE(qs.dim == ks.dim, ConfigError, "token protector semantic_attention: query head_dim ", qs.dim,
                " differs from key head_dim ", ks.dim, " (layer ", ctx.layer, ")");
  VIDKV_REQUIRE(ks.heads > 0 && qs.heads % ks.heads == 0, ConfigError, "token protector semantic_attention: ",
                qs.heads, " query heads are not a multiple of ", ks.heads, " KV heads (layer ", ctx.layer, ")");
  VIDKV_REQUIRE(static_cast<std::int64_t>(qs.data.size()) == qs.heads * qs.count * qs.dim &&
                    static_cast<std::int64_t>(qs.token_index.size()) == qs.count,
                ConfigError, "token protector semantic_attention: recorded queries of layer ", ctx.layer,
                " do not hold [heads, count, dim] values and one token index per query");
  const std::int64_t group = qs.heads / ks.heads;
  const auto dim = static_cast<std::size_t>(qs.dim);
  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(qs.dim));

  // Attention of every usable query (all heads) to every key, accumulated per trace token.
  std::vector<double> attn(static_cast<std::size_t>(ks.tokens), 0.0);
  std::int64_t rows = 0;
  std::vector<double> logits;
  for (std::int64_t qi = 0; qi < qs.count; ++qi) {
    const std::int64_t q = qs.token_index[static_cast<std::size_t>(qi)];
    if (q < 0 || q >= ctx.tokens->size() || q >= ks.tokens) continue;
    if (ctx.tokens->modality[static_cast<std::size_t>(q)] != Modality::query_text) continue;
    for (std::int64_t h = 0; h < qs.heads; ++h) {
      const float* qv = qs.data.data() + static_cast<std::size_t>((h * qs.count + qi) * qs.dim);
      const std::int64_t g = h / group;
      logits.assign(static_cast<std::size_t>(q + 1), 0.0);
      double mx = -INFINITY;
      for (std::int64_t j = 0; j <= q; ++j) {
        const float* kv = ks.data + static_cast<std::size_t>((g * ks.tokens + j) * ks.dim);
        double dot = 0;
        for (std::size_t d = 0; d < dim; ++d) dot += static_cast<double>(qv[d]) * static_cast<double>(kv[d]);
        logits[static_cast<std::size_t>(j)] = dot * inv_sqrt_d;
        mx = std::max(mx, logits[static_cast<std::size_t>(j)]);
      }
      double z = 0;
      for (auto& l : logits) z += (l = std::exp(l - mx));
      for (std::int64_t j = 0; j <= q; ++j) attn[static_cast<std::size_t>(j)] += logits[static_cast<std::size_t>(j)] / z;
      ++rows;
    }
  }
  VIDKV_REQUIRE(rows > 0, ConfigError,
                "token protector semantic_attention found no recorded query state of a query-text token (modality 2) "
                "among the ", ks.tokens, " cached tokens of layer ", ctx.layer);
  std::vector<double> out;
  out.reserve(candidates.size());
  for (std::int32_t local : candidates) {
    const std::int64_t t = ctx.trace_index(local);
    out.push_back(t < ks.tokens ? attn[static_cast<std::size_t>(t)] / static_cast<double>(rows) : 0.0);
  }
  return out;
}

void register_semantic_attention(PluginRegistry& registry) {
  registry.add<SemanticAttentionProtector>(
      "semantic_attention", "STP (paper wording): protects candidates that receive the most softmax attention from query-text tokens");
}

}  // namespace vidkv
