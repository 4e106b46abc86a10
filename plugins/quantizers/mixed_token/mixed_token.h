// mixed_token: composite quantizer that splits the tokens of a block with a token protector: protected tokens are
// encoded by the `protected` child, the others by the `rest` child.
//
// Paper: VidKV (arXiv 2503.16257) section 3.3, semantic token protection (STP), algorithms.md 4.1: a fraction
// p = 0.2 of the visual tokens keeps 2 bits (uniform, per-channel groups of 32 protected tokens gathered in
// ascending position), the rest get 1.58-bit ternary: "1.66-bit" values. Defaults: protector {type: random,
// fraction: 0.2} (RTP; presets use semantic_embedding), protected {quantizer: uniform, bits: 2, group: 32,
// axis: channel}, rest {quantizer: ternary}.
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
  bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const override;

  const TokenProtector& protector() const { return *protector_; }

 private:
  // Budget n for a block of `tokens` tokens under ctx.
  std::int64_t protected_count(std::int64_t tokens, const TokenContext& ctx) const;

  std::unique_ptr<TokenProtector> protector_;
  std::unique_ptr<Quantizer> protected_, rest_;
};

void register_mixed_token(PluginRegistry& registry);

}  // namespace vidkv
