#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding.h"

#include <algorithm>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding_cuda.h"

namespace vidkv {

namespace {

// The trace's token metadata with its embeddings checked, and the trace indices of its query-text tokens.
const TraceTokens& checked_tokens(const TokenContext& ctx, std::vector<std::int64_t>* queries) {
  VIDKV_REQUIRE(ctx.tokens != nullptr, ConfigError,
                "token protector semantic_embedding needs the trace's token metadata (modality) and input embeddings "
                "(/embeddings), but the block has no token context");
  const TraceTokens& tt = *ctx.tokens;
  VIDKV_REQUIRE(tt.hidden > 0 && static_cast<std::int64_t>(tt.embeddings.size()) == tt.size() * tt.hidden, ConfigError,
                "token protector semantic_embedding needs the LLM input embeddings ([T, hidden]: a trace's "
                "/embeddings, the Python API's embeddings=), which this block's token context does not hold (layer ",
                ctx.layer, ")");
  for (std::int64_t j = 0; j < tt.size(); ++j)
    if (tt.modality[static_cast<std::size_t>(j)] == Modality::query_text) queries->push_back(j);
  VIDKV_REQUIRE(!queries->empty(), ConfigError,
                "token protector semantic_embedding needs at least one query-text token (modality 2) in the trace, "
                "found none");
  return tt;
}

}  // namespace

std::vector<double> SemanticEmbeddingProtector::score(const float*, const BlockShape&, const TokenContext& ctx,
                                                      const std::vector<std::int32_t>& candidates) const {
  std::vector<std::int64_t> queries;
  const TraceTokens& tt = checked_tokens(ctx, &queries);
  const auto hidden = static_cast<std::size_t>(tt.hidden);
  std::vector<double> out;
  out.reserve(candidates.size());
  // Each dot product is one sum over d in order and the dots are added in query order; four query rows are summed
  // side by side (independent chains: the same values, without waiting on one chain's latency).
  constexpr std::size_t kChains = 4;
  for (std::int32_t local : candidates) {
    const float* ei = tt.embeddings.data() + static_cast<std::size_t>(ctx.trace_index(local)) * hidden;
    double sum = 0;
    std::size_t qi = 0;
    for (; qi + kChains <= queries.size(); qi += kChains) {
      const float* ej[kChains];
      for (std::size_t l = 0; l < kChains; ++l) ej[l] = tt.embeddings.data() + static_cast<std::size_t>(queries[qi + l]) * hidden;
      double dot[kChains] = {};
      for (std::size_t d = 0; d < hidden; ++d)
        for (std::size_t l = 0; l < kChains; ++l) dot[l] += static_cast<double>(ei[d]) * static_cast<double>(ej[l][d]);
      for (std::size_t l = 0; l < kChains; ++l) sum += dot[l];
    }
    for (; qi < queries.size(); ++qi) {
      const float* ej = tt.embeddings.data() + static_cast<std::size_t>(queries[qi]) * hidden;
      double dot = 0;
      for (std::size_t d = 0; d < hidden; ++d) dot += static_cast<double>(ei[d]) * static_cast<double>(ej[d]);
      sum += dot;
    }
    out.push_back(sum / static_cast<double>(queries.size()));
  }
  return out;
}

#ifdef VIDKV_WITH_CUDA
void SemanticEmbeddingProtector::score_cuda(const TensorView&, const BlockShape&, const TokenContext& ctx,
                                            const std::vector<std::int32_t>& candidates, double* scores,
                                            void* stream) const {
  std::vector<std::int64_t> queries;
  const TraceTokens& tt = checked_tokens(ctx, &queries);
  const auto hidden = static_cast<std::size_t>(tt.hidden), n = candidates.size();
  std::vector<float> cand_rows(hidden * n), query_rows(hidden * queries.size());
  for (std::size_t i = 0; i < n; ++i)
    std::copy_n(tt.embeddings.data() + static_cast<std::size_t>(ctx.trace_index(candidates[i])) * hidden, hidden,
                cand_rows.data() + i * hidden);
  for (std::size_t j = 0; j < queries.size(); ++j)
    std::copy_n(tt.embeddings.data() + static_cast<std::size_t>(queries[j]) * hidden, hidden, query_rows.data() + j * hidden);
  DeviceBuffer d_cand(cand_rows.size() * sizeof(float), stream), d_queries(query_rows.size() * sizeof(float), stream);
  // Pageable sources: each copy returns once its source has been read, so the vectors may go out of scope.
  copy_to_device(d_cand.data(), cand_rows.data(), cand_rows.size() * sizeof(float), stream);
  copy_to_device(d_queries.data(), query_rows.data(), query_rows.size() * sizeof(float), stream);
  semantic_embedding_cuda::score(d_cand.as<float>(), static_cast<std::int64_t>(n), d_queries.as<float>(),
                                 static_cast<std::int64_t>(queries.size()), tt.hidden, scores, stream);
}
#endif

void register_semantic_embedding(PluginRegistry& registry) {
  registry.add<SemanticEmbeddingProtector>(
      "semantic_embedding", "STP (release): protects candidates whose input embeddings have the largest mean dot product with the query text's");
}

}  // namespace vidkv
