#include "vidkv/plugins/channel_selectors/outlier/outlier.h"

#include <cmath>

#include "vidkv/quantization/cuda/column_scores_cuda.h"

namespace vidkv {

std::vector<double> OutlierSelector::score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                                           std::int64_t head_end) const {
  const auto channels = static_cast<std::size_t>(shape.channels);
  const double n = static_cast<double>((head_end - head_begin) * shape.tokens);
  const bool absolute = params_.mode == OutlierMode::absolute;
  std::vector<double> mean(channels, 0.0), count(channels, 0.0);
  if (n <= 0) return count;
  auto value = [&](std::int64_t h, std::int64_t t, std::size_t c) {
    const double x = in[h * shape.slab_elements() + t * shape.channels + static_cast<std::int64_t>(c)];
    return absolute ? std::fabs(x) : x;
  };
  for (std::int64_t h = head_begin; h < head_end; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::size_t c = 0; c < channels; ++c) mean[c] += value(h, t, c);
  for (auto& m : mean) m /= n;
  for (std::int64_t h = head_begin; h < head_end; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::size_t c = 0; c < channels; ++c)
        if (value(h, t, c) > params_.multiplier * mean[c]) count[c] += 1.0;
  return count;
}

#ifdef VIDKV_WITH_CUDA
void OutlierSelector::score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const {
  column_scores_cuda::outlier(in.data, in.dtype, shape, heads_per_scope(shape), params_.multiplier,
                              params_.mode == OutlierMode::absolute, scores, stream);
}
#endif

void register_outlier(PluginRegistry& registry) {
  registry.add<OutlierSelector>("outlier", "channels with the most values above M times the channel mean get more bits (VidKV Table 1 ablation)");
}

}  // namespace vidkv
