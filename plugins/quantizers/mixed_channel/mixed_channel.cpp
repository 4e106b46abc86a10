#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel.h"

#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/core/thread_scratch.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_avx512.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_cuda.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/quantization/composite_quantizer.h"

namespace vidkv {

namespace {

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

// The fused kernels' children (mixed_channel_fused.h) when the high child is uniform and the low child is sign;
// whether they run for a shape is mixed_channel_fused::refusal's answer.
std::optional<mixed_channel_fused::Children> fused_children(const Quantizer& high, const Quantizer& low) {
  const auto* u = dynamic_cast<const UniformQuantizer*>(&high);
  const auto* s = dynamic_cast<const SignQuantizer*>(&low);
  if (u == nullptr || s == nullptr) return std::nullopt;
  return mixed_channel_fused::Children{uniform_cuda::config_of(u->params()), sign_cuda::config_of(s->params())};
}

std::string part_prefix(const char* side, const Part& p, bool per_head) {
  return per_head ? std::string(side) + ".h" + std::to_string(p.mask) : std::string(side);
}

// Channel c is high when is_high[c] != 0; hi / lo list the channels of each set in ascending order.
struct ChannelSplit {
  std::vector<std::int64_t> hi, lo;
  std::vector<std::uint8_t> is_high;
};

// The split of `channels` channels where is_high(c) says which are high.
template <class IsHigh>
ChannelSplit split_channels(std::size_t channels, IsHigh is_high) {
  ChannelSplit split;
  for (std::size_t c = 0; c < channels; ++c) {
    const bool high = is_high(c);
    (high ? split.hi : split.lo).push_back(static_cast<std::int64_t>(c));
    split.is_high.push_back(high ? 1 : 0);
  }
  return split;
}

// Splits heads [p.head_begin, p.head_end) of `in` into dense [heads, tokens, |hi|] and [heads, tokens, |lo|]
// blocks of the high and normal channels (ascending), reading every token row once. Both sides hold channels (the
// callers pass a part with every channel on one side straight to its child). `vector`: the AVX-512 path where the
// CPU has it (the optimised tier; the reference tier moves element by element), which may write the outputs up to
// 16 floats past their end (ThreadScratch padding).
void gather(const float* in, const BlockShape& shape, const Part& p, const ChannelSplit& split, float* hi_out,
            float* lo_out, bool vector) {
  const std::int64_t rows = (p.head_end - p.head_begin) * shape.tokens;
  const float* first = in + p.head_begin * shape.slab_elements();
  if (vector && mixed_channel_avx512::available())
    return mixed_channel_avx512::gather(first, rows, shape.channels, split.is_high.data(), hi_out, lo_out);
  const auto nh = split.hi.size(), nl = split.lo.size();
  for (std::int64_t t = 0; t < rows; ++t) {
    const float* row = first + t * shape.channels;
    for (std::size_t k = 0; k < nh; ++k) hi_out[k] = row[split.hi[k]];
    for (std::size_t k = 0; k < nl; ++k) lo_out[k] = row[split.lo[k]];
    hi_out += nh;
    lo_out += nl;
  }
}

// The inverse of gather(); hi_in and lo_in may be read up to 16 floats past their end.
void scatter(const float* hi_in, const float* lo_in, const BlockShape& shape, const Part& p, const ChannelSplit& split,
             float* out, bool vector) {
  const std::int64_t rows = (p.head_end - p.head_begin) * shape.tokens;
  float* first = out + p.head_begin * shape.slab_elements();
  if (vector && mixed_channel_avx512::available())
    return mixed_channel_avx512::scatter(hi_in, lo_in, rows, shape.channels, split.is_high.data(), first);
  const auto nh = split.hi.size(), nl = split.lo.size();
  for (std::int64_t t = 0; t < rows; ++t) {
    float* row = first + t * shape.channels;
    for (std::size_t k = 0; k < nh; ++k) row[split.hi[k]] = hi_in[k];
    for (std::size_t k = 0; k < nl; ++k) row[split.lo[k]] = lo_in[k];
    hi_in += nh;
    lo_in += nl;
  }
}

// The channel-mask section of `masks` (zeroed first), mask_bytes(masks.size(), channels) bytes at `out`.
void write_mask_section(const std::vector<std::vector<std::uint8_t>>& masks, std::size_t channels, std::uint8_t* out) {
  std::memset(out, 0, mixed_channel_format::mask_bytes(masks.size(), channels));
  for (std::size_t m = 0; m < masks.size(); ++m)
    for (std::size_t c = 0; c < channels; ++c)
      if (masks[m][c]) mixed_channel_format::mask_set(out, channels, m, c);
}

}  // namespace

ConfigNode MixedChannelQuantizer::Params::default_selector() {
  return composite::default_block({{"type", "range"}, {"fraction", "0.5"}, {"scope", "layer"}});
}
ConfigNode MixedChannelQuantizer::Params::default_high() {
  return composite::default_block({{"type", "uniform"}, {"bits", "2"}, {"group", "32"}, {"axis", "channel"}});
}
ConfigNode MixedChannelQuantizer::Params::default_low() {
  return composite::default_block({{"type", "sign"}, {"group", "32"}, {"fft", "real"}});
}

MixedChannelQuantizer::MixedChannelQuantizer(const Params& params, const PluginRegistry& registry)
    : selector_(registry.make_channel_selector(params.selector)),
      high_(registry.make_quantizer(params.high)),
      low_(registry.make_quantizer(params.low)),
      fused_(fused_children(*high_, *low_)),
      vector_moves_(registry.implementation() == CpuImplementation::optimized) {}

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
  write_mask_section(masks, channels, out);
  std::uint8_t* cursor = out + mask_bytes;
  for (const Part& p : parts_of(*selector_, shape)) {
    const auto& mask = masks[static_cast<std::size_t>(p.mask)];
    const ChannelSplit split = split_channels(channels, [&](std::size_t c) { return static_cast<bool>(mask[c]); });
    VIDKV_ASSERT(static_cast<std::int64_t>(split.hi.size()) == k, "selector chose ", split.hi.size(), " channels, expected ", k);
    const BlockShape hs = part_shape(shape, static_cast<std::int64_t>(split.hi.size()));
    const BlockShape ls = part_shape(shape, static_cast<std::int64_t>(split.lo.size()));
    if (split.hi.empty() || split.lo.empty()) {  // every channel on one side (k == 0 or k == D): the part's rows as they are
      const float* part = in + p.head_begin * shape.slab_elements();
      cursor = split.lo.empty() ? composite::encode_child(*high_, part, hs, ctx, cursor)
                                : composite::encode_child(*low_, part, ls, ctx, cursor);
      continue;
    }
    const ThreadScratch hi_block(static_cast<std::size_t>(hs.elements())), lo_block(static_cast<std::size_t>(ls.elements()));
    gather(in, shape, p, split, hi_block.data(), lo_block.data(), vector_moves_);
    cursor = composite::encode_child(*high_, hi_block.data(), hs, ctx, cursor);
    cursor = composite::encode_child(*low_, lo_block.data(), ls, ctx, cursor);
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
    const ChannelSplit split = split_channels(channels, [&](std::size_t c) {
      return mixed_channel_format::mask_get(in, channels, static_cast<std::size_t>(p.mask), c);
    });
    VIDKV_REQUIRE(static_cast<std::int64_t>(split.hi.size()) == k, IoError, "mixed_channel: channel mask ", p.mask, " has ",
                  split.hi.size(), " channels set, the layout needs ", k, " (corrupt or foreign bytes)");
    const BlockShape hs = part_shape(shape, static_cast<std::int64_t>(split.hi.size()));
    const BlockShape ls = part_shape(shape, static_cast<std::int64_t>(split.lo.size()));
    if (split.hi.empty() || split.lo.empty()) {  // every channel on one side: the child decodes the part's rows in place
      float* part = out + p.head_begin * shape.slab_elements();
      cursor = split.lo.empty() ? composite::decode_child(*high_, cursor, hs, ctx, part)
                                : composite::decode_child(*low_, cursor, ls, ctx, part);
      continue;
    }
    const ThreadScratch hi_block(static_cast<std::size_t>(hs.elements())), lo_block(static_cast<std::size_t>(ls.elements()));
    cursor = composite::decode_child(*high_, cursor, hs, ctx, hi_block.data());
    cursor = composite::decode_child(*low_, cursor, ls, ctx, lo_block.data());
    scatter(hi_block.data(), lo_block.data(), shape, p, split, out, vector_moves_);
  }
}

