// semantic_embedding: semantic token protection scored by input embeddings, as the VidKV release does it.
//
// Paper: VidKV (arXiv 2503.16257) section 3.3 (STP); algorithms.md 4.1 "release scoring". The score of candidate
// token i is the mean over the query-text tokens j (modality 2, anywhere in the trace) of the raw dot product
// <e_i, e_j> of their LLM input embeddings (ctx.tokens->embeddings, [T, hidden]); no softmax, no layer, no head,
// so every layer and head makes the same selection for the same tokens. Sums in double.
// Differences from the release: the query-text span comes from the recorded token modalities (no hard-coded
// +14 token offset); the budget follows count_rule (paper by default).
// Missing embeddings or no query-text token: ConfigError naming the protector and what is missing.
// Stores nothing itself: mixed_token stores the protected set as a 1-bit-per-token mask, ceil(T / 8) bytes per block.
#pragma once

#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/token_protector.h"

namespace vidkv {

class SemanticEmbeddingProtector : public TokenProtector {
 public:
  struct Params : TokenProtectionParams {
    template <class B>
    static void bind(B& b) { bind_protection<Params>(b); }
  };
  explicit SemanticEmbeddingProtector(const Params& p) : TokenProtector(p) {}

  // Scores come from the trace's input embeddings, never from the block being encoded.
  bool reads_block() const override { return false; }
  std::vector<double> score(const float* in, const BlockShape& shape, const TokenContext& ctx,
                            const std::vector<std::int32_t>& candidates) const override;

 protected:
#ifdef VIDKV_WITH_CUDA
  // semantic_embedding.cu: the candidates' and query-text tokens' embeddings (host data) are copied to the device,
  // one thread per candidate sums in the reference's order (semantic_embedding_score.h).
  // For n candidates, Q query tokens and width H that copies (n + Q) * H floats to do n * Q * H double products
  // (by count, at n = 8k visual tokens, Q = 20, H = 3584 of a 7B model: 118 MB copied against 5.9e8 sequential
  // multiply-adds on one host core; not measured here).
  bool cuda_implemented() const override { return true; }
  void score_cuda(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                  const std::vector<std::int32_t>& candidates, double* scores, void* stream) const override;
#endif
};

void register_semantic_embedding(PluginRegistry& registry);

}  // namespace vidkv
