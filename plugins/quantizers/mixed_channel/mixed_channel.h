// mixed_channel: composite quantizer that splits the channels of K with a channel selector and encodes the
// selected ("high", anomalous) channels and the others ("low", normal) with two child quantizers.
//
// Paper: VidKV (arXiv 2503.16257) section 3.2, algorithms.md 3: 1.x-bit keys = range-selected channels at 2 bits
// (uniform, per-channel groups of 32 tokens) and the rest at 1 bit (FFT + sign). Defaults are the paper's 1.5-bit
// keys: selector {type: range, fraction: 0.5, scope: layer}, high {type: uniform, bits: 2, group: 32,
// axis: channel}, low {type: sign, group: 32, fft: real}.
// Differences from the release: the mask is stored (1 bit per channel per mask) and counted; the selection scope
// and the children are parameters; the release's low path is {sign, fft: complex, layout: release}.
//
// Packed layout (format version 1, mixed_channel_format.h), sections back to back:
//   channel_mask                       ceil(masks * D / 8) bytes; masks = 1 (scope layer) or heads (scope head)
//   scope layer: high.*  child bytes of the [heads, tokens, k] block of high channels (ascending index)
//                low.*   child bytes of the [heads, tokens, D - k] block of low channels (ascending index)
//   scope head:  for each head h: high.hH.* ([1, tokens, k]) then low.hH.* ([1, tokens, D - k])
//   A child with no channels (k == 0 or k == D) writes no section.
// k = selector.selected_count(D) depends only on D, so the layout depends only on the shape.
// Effective bits = 8 * (mask bytes + high bytes + low bytes) / (heads * tokens * D);
// nominal bits = (k * nominal_high + (D - k) * nominal_low) / D.
//
// CUDA (encode_view / decode_view on device memory, mixed_channel_cuda.h): the selector scores the block on the
// device (ChannelSelector::scores_device), one kernel ranks the scores and writes the mask section (the same top-k
// rule as the host's), one kernel gathers the high and low channels of every part into two dense device blocks in
// the input's dtype, and the children encode them with encode_view on the same stream; decode runs the children's
// decode_view and one scatter kernel. Neither synchronises the stream (with k == 0 or k == D nothing is scored,
// gathered or scattered: the one child takes the input and decodes into the output). Bytes identical to the CPU
// path when both children's CUDA tiers are exact (tier() says). The CUDA decode does not check the stored mask's
// count (that would need a synchronisation): a corrupt mask gives NaN for its rows. With a uniform high child and a
// sign FFT low child (VidKV's keys) the gather, both children and the scatter run as one kernel per direction where
// mixed_channel_fused.h says it applies: the same bytes and decoded values, tier "mixed_channel:fused(...)".
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/config_node.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_cuda.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused.h"

namespace vidkv {

class MixedChannelQuantizer : public Quantizer {
 public:
  struct Params {
    ConfigNode selector = default_selector();
    ConfigNode high = default_high();
    ConfigNode low = default_low();

    static ConfigNode default_selector();
    static ConfigNode default_high();
    static ConfigNode default_low();

    template <class B>
    static void bind(B& b) {
      b.block("selector", &Params::selector, "channel_selector", "channel selector choosing the high-precision channels");
      b.block("high", &Params::high, "quantizer", "quantizer of the selected (anomalous) channels, gathered in ascending index");
      b.block("low", &Params::low, "quantizer", "quantizer of the other (normal) channels, gathered in ascending index");
    }
  };

  MixedChannelQuantizer(const Params& params, const PluginRegistry& registry);

  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override;
  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override;
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const override;
  // Also false on cuda where the selector or a child that runs (k > 0, D - k > 0) has no CUDA implementation,
  // `why` naming which.
  bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const override;
  // "mixed_channel(<high tier>, <low tier>)" of the children that run for `shape`; exact when both are.
  // "mixed_channel:fused(...)" where the fused kernels run (mixed_channel_fused.h) for fp16 / bf16 data in aligned
  // buffers (fp32 input and unaligned buffers take the unfused path under this name: the same bytes).
  KernelTier tier(Device device, const BlockShape& shape) const override;
  // A child's (no channel selector reads the recorded queries or the context's keys).
  bool reads_recorded_queries() const override { return high_->reads_recorded_queries() || low_->reads_recorded_queries(); }
  bool reads_context_keys() const override { return high_->reads_context_keys() || low_->reads_context_keys(); }

  const ChannelSelector& selector() const { return *selector_; }
  // The children (fused decode attention reads their formats: attention/decode_attention_format.h).
  const Quantizer& high() const { return *high_; }
  const Quantizer& low() const { return *low_; }

 protected:
  VIDKV_QUANTIZER_CUDA_OVERRIDES

 private:
  // Shapes of the child blocks for one part (layer scope: all heads; head scope: one head).
  BlockShape part_shape(const BlockShape& shape, std::int64_t channels) const;
#ifdef VIDKV_WITH_CUDA
  // Where the fused kernels find each part of a block: the part's shape (all heads or one), its child bytes (high
  // block, then low block, part after part) and its first row in the block (rows of row_bytes).
  struct FusedParts {
    BlockShape part;
    std::size_t high_bytes = 0, part_bytes = 0, row_bytes = 0;
    std::vector<std::int64_t> first_rows;
    std::size_t value_offset(std::size_t i) const { return static_cast<std::size_t>(first_rows[i]) * row_bytes; }
  };
  FusedParts fused_parts(const BlockShape& shape, const TokenContext& ctx, std::int64_t k, DType dtype) const;
  // The fused kernels (mixed_channel_fused.h) for every part, where the children are uniform and sign and
  // mixed_channel_fused's refusals are null for every part: true when they ran. `children`: the bytes after the mask
  // section.
  bool encode_fused(const TensorView& in, const BlockShape& shape, const TokenContext& ctx, const mixed_channel_cuda::Split& split,
                    std::uint8_t* children, void* stream) const;
  bool decode_fused(const std::uint8_t* children, const BlockShape& shape, const TokenContext& ctx,
                    const mixed_channel_cuda::Split& split, const TensorView& out, void* stream) const;
#endif

  std::unique_ptr<ChannelSelector> selector_;
  std::unique_ptr<Quantizer> high_, low_;
  // The children's CUDA configurations when high is uniform and low is sign (the fused kernels' pair), else empty.
  std::optional<mixed_channel_fused::Children> fused_;
  // The CPU gather / scatter by AVX-512 compress / expand (the registry's optimised tier) or element by element
  // (its reference tier, the scalar oracle).
  bool vector_moves_ = true;
};

void register_mixed_channel(PluginRegistry& registry);

}  // namespace vidkv