bool MixedChannelQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
  if (!selector_->count_fits(shape.channels, why)) return false;  // a count above head_dim: refused, not thrown
  const std::int64_t k = selector_->selected_count(shape.channels);
  // "high (32 of 64 channels)": a child's refusal names its part's width, which the selector sets, not head_dim.
  auto label = [&](const char* part, std::int64_t n) {
    return std::string(part) + " (" + std::to_string(n) + " of " + std::to_string(shape.channels) + " channels)";
  };
  return (k == 0 || composite::part_supports(label("high", k).c_str(), why, [&](std::string* r) {
            return high_->supports(device, part_shape(shape, k), r);
          })) &&
         (shape.channels - k == 0 || composite::part_supports(label("low", shape.channels - k).c_str(), why, [&](std::string* r) {
            return low_->supports(device, part_shape(shape, shape.channels - k), r);
          })) &&
         composite::part_supports("selector", why, [&](std::string* r) { return selector_->supports(device, r); });
}

KernelTier MixedChannelQuantizer::tier(Device device, const BlockShape& shape) const {
  const std::int64_t k = selector_->selected_count(shape.channels);
  std::vector<KernelTier> run;
  if (k > 0) run.push_back(high_->tier(device, part_shape(shape, k)));
  if (shape.channels - k > 0) run.push_back(low_->tier(device, part_shape(shape, shape.channels - k)));
  // The fused kernels' name where they run for fp16 / bf16 input and output: refusal() for the shape and word-aligned
  // child sections (from the layout: the mask section and every part's child blocks a multiple of 4 bytes).
  if (device == Device::cuda && fused_ && mixed_channel_fused::refusal(*fused_, part_shape(shape, shape.channels), k) == nullptr) {
    const std::size_t mask = mixed_channel_format::mask_bytes(static_cast<std::size_t>(selector_->mask_count(shape)),
                                                              static_cast<std::size_t>(shape.channels));
    const std::size_t high = high_->layout(part_shape(shape, k), {}).bytes();
    const std::size_t low = low_->layout(part_shape(shape, shape.channels - k), {}).bytes();
    if (mask % 4 == 0 && high % 4 == 0 && low % 4 == 0) return composite::joined_tier(plugin_name() + std::string(":fused"), run);
  }
  return composite::joined_tier(plugin_name(), run);
}

