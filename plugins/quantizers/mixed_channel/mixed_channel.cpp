#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel.h"

#include <cstring>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"

namespace vidkv {

namespace {

ConfigNode block_of(std::initializer_list<std::pair<const char*, const char*>> entries) {
  ConfigNode n = ConfigNode::map();
  for (const auto& [k, v] : entries) n.set(k, ConfigNode::scalar(v));
  return n;
}

// One unit of encoding: heads [head_begin, head_end) split with mask `mask`.
struct Part {
  std::int64_t head_begin, head_end, mask;
};

std::vector<Part> parts_of(const ChannelSelector& selector, const BlockShape& shape) {
  std::vector<Part> parts;
  if (selector.selection().scope == SelectionScope::layer) {
    parts.push_back({0, shape.heads, 0});
  } else {
    for (std::int64_t h = 0; h < shape.heads; ++h) parts.push_back({h, h + 1, h});
  }
  return parts;
}

std::string part_prefix(const char* side, const Part& p, bool per_head) {
  return per_head ? std::string(side) + ".h" + std::to_string(p.mask) : std::string(side);
}

// Copies channels `cl` of heads [p.head_begin, p.head_end) of `in` into a dense [heads, tokens, |cl|] block.
std::vector<float> gather(const float* in, const BlockShape& shape, const Part& p, const std::vector<std::int64_t>& cl) {
  const auto n = static_cast<std::int64_t>(cl.size());
  std::vector<float> out(static_cast<std::size_t>((p.head_end - p.head_begin) * shape.tokens * n));
  std::size_t o = 0;
  for (std::int64_t h = p.head_begin; h < p.head_end; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::int64_t c : cl) out[o++] = in[h * shape.slab_elements() + t * shape.channels + c];
  return out;
}

void scatter(const std::vector<float>& part, const BlockShape& shape, const Part& p, const std::vector<std::int64_t>& cl,
             float* out) {
  std::size_t o = 0;
  for (std::int64_t h = p.head_begin; h < p.head_end; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::int64_t c : cl) out[h * shape.slab_elements() + t * shape.channels + c] = part[o++];
}

}  // namespace

ConfigNode MixedChannelQuantizer::Params::default_selector() {
  return block_of({{"type", "range"}, {"fraction", "0.5"}, {"scope", "layer"}});
}
ConfigNode MixedChannelQuantizer::Params::default_high() {
  return block_of({{"quantizer", "uniform"}, {"bits", "2"}, {"group", "32"}, {"axis", "channel"}});
}
ConfigNode MixedChannelQuantizer::Params::default_low() {
  return block_of({{"quantizer", "sign"}, {"group", "32"}, {"fft", "real"}});
}

MixedChannelQuantizer::MixedChannelQuantizer(const Params& params, const PluginRegistry& registry)
    : selector_(registry.make_channel_selector(params.selector)),
      high_(registry.make_quantizer(params.high)),
      low_(registry.make_quantizer(params.low)) {}

BlockShape MixedChannelQuantizer::part_shape(const BlockShape& shape, std::int64_t channels) const {
  const std::int64_t heads = selector_->selection().scope == SelectionScope::layer ? shape.heads : 1;
  return BlockShape{heads, shape.tokens, channels};
}

PackedLayout MixedChannelQuantizer::layout(const BlockShape& shape, const TokenContext& ctx) const {
  const std::int64_t k = selector_->selected_count(shape.channels);
  const bool per_head = selector_->selection().scope == SelectionScope::head;
  PackedLayout out;
  out.add("channel_mask", SectionKind::channel_mask,
          mixed_channel_format::mask_bytes(static_cast<std::size_t>(selector_->mask_count(shape)),
                                           static_cast<std::size_t>(shape.channels)));
  for (const Part& p : parts_of(*selector_, shape)) {
    if (k > 0) out.append_child(part_prefix("high", p, per_head), high_->layout(part_shape(shape, k), ctx));
    if (shape.channels - k > 0)
      out.append_child(part_prefix("low", p, per_head), low_->layout(part_shape(shape, shape.channels - k), ctx));
  }
  return out;
}

void MixedChannelQuantizer::encode(const float* in, const BlockShape& shape, const TokenContext& ctx,
                                   std::uint8_t* out) const {
  const std::int64_t k = selector_->selected_count(shape.channels);
  const auto masks = selector_->select(in, shape);
  const auto channels = static_cast<std::size_t>(shape.channels);
  const std::size_t mask_bytes = mixed_channel_format::mask_bytes(masks.size(), channels);
  std::memset(out, 0, mask_bytes);
  for (std::size_t m = 0; m < masks.size(); ++m)
    for (std::size_t c = 0; c < channels; ++c)
      if (masks[m][c]) mixed_channel_format::mask_set(out, channels, m, c);
  std::uint8_t* cursor = out + mask_bytes;
  for (const Part& p : parts_of(*selector_, shape)) {
    std::vector<std::int64_t> hi, lo;
    for (std::size_t c = 0; c < channels; ++c) (masks[static_cast<std::size_t>(p.mask)][c] ? hi : lo).push_back(static_cast<std::int64_t>(c));
    VIDKV_ASSERT(static_cast<std::int64_t>(hi.size()) == k, "selector chose ", hi.size(), " channels, expected ", k);
    for (int side = 0; side < 2; ++side) {
      const auto& cl = side == 0 ? hi : lo;
      if (cl.empty()) continue;
      const Quantizer& q = side == 0 ? *high_ : *low_;
      const BlockShape ps = part_shape(shape, static_cast<std::int64_t>(cl.size()));
      const std::vector<float> block = gather(in, shape, p, cl);
      q.encode(block.data(), ps, ctx, cursor);
      cursor += q.layout(ps, ctx).bytes();
    }
  }
}

void MixedChannelQuantizer::decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx,
                                   float* out) const {
  const std::int64_t k = selector_->selected_count(shape.channels);
  const auto channels = static_cast<std::size_t>(shape.channels);
  const std::size_t mask_bytes =
      mixed_channel_format::mask_bytes(static_cast<std::size_t>(selector_->mask_count(shape)), channels);
  const std::uint8_t* cursor = in + mask_bytes;
  for (const Part& p : parts_of(*selector_, shape)) {
    std::vector<std::int64_t> hi, lo;
    for (std::size_t c = 0; c < channels; ++c)
      (mixed_channel_format::mask_get(in, channels, static_cast<std::size_t>(p.mask), c) ? hi : lo).push_back(static_cast<std::int64_t>(c));
    VIDKV_REQUIRE(static_cast<std::int64_t>(hi.size()) == k, IoError, "mixed_channel: channel mask ", p.mask, " has ",
                  hi.size(), " channels set, the layout needs ", k, " (corrupt or foreign bytes)");
    for (int side = 0; side < 2; ++side) {
      const auto& cl = side == 0 ? hi : lo;
      if (cl.empty()) continue;
      const Quantizer& q = side == 0 ? *high_ : *low_;
      const BlockShape ps = part_shape(shape, static_cast<std::int64_t>(cl.size()));
      std::vector<float> block(static_cast<std::size_t>(ps.elements()));
      q.decode(cursor, ps, ctx, block.data());
      scatter(block, shape, p, cl, out);
      cursor += q.layout(ps, ctx).bytes();
    }
  }
}

bool MixedChannelQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
  const std::int64_t k = selector_->selected_count(shape.channels);
  std::string child_why;
  if (k > 0 && !high_->supports(device, part_shape(shape, k), &child_why)) {
    if (why) *why = "high: " + child_why;
    return false;
  }
  if (shape.channels - k > 0 && !low_->supports(device, part_shape(shape, shape.channels - k), &child_why)) {
    if (why) *why = "low: " + child_why;
    return false;
  }
  return true;
}

void register_mixed_channel(PluginRegistry& registry) {
  registry.add<MixedChannelQuantizer>(
      "mixed_channel", "splits channels with a selector: selected channels by `high`, the others by `low` (VidKV keys)");
}

}  // namespace vidkv
