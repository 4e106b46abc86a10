#include "vidkv/plugins/channel_selectors/range/range.h"

#include <algorithm>
#include <limits>

namespace vidkv {

std::vector<double> RangeSelector::score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                                         std::int64_t head_end) const {
  const auto channels = static_cast<std::size_t>(shape.channels);
  std::vector<double> lo(channels, std::numeric_limits<double>::infinity());
  std::vector<double> hi(channels, -std::numeric_limits<double>::infinity());
  for (std::int64_t h = head_begin; h < head_end; ++h) {
    const float* slab = in + h * shape.slab_elements();
    for (std::int64_t t = 0; t < shape.tokens; ++t) {
      for (std::size_t c = 0; c < channels; ++c) {
        const double x = slab[static_cast<std::size_t>(t) * channels + c];
        lo[c] = std::min(lo[c], x);
        hi[c] = std::max(hi[c], x);
      }
    }
  }
  std::vector<double> out(channels, 0.0);
  if (shape.tokens > 0 && head_end > head_begin)
    for (std::size_t c = 0; c < channels; ++c) out[c] = hi[c] - lo[c];
  return out;
}

void register_range(PluginRegistry& registry) {
  registry.add<RangeSelector>("range", "channels with the largest max - min get more bits (VidKV, paper and release)");
}

}  // namespace vidkv
