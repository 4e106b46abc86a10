// range: channel selector scoring each channel by its value range, max - min (VidKV, algorithms.md 3.1).
//
// Paper: VidKV (arXiv 2503.16257) section 3.2 / Table 1, "Range" is the criterion the paper adopts and the one the
// released code implements (max - min over every token of every KV head of the layer: scope: layer).
// Differences: none in the score; the scope (per layer or per head) and the count (fraction or exact count) are
// parameters of the ChannelSelector base class. Stores nothing itself (the mask is stored by mixed_channel).
#pragma once

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

class RangeSelector : public ChannelSelector {
 public:
  struct Params : ChannelSelectionParams {
    template <class B>
    static void bind(B& b) { bind_selection<Params>(b); }
  };
  explicit RangeSelector(const Params& p) : ChannelSelector(p) {}

  // score[c] = max - min of channel c over all tokens of heads [head_begin, head_end); 0 for an empty block.
  std::vector<double> score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                            std::int64_t head_end) const override;

 protected:
#ifdef VIDKV_WITH_CUDA
  // column_scores.cu through column_scores_cuda.h: a parallel reduction of the extrema, bit-identical (order-free).
  bool cuda_implemented() const override { return true; }
  void score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const override;
#endif
};

void register_range(PluginRegistry& registry);

}  // namespace vidkv
