#include "vidkv/plugins/quantizers/mixed_token/mixed_token.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_cuda.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_format.h"
#include "vidkv/quantization/composite_quantizer.h"

namespace vidkv {

namespace {

// Copies tokens `tl` (local, ascending) of every head into a dense [heads, |tl|, channels] block.
std::vector<float> gather(const float* in, const BlockShape& shape, const std::vector<std::int32_t>& tl) {
  const auto c = static_cast<std::size_t>(shape.channels);
  std::vector<float> out(static_cast<std::size_t>(shape.heads) * tl.size() * c);
  float* o = out.data();
  for (std::int64_t h = 0; h < shape.heads; ++h)
    for (std::int32_t t : tl) {
      std::memcpy(o, in + h * shape.slab_elements() + t * shape.channels, c * sizeof(float));
      o += c;
    }
  return out;
}

void scatter(const std::vector<float>& part, const BlockShape& shape, const std::vector<std::int32_t>& tl, float* out) {
  const auto c = static_cast<std::size_t>(shape.channels);
  const float* p = part.data();
  for (std::int64_t h = 0; h < shape.heads; ++h)
    for (std::int32_t t : tl) {
      std::memcpy(out + h * shape.slab_elements() + t * shape.channels, p, c * sizeof(float));
      p += c;
    }
}

// The complement of `chosen` (ascending) in [0, tokens).
std::vector<std::int32_t> complement(const std::vector<std::int32_t>& chosen, std::int64_t tokens) {
  std::vector<std::int32_t> out;
  std::size_t j = 0;
  for (std::int32_t t = 0; t < tokens; ++t) {
    if (j < chosen.size() && chosen[j] == t) {
      ++j;
    } else {
      out.push_back(t);
    }
  }
  return out;
}

// The protected tokens (ascending) of the stored token-mask section `section` (host) of a block of `tokens`
// tokens; IoError unless exactly n (the layout's count) are set.
std::vector<std::int32_t> stored_protected(const std::uint8_t* section, std::int64_t tokens, std::int64_t n) {
  std::vector<std::int32_t> prot;
  for (std::int32_t t = 0; t < tokens; ++t)
    if (mixed_token_format::mask_get(section, static_cast<std::size_t>(t))) prot.push_back(t);
  VIDKV_REQUIRE(static_cast<std::int64_t>(prot.size()) == n, IoError, "mixed_token: token mask has ", prot.size(),
                " tokens set, the layout needs ", n, " (corrupt or foreign bytes)");
  return prot;
}

// One side of the split: the child that encodes it, its tokens (local, ascending), the child's block
// [heads, |tokens|, channels] and token context.
struct Side {
  bool is_protected;
  const Quantizer& child;
  const std::vector<std::int32_t>& tokens;
  BlockShape shape;
  TokenContext ctx;
};

// Calls f(side) for the protected tokens `prot`, then the others `rest`, in the order of the children's sections,
// skipping a side without tokens (it has no section).
template <class F>
void for_each_side(const Quantizer& protected_child, const Quantizer& rest_child, const std::vector<std::int32_t>& prot,
                   const std::vector<std::int32_t>& rest, const BlockShape& shape, const TokenContext& ctx, F&& f) {
  for (int side = 0; side < 2; ++side) {
    const auto& tl = side == 0 ? prot : rest;
    if (tl.empty()) continue;
    f(Side{side == 0, side == 0 ? protected_child : rest_child, tl,
           BlockShape{shape.heads, static_cast<std::int64_t>(tl.size()), shape.channels}, ctx.subset(tl)});
  }
}

}  // namespace

ConfigNode MixedTokenQuantizer::Params::default_protector() {
  return composite::default_block({{"type", "random"}, {"fraction", "0.2"}});
}
ConfigNode MixedTokenQuantizer::Params::default_protected() {
  return composite::default_block({{"type", "uniform"}, {"bits", "2"}, {"group", "32"}, {"axis", "channel"}});
}
ConfigNode MixedTokenQuantizer::Params::default_rest() { return composite::default_block({{"type", "ternary"}}); }

MixedTokenQuantizer::MixedTokenQuantizer(const Params& params, const PluginRegistry& registry)
    : protector_(registry.make_token_protector(params.protector)),
      protected_(registry.make_quantizer(params.protected_block)),
      rest_(registry.make_quantizer(params.rest)) {}

std::int64_t MixedTokenQuantizer::protected_count(std::int64_t tokens, const TokenContext& ctx) const {
  return protector_->budget(static_cast<std::int64_t>(protector_->candidate_tokens(tokens, ctx).size()));
}

PackedLayout MixedTokenQuantizer::layout(const BlockShape& shape, const TokenContext& ctx) const {
  // The layout needs only the count n; the children's layouts are taken for a canonical protected set (the
  // first n candidates) and encode() checks that the actual set gives the same bytes.
  const auto cand = protector_->candidate_tokens(shape.tokens, ctx);
  const std::int64_t n = protector_->budget(static_cast<std::int64_t>(cand.size()));
  const std::vector<std::int32_t> prot(cand.begin(), cand.begin() + n);
  PackedLayout out;
  out.add("token_mask", SectionKind::token_mask, mixed_token_format::mask_bytes(static_cast<std::size_t>(shape.tokens)));
  for_each_side(*protected_, *rest_, prot, complement(prot, shape.tokens), shape, ctx, [&](const Side& s) {
    out.append_child(s.is_protected ? "protected" : "rest", s.child.layout(s.shape, s.ctx));
  });
  return out;
}

void MixedTokenQuantizer::write_mask_checked(const std::vector<std::int32_t>& prot, const std::vector<std::int32_t>& rest,
                                             const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const {
  const std::int64_t n = protected_count(shape.tokens, ctx);
  VIDKV_ASSERT(static_cast<std::int64_t>(prot.size()) == n, "protector kept ", prot.size(), " tokens, budget ", n);
  const std::size_t mask_bytes = mixed_token_format::mask_bytes(static_cast<std::size_t>(shape.tokens));
  // The caller sized the output from layout(); check before writing that the actual split needs exactly that.
  const std::size_t expected = layout(shape, ctx).bytes();
  std::size_t actual = mask_bytes;
  for_each_side(*protected_, *rest_, prot, rest, shape, ctx,
                [&](const Side& s) { actual += s.child.layout(s.shape, s.ctx).bytes(); });
  VIDKV_REQUIRE(actual == expected, NotSupportedError,
                "mixed_token: a child quantizer's layout depends on which tokens are protected (", actual,
                " bytes needed, layout says ", expected, "); such children cannot be used under mixed_token");
  std::memset(out, 0, mask_bytes);
  for (std::int32_t t : prot) mixed_token_format::mask_set(out, static_cast<std::size_t>(t));
}

void MixedTokenQuantizer::encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const {
  const std::vector<std::int32_t> prot = protector_->protect(in, shape, ctx);
  const std::vector<std::int32_t> rest = complement(prot, shape.tokens);
  write_mask_checked(prot, rest, shape, ctx, out);
  std::uint8_t* cursor = out + mixed_token_format::mask_bytes(static_cast<std::size_t>(shape.tokens));
  for_each_side(*protected_, *rest_, prot, rest, shape, ctx, [&](const Side& s) {
    const std::vector<float> block = gather(in, shape, s.tokens);
    cursor = composite::encode_child(s.child, block.data(), s.shape, s.ctx, cursor);
  });
}

void MixedTokenQuantizer::decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const {
  const std::vector<std::int32_t> prot = stored_protected(in, shape.tokens, protected_count(shape.tokens, ctx));
  const std::vector<std::int32_t> rest = complement(prot, shape.tokens);
  const std::uint8_t* cursor = in + mixed_token_format::mask_bytes(static_cast<std::size_t>(shape.tokens));
  for_each_side(*protected_, *rest_, prot, rest, shape, ctx, [&](const Side& s) {
    std::vector<float> block(static_cast<std::size_t>(s.shape.elements()));
    cursor = composite::decode_child(s.child, cursor, s.shape, s.ctx, block.data());
    scatter(block, shape, s.tokens, out);
  });
}

bool MixedTokenQuantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (!Quantizer::supports(device, shape, why)) return false;
  const BlockShape part{shape.heads, std::max<std::int64_t>(shape.tokens, 1), shape.channels};
  return composite::part_supports("protected", why, [&](std::string* r) { return protected_->supports(device, part, r); }) &&
         composite::part_supports("rest", why, [&](std::string* r) { return rest_->supports(device, part, r); }) &&
         composite::part_supports("protector", why, [&](std::string* r) { return protector_->supports(device, r); });
}

KernelTier MixedTokenQuantizer::tier(Device device, const BlockShape& shape) const {
  const BlockShape part{shape.heads, std::max<std::int64_t>(shape.tokens, 1), shape.channels};
  return composite::joined_tier(plugin_name(), {protected_->tier(device, part), rest_->tier(device, part)});
}

#ifdef VIDKV_WITH_CUDA

namespace {
// The per-token slots (mixed_token_format::token_slots) of the device mask section `mask`, computed on the device.
DeviceBuffer device_slots(const std::uint8_t* mask, std::int64_t tokens, void* stream) {
  DeviceBuffer d(static_cast<std::size_t>(tokens) * sizeof(std::int32_t), stream);
  mixed_token_cuda::slots_from_mask(mask, tokens, d.as<std::int32_t>(), stream);
  return d;
}
}  // namespace

void MixedTokenQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext& ctx,
                                      std::uint8_t* out, const Execution& call) const {
  void* stream = call.cuda_stream;
  const Execution ex = call.with_independence(false);  // the children's: in stream order, without the call's promise
  // Host decision (a synchronisation only where the protector scores on the device: semantic_embedding).
  const std::vector<std::int32_t> prot = protector_->protect_view(in, ctx, ex);
  const std::vector<std::int32_t> rest = complement(prot, shape.tokens);
  std::vector<std::uint8_t> section(mixed_token_format::mask_bytes(static_cast<std::size_t>(shape.tokens)));
  write_mask_checked(prot, rest, shape, ctx, section.data());
  copy_to_device(out, section.data(), section.size(), stream);  // returns once the pageable source has been read

  // With every token on one side (n == 0, e.g. protector none, or n == T) that side's block is the input itself.
  const auto n = static_cast<std::int64_t>(prot.size());
  const bool one_side = n == 0 || n == shape.tokens;
  const std::int64_t es = dtype_size(in.dtype);
  const std::size_t row = static_cast<std::size_t>(shape.channels * es);
  DeviceBuffer kept(one_side ? 0 : static_cast<std::size_t>(shape.heads * n) * row, stream);
  DeviceBuffer others(one_side ? 0 : static_cast<std::size_t>(shape.heads * (shape.tokens - n)) * row, stream);
  if (!one_side) {
    const DeviceBuffer slots = device_slots(out, shape.tokens, stream);
    const mixed_token_cuda::Split split{slots.as<std::int32_t>(), shape.heads, shape.tokens, n, shape.channels * es};
    mixed_token_cuda::gather(split, in.data, static_cast<int>(es), kept.data(), others.data(), stream);
  }
  void* const kept_data = one_side ? in.data : kept.data();
  void* const others_data = one_side ? in.data : others.data();

  std::uint8_t* cursor = out + section.size();
  for_each_side(*protected_, *rest_, prot, rest, shape, ctx, [&](const Side& s) {
    void* const part = s.is_protected ? kept_data : others_data;
    s.child.encode_view(composite::device_part(part, in.dtype, s.shape), s.ctx, cursor, ex);
    cursor += s.child.layout(s.shape, s.ctx).bytes();
  });
}

void MixedTokenQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx,
                                      const TensorView& out, const Execution& call) const {
  void* stream = call.cuda_stream;
  const Execution ex = call.with_independence(false);  // the children's: in stream order, without the call's promise
  const std::int64_t n = protected_count(shape.tokens, ctx);
  // Synchronises the stream (see the header): the protected set is needed on the host.
  std::vector<std::uint8_t> section(mixed_token_format::mask_bytes(static_cast<std::size_t>(shape.tokens)));
  copy_to_host(section.data(), in, section.size(), stream);
  const std::vector<std::int32_t> prot = stored_protected(section.data(), shape.tokens, n);
  const std::vector<std::int32_t> rest = complement(prot, shape.tokens);

  // The children decode into blocks of the output's dtype (their decode_view rounds the fp32 reconstruction once,
  // as the CPU path does after its fp32 scatter); the scatter moves the rows unchanged. With every token on one
  // side, that child decodes straight into the output.
  const bool one_side = n == 0 || n == shape.tokens;
  const std::int64_t es = dtype_size(out.dtype);
  const std::size_t row = static_cast<std::size_t>(shape.channels * es);
  DeviceBuffer kept(one_side ? 0 : static_cast<std::size_t>(shape.heads * n) * row, stream);
  DeviceBuffer others(one_side ? 0 : static_cast<std::size_t>(shape.heads * (shape.tokens - n)) * row, stream);
  void* const kept_data = one_side ? out.data : kept.data();
  void* const others_data = one_side ? out.data : others.data();
  const std::uint8_t* cursor = in + section.size();
  for_each_side(*protected_, *rest_, prot, rest, shape, ctx, [&](const Side& s) {
    void* const part = s.is_protected ? kept_data : others_data;
    s.child.decode_view(cursor, s.ctx, composite::device_part(part, out.dtype, s.shape), ex);
    cursor += s.child.layout(s.shape, s.ctx).bytes();
  });
  if (one_side) return;
  const DeviceBuffer slots = device_slots(in, shape.tokens, stream);
  const mixed_token_cuda::Split split{slots.as<std::int32_t>(), shape.heads, shape.tokens, n, shape.channels * es};
  mixed_token_cuda::scatter(split, kept.data(), others.data(), static_cast<int>(es), out.data, stream);
}

#endif  // VIDKV_WITH_CUDA

void register_mixed_token(PluginRegistry& registry) {
  registry.add<MixedTokenQuantizer>(
      "mixed_token", "splits tokens with a protector: protected tokens by `protected`, the others by `rest` (VidKV STP values)");
}

}  // namespace vidkv