#ifdef VIDKV_WITH_CUDA

namespace {
std::uint32_t quiet_nan_bits(DType t) { return t == DType::f32 ? 0x7fc00000u : t == DType::f16 ? 0x7e00u : 0x7fc0u; }
}  // namespace

// The parts' child blocks lie back to back after the mask section, each part's high block then its low block (the
// layout above), with the same child layouts for every part.
MixedChannelQuantizer::FusedParts MixedChannelQuantizer::fused_parts(const BlockShape& shape, const TokenContext& ctx, std::int64_t k,
                                                                     DType dtype) const {
  FusedParts f;
  f.part = part_shape(shape, shape.channels);
  f.high_bytes = high_->layout(part_shape(shape, k), ctx).bytes();
  f.part_bytes = f.high_bytes + low_->layout(part_shape(shape, shape.channels - k), ctx).bytes();
  f.row_bytes = static_cast<std::size_t>(shape.channels * dtype_size(dtype));
  for (const Part& p : parts_of(*selector_, shape)) f.first_rows.push_back(p.head_begin * shape.tokens);
  return f;
}

bool MixedChannelQuantizer::encode_fused(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                                         const mixed_channel_cuda::Split& split, std::uint8_t* children, void* stream) const {
  if (!fused_) return false;
  const FusedParts f = fused_parts(shape, ctx, split.high, in.dtype);
  const auto* values = static_cast<const std::uint8_t*>(in.data);
  for (std::size_t i = 0; i < f.first_rows.size(); ++i) {
    std::uint8_t* bytes = children + i * f.part_bytes;
    if (mixed_channel_fused::encode_refusal(*fused_, f.part, split.high, in.dtype, values + f.value_offset(i), bytes, bytes + f.high_bytes))
      return false;
  }
  for (std::size_t i = 0; i < f.first_rows.size(); ++i) {
    std::uint8_t* bytes = children + i * f.part_bytes;
    mixed_channel_fused::encode(*fused_, split, f.first_rows[i], f.part, values + f.value_offset(i), in.dtype, bytes, bytes + f.high_bytes,
                                stream);
  }
  return true;
}

