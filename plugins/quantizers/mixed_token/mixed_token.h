// mixed_token: composite quantizer that splits the tokens of a block with a token protector: protected tokens are
// encoded by the `protected` child, the others by the `rest` child.
//
// Paper: VidKV (arXiv 2503.16257) section 3.3, semantic token protection (STP), algorithms.md 4.1: a fraction
// p = 0.2 of the visual tokens keeps 2 bits (uniform, per-channel groups of 32 protected tokens gathered in
// ascending position), the rest get 1.58-bit ternary: "1.66-bit" values. Defaults: protector {type: random,
// fraction: 0.2} (RTP; presets use semantic_embedding), protected {type: uniform, bits: 2, group: 32,
// axis: channel}, rest {type: ternary}.
// Differences from the release: the protected set is stored as a token mask and counted in effective bits; the
// count rule and the scorer are parameters of the protector.
//
// Packed layout (format version 1, mixed_token_format.h), sections back to back:
//   token_mask   ceil(tokens / 8) bytes, bit t = local token t is protected (shared by all heads)
//   protected.*  child bytes of the [heads, n, D] block of protected tokens (ascending position), if n > 0
//   rest.*       child bytes of the [heads, tokens - n, D] block of the other tokens (ascending), if tokens > n
// n = protector.budget(number of candidate tokens) depends only on the shape and the token modalities. Children
// get ctx.subset(their tokens). A child whose layout would depend on *which* tokens are protected (not only how
// many) is refused at encode time with NotSupportedError, since the layout must not depend on values.
// Effective bits = 8 * (ceil(T / 8) + protected bytes + rest bytes) / (heads * T * D);
// nominal bits = (n * nominal_protected + (T - n) * nominal_rest) / T.
//
// CUDA (encode_view / decode_view on device memory, mixed_token_cuda.h): the protector decides on the host
// (TokenProtector::protect_view: none, random and semantic_attention score on the host from the token context with
// no stream work, so the encode does not synchronise at all; semantic_embedding scores on the device and
// synchronises once to bring the scores back for the top-k; none reads the block), the mask section (ceil(T / 8) bytes) is copied into the output, a
// one-block kernel derives every token's slot from it, one kernel gathers the token rows into the two dense child
// blocks in the input's dtype, and the children encode them with encode_view on the same stream. Decode copies the
// stored token mask to the host (this synchronises the stream, because the children are given ctx.subset(their
// tokens), a host object built from the protected set, and so that a corrupt mask raises IoError as on the CPU),
// runs the children's decode_view and one scatter kernel. With n == 0 (protector none) or n == T the one child
// takes the input and decodes into the output: no gather, no scatter. Bytes identical to the CPU path when both
// children's CUDA tiers are exact.
#pragma once

#include <memory>

#include "vidkv/core/config_node.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/core/token_protector.h"

namespace vidkv {

class MixedTokenQuantizer : public Quantizer {
 public:
  struct Params {
    ConfigNode protector = default_protector();
    ConfigNode protected_block = default_protected();  // YAML key "protected"
    ConfigNode rest = default_rest();

    static ConfigNode default_protector();
    static ConfigNode default_protected();
    static ConfigNode default_rest();

    template <class B>
    static void bind(B& b) {
      b.block("protector", &Params::protector, "token_protector", "token protector choosing the tokens that keep more bits");
      b.block("protected", &Params::protected_block, "quantizer", "quantizer of the protected tokens, gathered in ascending position");
      b.block("rest", &Params::rest, "quantizer", "quantizer of the other tokens, gathered in ascending position");
    }
  };

  MixedTokenQuantizer(const Params& params, const PluginRegistry& registry);

  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override;
  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override;
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const override;
  // Also false on cuda where the protector or a child has no CUDA implementation, `why` naming which.
  bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const override;
  // "mixed_token(<protected tier>, <rest tier>)"; exact when both are.
  KernelTier tier(Device device, const BlockShape& shape) const override;
  // The protector's or a child's.
  bool reads_recorded_queries() const override {
    return protector_->reads_recorded_queries() || protected_->reads_recorded_queries() || rest_->reads_recorded_queries();
  }
  bool reads_context_keys() const override {
    return protector_->reads_context_keys() || protected_->reads_context_keys() || rest_->reads_context_keys();
  }

  const TokenProtector& protector() const { return *protector_; }
  // The children (the fused decode attention reads their bytes in place, attention/decode_attention_format.h).
  const Quantizer& protected_quantizer() const { return *protected_; }
  const Quantizer& rest_quantizer() const { return *rest_; }
  // The number of protected tokens n of a block of `tokens` tokens under ctx: the protector's budget of its
  // candidates, which the stored mask holds exactly (encode checks it); depends only on the shape and modalities.
  std::int64_t protected_count(std::int64_t tokens, const TokenContext& ctx) const;

 protected:
  VIDKV_QUANTIZER_CUDA_OVERRIDES

 private:
  // Writes the token-mask section of `prot` at `out` (host memory) after checking that the split needs exactly
  // layout(shape, ctx).bytes() (NotSupportedError otherwise, see the header comment).
  void write_mask_checked(const std::vector<std::int32_t>& prot, const std::vector<std::int32_t>& rest,
                          const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const;
  std::unique_ptr<TokenProtector> protector_;
  std::unique_ptr<Quantizer> protected_, rest_;
};

void register_mixed_token(PluginRegistry& registry);

}  // namespace vidkv
