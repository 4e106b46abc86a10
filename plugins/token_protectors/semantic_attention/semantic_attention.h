// semantic_attention: semantic token protection scored by attention, as the VidKV paper words it.
//
// Paper: VidKV (arXiv 2503.16257) section 3.3: tokens that the text query attends to most are protected
// ("cross-modal attention"); algorithms.md 4.1. The released code scores by embeddings instead
// (semantic_embedding). Definition, per layer (the layer being encoded):
//   for every recorded query state (ctx.queries) whose trace token q is query text (modality 2) and already in
//   the cache (q < ctx.keys.tokens), and every query head h (kv head g = h / (query_heads / kv_heads), GQA):
//     a_{h,q}(j) = softmax_j( <Q_{h,q}, K_{g,j}> / sqrt(head_dim) ) over keys j = 0..q (causal),
//   using the layer's full-precision keys ctx.keys (indexed by trace token index), and
//   score(i) = mean over (h, q) of a_{h,q}(trace index of i)   (0 where i > q).
// Logits and the softmax in double with the max subtracted. Queries of tokens that are not in the cache yet are
// skipped (they do not exist when the block is encoded).
// Missing side data (token metadata, recorded queries, keys), mismatched widths or no usable query-text query:
// ConfigError naming the protector and what is missing.
// Stores nothing itself: mixed_token stores the protected set as a 1-bit-per-token mask, ceil(T / 8) bytes per block.
#pragma once

#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/token_protector.h"

namespace vidkv {

class SemanticAttentionProtector : public TokenProtector {
 public:
  struct Params : TokenProtectionParams {
    template <class B>
    static void bind(B& b) { bind_protection<Params>(b); }
  };
  explicit SemanticAttentionProtector(const Params& p) : TokenProtector(p) {}

  // Scores come from the recorded queries and keys of the token context (host data), never from the block being
  // encoded: on cuda too they run here on the host, and the block stays on the device untouched. No CUDA scoring:
  // the softmax's exp would have to round as the host's std::exp does for the scores to be equal bit for bit, and
  // CUDA's exp (within 1 ulp) does not promise that.
  bool reads_block() const override { return false; }
  bool reads_recorded_queries() const override { return true; }
  bool reads_context_keys() const override { return true; }
  std::vector<double> score(const float* in, const BlockShape& shape, const TokenContext& ctx,
                            const std::vector<std::int32_t>& candidates) const override;
};

void register_semantic_attention(PluginRegistry& registry);

}  // namespace vidkv