bool MixedChannelQuantizer::decode_fused(const std::uint8_t* children, const BlockShape& shape, const TokenContext& ctx,
                                         const mixed_channel_cuda::Split& split, const TensorView& out, void* stream) const {
  if (!fused_) return false;
  const FusedParts f = fused_parts(shape, ctx, split.high, out.dtype);
  auto* values = static_cast<std::uint8_t*>(out.data);
  for (std::size_t i = 0; i < f.first_rows.size(); ++i) {
    const std::uint8_t* bytes = children + i * f.part_bytes;
    if (mixed_channel_fused::decode_refusal(*fused_, f.part, split.high, out.dtype, values + f.value_offset(i), bytes, bytes + f.high_bytes))
      return false;
  }
  for (std::size_t i = 0; i < f.first_rows.size(); ++i) {
    const std::uint8_t* bytes = children + i * f.part_bytes;
    mixed_channel_fused::decode(*fused_, split, f.first_rows[i], f.part, bytes, bytes + f.high_bytes, values + f.value_offset(i),
                                out.dtype, stream);
  }
  return true;
}

void MixedChannelQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                                        std::uint8_t* out, const Execution& call) const {
  void* stream = call.cuda_stream;
  const Execution ex = call.with_independence(false);  // the children's: in stream order, without the call's promise
  const std::int64_t k = selector_->selected_count(shape.channels);
  const auto channels = static_cast<std::size_t>(shape.channels);
  // Scores and their top-k on the device, written straight into the mask section (the host's top_k_indices rule,
  // mixed_channel_split::in_top_k): the encode never synchronises. The host needs no mask: the child shapes depend
  // on k only, and the gather reads the section. With every channel on one side (k == 0 or k == D) nothing is
  // scored or gathered: the mask is all zeros or all ones and that side's block is the input itself.
  const bool one_side = k == 0 || k == shape.channels;
  const std::int64_t masks = selector_->mask_count(shape);
  const std::size_t mask_bytes = mixed_channel_format::mask_bytes(static_cast<std::size_t>(masks), channels);
  {
    DeviceBuffer scores(one_side ? 0 : static_cast<std::size_t>(masks * shape.channels) * sizeof(double), stream);
    if (!one_side) selector_->scores_device(in, scores.as<double>(), ex);
    mixed_channel_cuda::mask_from_scores(scores.as<double>(), masks, shape.channels, k, out, stream);
  }

  const bool per_head = selector_->selection().scope == SelectionScope::head;
  const mixed_channel_cuda::Split split{out, masks, per_head ? shape.tokens : shape.heads * shape.tokens, shape.channels, k};
  // The child blocks keep the input's dtype: the gather moves elements, the children convert exactly on load.
  const std::size_t es = static_cast<std::size_t>(dtype_size(in.dtype));
  if (!one_side && encode_fused(in, shape, ctx, split, out + mask_bytes, stream)) return;
  const std::size_t rows = static_cast<std::size_t>(shape.heads * shape.tokens);
  DeviceBuffer hi(one_side ? 0 : rows * static_cast<std::size_t>(k) * es, stream);
  DeviceBuffer lo(one_side ? 0 : rows * (channels - static_cast<std::size_t>(k)) * es, stream);
  if (!one_side) mixed_channel_cuda::gather(split, in.data, static_cast<int>(es), hi.data(), lo.data(), stream);
  std::uint8_t* const hi_data = one_side ? static_cast<std::uint8_t*>(in.data) : hi.as<std::uint8_t>();
  std::uint8_t* const lo_data = one_side ? static_cast<std::uint8_t*>(in.data) : lo.as<std::uint8_t>();

  std::uint8_t* cursor = out + mask_bytes;
  const BlockShape hs = part_shape(shape, k), ls = part_shape(shape, shape.channels - k);
  for (const Part& p : parts_of(*selector_, shape)) {
    const auto first_row = static_cast<std::size_t>(p.head_begin * shape.tokens);
    if (k > 0) {
      high_->encode_view(composite::device_part(hi_data + first_row * static_cast<std::size_t>(k) * es, in.dtype, hs), ctx, cursor, ex);
      cursor += high_->layout(hs, ctx).bytes();
    }
    if (shape.channels - k > 0) {
      low_->encode_view(composite::device_part(lo_data + first_row * static_cast<std::size_t>(ls.channels) * es, in.dtype, ls), ctx,
                        cursor, ex);
      cursor += low_->layout(ls, ctx).bytes();
    }
  }
}

void MixedChannelQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx,
                                        const TensorView& out, const Execution& call) const {
  void* stream = call.cuda_stream;
  const Execution ex = call.with_independence(false);  // the children's: in stream order, without the call's promise
  const std::int64_t k = selector_->selected_count(shape.channels);
  const auto channels = static_cast<std::size_t>(shape.channels);
  const std::int64_t masks = selector_->mask_count(shape);
  const bool per_head = selector_->selection().scope == SelectionScope::head;
  // The children decode into dense blocks of the output's dtype (their decode_view rounds the fp32 reconstruction
  // once, as the CPU path does after its fp32 scatter), which the scatter then moves unchanged.
  const std::size_t es = static_cast<std::size_t>(dtype_size(out.dtype));
  const std::size_t rows = static_cast<std::size_t>(shape.heads * shape.tokens);
  // With every channel on one side (k == 0 or k == D) the child decodes straight into the output: no scatter (and
  // no check of the mask, which has nothing to choose).
  const bool one_side = k == 0 || k == shape.channels;
  const std::uint8_t* cursor = in + mixed_channel_format::mask_bytes(static_cast<std::size_t>(masks), channels);
  const mixed_channel_cuda::Split split{in, masks, per_head ? shape.tokens : shape.heads * shape.tokens, shape.channels, k};
  if (!one_side && decode_fused(cursor, shape, ctx, split, out, stream)) return;
  // One scratch allocation for both parts (high rows, then low rows; the high part's bytes rounded up to 16 so the
  // low part stays aligned for the vector scatter): host time per call is what the live cache pays every decode step.
  const std::size_t hi_bytes = (rows * static_cast<std::size_t>(k) * es + 15) / 16 * 16;
  DeviceBuffer parts_scratch(one_side ? 0 : hi_bytes + rows * (channels - static_cast<std::size_t>(k)) * es, stream);
  std::uint8_t* const hi_data = one_side ? static_cast<std::uint8_t*>(out.data) : parts_scratch.as<std::uint8_t>();
  std::uint8_t* const lo_data = one_side ? static_cast<std::uint8_t*>(out.data) : parts_scratch.as<std::uint8_t>() + hi_bytes;
  const BlockShape hs = part_shape(shape, k), ls = part_shape(shape, shape.channels - k);
  // Every part has the same child shapes, so the same child layouts (computed once, not per head).
  const std::size_t high_bytes = k > 0 ? high_->layout(hs, ctx).bytes() : 0;
  const std::size_t low_bytes = shape.channels - k > 0 ? low_->layout(ls, ctx).bytes() : 0;
  for (const Part& p : parts_of(*selector_, shape)) {
    const auto first_row = static_cast<std::size_t>(p.head_begin * shape.tokens);
    if (k > 0) {
      high_->decode_view(cursor, ctx, composite::device_part(hi_data + first_row * static_cast<std::size_t>(k) * es, out.dtype, hs), ex);
      cursor += high_bytes;
    }
    if (shape.channels - k > 0) {
      low_->decode_view(cursor, ctx, composite::device_part(lo_data + first_row * static_cast<std::size_t>(ls.channels) * es, out.dtype, ls),
                        ex);
      cursor += low_bytes;
    }
  }
  if (one_side) return;
  mixed_channel_cuda::scatter(split, hi_data, lo_data, static_cast<int>(es), quiet_nan_bits(out.dtype), out.data, stream);
}

#endif  // VIDKV_WITH_CUDA

void register_mixed_channel(PluginRegistry& registry) {
  registry.add<MixedChannelQuantizer>(
      "mixed_channel", "splits channels with a selector: selected channels by `high`, the others by `low` (VidKV keys)");
}

}  // namespace vidkv
