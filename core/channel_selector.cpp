#include "vidkv/core/channel_selector.h"

#include <algorithm>
#include <numeric>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/core/quantizer.h"

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

namespace {

// The count a selection asks for out of `channels`, before the check that it fits.
std::int64_t wanted_count(const ChannelSelectionParams& p, std::int64_t channels) {
  if (p.count >= 0) return p.count;
  // algorithms.md 3.1: k = int(D * (key_bits - 1)); the 1e-9 keeps 128 * 0.5 from landing on 63.999...
  const auto k = static_cast<std::int64_t>(static_cast<double>(channels) * p.fraction + 1e-9);
  return k == 0 && p.fraction > 0 ? std::min<std::int64_t>(32, channels) : k;  // release rule
}

std::string count_error(std::int64_t k, std::int64_t channels) {
  return "channel selector: count = " + std::to_string(k) + " exceeds the " + std::to_string(channels) +
         " channels of the block";
}

}  // namespace

std::int64_t ChannelSelector::selected_count(std::int64_t channels) const {
  const std::int64_t k = wanted_count(selection_, channels);
  if (k > channels) throw ConfigError(count_error(k, channels));
  return k;
}

bool ChannelSelector::count_fits(std::int64_t channels, std::string* why) const {
  const std::int64_t k = wanted_count(selection_, channels);
  if (k <= channels) return true;
  if (why) *why = count_error(k, channels);
  return false;
}

std::vector<std::vector<std::uint8_t>> ChannelSelector::masks_from_scores(const std::vector<double>& scores,
                                                                          const BlockShape& shape) const {
  const std::int64_t k = selected_count(shape.channels);
  const auto channels = static_cast<std::size_t>(shape.channels);
  VIDKV_ASSERT(scores.size() == static_cast<std::size_t>(mask_count(shape)) * channels, "selector returned ",
               scores.size(), " scores for ", mask_count(shape), " x ", channels, " channels");
  std::vector<std::vector<std::uint8_t>> masks;
  for (std::size_t s = 0; s < static_cast<std::size_t>(mask_count(shape)); ++s) {
    const std::vector<double> one(scores.begin() + static_cast<std::ptrdiff_t>(s * channels),
                                  scores.begin() + static_cast<std::ptrdiff_t>((s + 1) * channels));
    std::vector<std::uint8_t> mask(channels, 0);
    for (auto c : top_k_indices(one, k)) mask[static_cast<std::size_t>(c)] = 1;
    masks.push_back(std::move(mask));
  }
  return masks;
}

std::vector<std::vector<std::uint8_t>> ChannelSelector::select(const float* in, const BlockShape& shape) const {
  // A host fp32 view: scores_view() then calls score() per scope, with no copy.
  const TensorView view{const_cast<float*>(in), DType::f32, Device::cpu, {shape.heads, shape.tokens, shape.channels}};
  return masks_from_scores(scores_view(view, Execution::cpu()), shape);
}

std::vector<double> ChannelSelector::scores_view(const TensorView& in, const Execution& ex) const {
  const std::string what = "channel selector " + name_;
  const BlockShape shape = block_shape_of(in, what);
  VIDKV_REQUIRE(in.device == ex.device, ShapeError, what, ": the view is on ", device_name(in.device),
                " but the call runs on ", device_name(ex.device));
  VIDKV_REQUIRE(in.data != nullptr || in.numel() == 0, ShapeError, what, ": null data");
  const std::int64_t scopes = mask_count(shape), hps = heads_per_scope(shape);
  std::vector<double> scores;
  if (!ex.on_cuda()) {
    std::vector<float> converted;
    const float* values = static_cast<const float*>(in.data);
    if (in.dtype != DType::f32) {
      converted = to_float(in);
      values = converted.data();
    }
    for (std::int64_t s = 0; s < scopes; ++s) {
      std::vector<double> one = score(values, shape, s * hps, (s + 1) * hps);
      VIDKV_ASSERT(static_cast<std::int64_t>(one.size()) == shape.channels, "selector returned ", one.size(),
                   " scores for ", shape.channels, " channels");
      scores.insert(scores.end(), one.begin(), one.end());
    }
    return scores;
  }
  scores.resize(static_cast<std::size_t>(scopes * shape.channels));
  DeviceBuffer device_scores(scores.size() * sizeof(double), ex.cuda_stream);
  scores_device(in, device_scores.as<double>(), ex);
  // Synchronises the stream: the top-k is a host decision (see select_view in the header).
  copy_to_host(scores.data(), device_scores.data(), scores.size() * sizeof(double), ex.cuda_stream);
  return scores;
}

void ChannelSelector::scores_device(const TensorView& in, double* scores, const Execution& ex) const {
  const std::string what = "channel selector " + name_;
  const BlockShape shape = block_shape_of(in, what);
  VIDKV_REQUIRE(ex.on_cuda() && in.device == Device::cuda, ShapeError, what, ": scores_device needs a cuda view and a "
                "cuda execution, got a view on ", device_name(in.device), " and a call on ", device_name(ex.device));
  VIDKV_REQUIRE(in.data != nullptr || in.numel() == 0, ShapeError, what, ": null data");
  std::string why;
  if (!supports(Device::cuda, &why)) VIDKV_THROW(NotSupportedError, what, " on cuda: ", why);
  score_cuda(in, shape, scores, ex.cuda_stream);
}

std::vector<std::vector<std::uint8_t>> ChannelSelector::select_view(const TensorView& in, const Execution& ex) const {
  return masks_from_scores(scores_view(in, ex), block_shape_of(in, "channel selector " + name_));
}

bool ChannelSelector::supports(Device device, std::string* why) const {
  if (device == Device::cpu) return true;
#ifndef VIDKV_WITH_CUDA
  if (why) *why = "this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)";
  return false;
#else
  if (cuda_implemented()) return true;
  if (why) *why = "channel selector " + name_ + " has no CUDA implementation";
  return false;
#endif
}

void ChannelSelector::score_cuda(const TensorView&, const BlockShape&, double*, void*) const {
  VIDKV_THROW(NotSupportedError, "channel selector ", name_, ": no CUDA implementation");
}

}  // namespace vidkv
