#include "vidkv/plugins/channel_selectors/range/range.h"

#include <algorithm>
#include <limits>

#include "vidkv/quantization/cpu_dispatch.h"
#include "vidkv/quantization/cuda/column_scores_cuda.h"

namespace vidkv {

namespace {

// Column-wise running min and max over `rows` rows of `width` floats, in row order: `x < lo ? x : lo` and
// `hi < x ? x : hi` (what std::min / std::max compute), a loop the compiler vectorises across columns.
VIDKV_CPU_CLONES
void column_extrema(const float* __restrict rows_in, std::int64_t rows, std::int64_t width, float* __restrict lo,
                    float* __restrict hi) {
  for (std::int64_t t = 0; t < rows; ++t) {
    const float* row = rows_in + t * width;
    for (std::int64_t c = 0; c < width; ++c) {
      lo[c] = row[c] < lo[c] ? row[c] : lo[c];
      hi[c] = hi[c] < row[c] ? row[c] : hi[c];
    }
  }
}

}  // namespace

// Per channel max - min over every token of heads [head_begin, head_end), in double. The extrema are taken in
// float: converting to double is exact and monotone, so min/max of the floats equal min/max of their doubles
// (zeros of either sign included: the same element wins the same comparisons), and the difference is taken in
// double as before.
std::vector<double> RangeSelector::score(const float* in, const BlockShape& shape, std::int64_t head_begin,
                                         std::int64_t head_end) const {
  const auto channels = static_cast<std::size_t>(shape.channels);
  std::vector<float> lo(channels, std::numeric_limits<float>::infinity());
  std::vector<float> hi(channels, -std::numeric_limits<float>::infinity());
  for (std::int64_t h = head_begin; h < head_end; ++h)
    column_extrema(in + h * shape.slab_elements(), shape.tokens, shape.channels, lo.data(), hi.data());
  std::vector<double> out(channels, 0.0);
  if (shape.tokens > 0 && head_end > head_begin)
    for (std::size_t c = 0; c < channels; ++c) out[c] = static_cast<double>(hi[c]) - static_cast<double>(lo[c]);
  return out;
}

#ifdef VIDKV_WITH_CUDA
void RangeSelector::score_cuda(const TensorView& in, const BlockShape& shape, double* scores, void* stream) const {
  column_scores_cuda::range(in.data, in.dtype, shape, heads_per_scope(shape), scores, stream);
}
#endif

void register_range(PluginRegistry& registry) {
  registry.add<RangeSelector>("range", "channels with the largest max - min get more bits (VidKV, paper and release)");
}

}  // namespace vidkv
