#include "vidkv/plugins/channel_selectors/variance/variance.h"

#include "vidkv/quantization/cuda/column_scores_cuda.h"

namespace vidkv {

std::vector<double> VarianceSelector::score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                                            std::int64_t head_end) const {
  const auto channels = static_cast<std::size_t>(shape.channels);
  const double n = static_cast<double>((head_end - head_begin) * shape.tokens);
  std::vector<double> mean(channels, 0.0), var(channels, 0.0);
  if (n <= 0) return var;
  for (std::int64_t h = head_begin; h < head_end; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::size_t c = 0; c < channels; ++c) mean[c] += in[h * shape.slab_elements() + t * shape.channels + static_cast<std::int64_t>(c)];
  for (auto& m : mean) m /= n;
  for (std::int64_t h = head_begin; h < head_end; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::size_t c = 0; c < channels; ++c) {
        const double d = in[h * shape.slab_elements() + t * shape.channels + static_cast<std::int64_t>(c)] - mean[c];
        var[c] += d * d;
      }
  for (auto& v : var) v /= n;
  return var;
}

#ifdef VIDKV_WITH_CUDA
void VarianceSelector::score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const {
  column_scores_cuda::variance(in.data, in.dtype, shape, heads_per_scope(shape), scores, stream);
}
#endif

void register_variance(PluginRegistry& registry) {
  registry.add<VarianceSelector>("variance", "channels with the largest population variance get more bits (VidKV Table 1 ablation)");
}

}  // namespace vidkv
