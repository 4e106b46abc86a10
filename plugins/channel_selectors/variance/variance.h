// variance: channel selector scoring each channel by its population variance (VidKV, algorithms.md 3.1).
//
// Paper: VidKV (arXiv 2503.16257) Table 1, "Variance" row (an ablation; not in the released code).
// Definition: over the n = heads_in_scope * tokens values x of the channel, mean m = sum(x) / n and
// score = sum((x - m)^2) / n (population variance, divisor n, not n - 1), accumulated in double, two passes.
// Stores nothing itself (the mask is stored by mixed_channel).
#pragma once

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

class VarianceSelector : public ChannelSelector {
 public:
  struct Params : ChannelSelectionParams {
    template <class B>
    static void bind(B& b) { bind_selection<Params>(b); }
  };
  explicit VarianceSelector(const Params& p) : ChannelSelector(p) {}

  std::vector<double> score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                            std::int64_t head_end) const override;

 protected:
#ifdef VIDKV_WITH_CUDA
  // column_scores.cu through column_scores_cuda.h: one thread per score, the double sums in the reference's order.
  bool cuda_implemented() const override { return true; }
  void score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const override;
#endif
};

void register_variance(PluginRegistry& registry);

}  // namespace vidkv
