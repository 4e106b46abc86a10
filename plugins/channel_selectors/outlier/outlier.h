// outlier: channel selector scoring each channel by its number of outlier values (VidKV, algorithms.md 3.1).
//
// Paper: VidKV (arXiv 2503.16257) Table 1, "Outlier" row: the number of tokens with K_i > M * mean(K) in the
// channel, M = 3. Not in the released code. The paper does not say whether absolute values are meant, so both:
//   mode absolute (default): with the n = heads_in_scope * tokens values x of the channel,
//                            a = sum(|x|) / n, score = #{x : |x| > M * a}
//   mode signed:             m = sum(x) / n,   score = #{x : x > M * m}   (literal formula; with a negative mean
//                            most values count, which is why absolute is the default)
// Strict ">" in both; a head's token counts once per head (layer scope counts head-token pairs). Means in double.
// Stores nothing itself (the mask is stored by mixed_channel).
#pragma once

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

enum class OutlierMode { absolute, signed_values };

class OutlierSelector : public ChannelSelector {
 public:
  struct Params : ChannelSelectionParams {
    double multiplier = 3.0;  // M
    OutlierMode mode = OutlierMode::absolute;

    template <class B>
    static void bind(B& b) {
      bind_selection<Params>(b);
      b.real("multiplier", &Params::multiplier, 0.0, 1e6, "", "M: a value is an outlier when it exceeds M times the channel mean (paper: 3)");
      b.choice("mode", &Params::mode,
               std::vector<std::pair<std::string, OutlierMode>>{{"absolute", OutlierMode::absolute}, {"signed", OutlierMode::signed_values}},
               "absolute: |x| > M * mean(|x|); signed: x > M * mean(x)");
    }
  };
  explicit OutlierSelector(const Params& p) : ChannelSelector(p), params_(p) {}

  std::vector<double> score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                            std::int64_t head_end) const override;

 protected:
#ifdef VIDKV_WITH_CUDA
  // column_scores.cu through column_scores_cuda.h: one thread per score, the mean's double sum in the reference's order.
  bool cuda_implemented() const override { return true; }
  void score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const override;
#endif

 private:
  Params params_;
};

void register_outlier(PluginRegistry& registry);

}  // namespace vidkv
