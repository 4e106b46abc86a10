#include "vidkv/core/channel_selector.h"

#include <algorithm>
#include <numeric>

#include "vidkv/core/error.h"

namespace vidkv {

std::vector<std::int64_t> top_k_indices(const std::vector<double>& scores, std::int64_t k) {
  std::vector<std::int64_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  k = std::clamp<std::int64_t>(k, 0, static_cast<std::int64_t>(scores.size()));
  std::stable_sort(order.begin(), order.end(), [&](std::int64_t a, std::int64_t b) {
    return scores[static_cast<std::size_t>(a)] > scores[static_cast<std::size_t>(b)];
  });
  order.resize(static_cast<std::size_t>(k));
  std::sort(order.begin(), order.end());
  return order;
}

std::int64_t ChannelSelector::selected_count(std::int64_t channels) const {
  std::int64_t k;
  if (selection_.count >= 0) {
    k = selection_.count;
  } else {
    // algorithms.md 3.1: k = int(D * (key_bits - 1)); the 1e-9 keeps 128 * 0.5 from landing on 63.999...
    k = static_cast<std::int64_t>(static_cast<double>(channels) * selection_.fraction + 1e-9);
    if (k == 0 && selection_.fraction > 0) k = std::min<std::int64_t>(32, channels);  // release rule
  }
  VIDKV_REQUIRE(k <= channels, ConfigError, "channel selector: count = ", k, " exceeds the ", channels,
                " channels of the block");
  return k;
}

std::vector<std::vector<std::uint8_t>> ChannelSelector::select(const float* in, const BlockShape& shape) const {
  const std::int64_t k = selected_count(shape.channels);
  std::vector<std::vector<std::uint8_t>> masks;
  const std::int64_t scopes = mask_count(shape);
  for (std::int64_t s = 0; s < scopes; ++s) {
    const std::int64_t h0 = selection_.scope == SelectionScope::layer ? 0 : s;
    const std::int64_t h1 = selection_.scope == SelectionScope::layer ? shape.heads : s + 1;
    std::vector<double> scores = score(in, shape, h0, h1);
    VIDKV_ASSERT(static_cast<std::int64_t>(scores.size()) == shape.channels, "selector returned ", scores.size(),
                 " scores for ", shape.channels, " channels");
    std::vector<std::uint8_t> mask(static_cast<std::size_t>(shape.channels), 0);
    for (auto c : top_k_indices(scores, k)) mask[static_cast<std::size_t>(c)] = 1;
    masks.push_back(std::move(mask));
  }
  return masks;
}

}  // namespace vidkv
