#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding.h"

#include "vidkv/core/error.h"

namespace vidkv {

std::vector<double> SemanticEmbeddingProtector::score(const float*, const BlockShape&, const TokenContext& ctx,
                                                      const std::vector<std::int32_t>& candidates) const {
  VIDKV_REQUIRE(ctx.tokens != nullptr, ConfigError,
                "token protector semantic_embedding needs the trace's token metadata (modality) and input embeddings "
                "(/embeddings), but the block has no token context");
  const TraceTokens& tt = *ctx.tokens;
  VIDKV_REQUIRE(tt.hidden > 0 && static_cast<std::int64_t>(tt.embeddings.size()) == tt.size() * tt.hidden, ConfigError,
                "token protector semantic_embedding needs the LLM input embeddings (/embeddings, [T, hidden]), "
                "which were not recorded for this trace (layer ", ctx.layer, ")");
  std::vector<std::int64_t> queries;
  for (std::int64_t j = 0; j < tt.size(); ++j)
    if (tt.modality[static_cast<std::size_t>(j)] == Modality::query_text) queries.push_back(j);
  VIDKV_REQUIRE(!queries.empty(), ConfigError,
                "token protector semantic_embedding needs at least one query-text token (modality 2) in the trace, "
                "found none");
  const auto hidden = static_cast<std::size_t>(tt.hidden);
  std::vector<double> out;
  out.reserve(candidates.size());
  for (std::int32_t local : candidates) {
    const float* ei = tt.embeddings.data() + static_cast<std::size_t>(ctx.trace_index(local)) * hidden;
    double sum = 0;
    for (std::int64_t j : queries) {
      const float* ej = tt.embeddings.data() + static_cast<std::size_t>(j) * hidden;
      double dot = 0;
      for (std::size_t d = 0; d < hidden; ++d) dot += static_cast<double>(ei[d]) * static_cast<double>(ej[d]);
      sum += dot;
    }
    out.push_back(sum / static_cast<double>(queries.size()));
  }
  return out;
}

void register_semantic_embedding(PluginRegistry& registry) {
  registry.add<SemanticEmbeddingProtector>(
      "semantic_embedding", "STP (release): protects candidates whose input embeddings have the largest mean dot product with the query text's");
}

}  // namespace vidkv
