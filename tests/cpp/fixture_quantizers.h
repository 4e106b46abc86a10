// Test fixtures: two tiny, fully specified quantizers that composites and lifecycles are tested with until (and
// besides) the primitive quantizers. They are real Quantizer implementations with hand-checkable bytes, registered
// only in test-local registries, never shipped.
//
//  half_step  code = nearbyint(2 x) clamped to int8 (ties to even), one byte per element, decode code / 2.
//             Layout: "codes" heads * tokens * channels bytes. Nominal bits: parameter `nominal` (default 8).
//  mean_sign  per head: s = mean |x| over the head's [tokens, channels] slab (fp32, 4 bytes, little-endian) and one
//             bit per element (1 if x >= 0, dense bitstream), decode +s / -s.
//             Layout: "scales" 4 * heads bytes, then "codes" heads * ceil(tokens * channels / 8) bytes. Nominal 1.
//  wide_blocks_only  half_step refusing blocks of fewer than min_channels channels (supports()).
#pragma once

#include <cmath>
#include <cstring>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/bit_packing.h"
#include "vidkv/core/config_node.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"

namespace vidkv::test {

class HalfStepQuantizer : public Quantizer {
 public:
  struct Params {
    double nominal = 8;
    template <class B>
    static void bind(B& b) { b.real("nominal", &Params::nominal, 0, 64, "bits", "nominal bits reported"); }
  };
  explicit HalfStepQuantizer(const Params& p) : p_(p) {}
  PackedLayout layout(const BlockShape& shape, const TokenContext&) const override {
    PackedLayout l(shape.elements(), p_.nominal);
    l.add("codes", SectionKind::codes, static_cast<std::size_t>(shape.elements()));
    return l;
  }
  void encode(const float* in, const BlockShape& shape, const TokenContext&, std::uint8_t* out) const override {
    for (std::int64_t i = 0; i < shape.elements(); ++i) {
      const float c = std::fmin(127.0f, std::fmax(-128.0f, std::nearbyint(2.0f * in[i])));
      out[i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(c));
    }
  }
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const override {
    for (std::int64_t i = 0; i < shape.elements(); ++i) out[i] = static_cast<float>(static_cast<std::int8_t>(in[i])) / 2.0f;
  }

 private:
  Params p_;
};

class MeanSignQuantizer : public Quantizer {
 public:
  struct Params {
    template <class B>
    static void bind(B&) {}
  };
  explicit MeanSignQuantizer(const Params&) {}
  PackedLayout layout(const BlockShape& shape, const TokenContext&) const override {
    PackedLayout l(shape.elements(), 1.0);
    l.add("scales", SectionKind::scales, 4 * static_cast<std::size_t>(shape.heads));
    l.add("codes", SectionKind::codes, static_cast<std::size_t>(shape.heads) * bits::dense_bytes(static_cast<std::size_t>(shape.slab_elements()), 1));
    return l;
  }
  void encode(const float* in, const BlockShape& shape, const TokenContext&, std::uint8_t* out) const override {
    const std::size_t per = bits::dense_bytes(static_cast<std::size_t>(shape.slab_elements()), 1);
    std::uint8_t* codes = out + 4 * shape.heads;
    std::memset(codes, 0, per * static_cast<std::size_t>(shape.heads));
    for (std::int64_t h = 0; h < shape.heads; ++h) {
      const float* x = in + h * shape.slab_elements();
      double sum = 0;
      for (std::int64_t i = 0; i < shape.slab_elements(); ++i) sum += std::fabs(x[i]);
      const float s = shape.slab_elements() ? static_cast<float>(sum / static_cast<double>(shape.slab_elements())) : 0.0f;
      std::memcpy(out + 4 * h, &s, 4);  // little-endian hosts only (x86-64, aarch64)
      for (std::int64_t i = 0; i < shape.slab_elements(); ++i)
        if (x[i] >= 0) bits::dense_put(codes + per * static_cast<std::size_t>(h), static_cast<std::size_t>(i), 1, 1u);
    }
  }
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const override {
    const std::size_t per = bits::dense_bytes(static_cast<std::size_t>(shape.slab_elements()), 1);
    const std::uint8_t* codes = in + 4 * shape.heads;
    for (std::int64_t h = 0; h < shape.heads; ++h) {
      float s;
      std::memcpy(&s, in + 4 * h, 4);
      for (std::int64_t i = 0; i < shape.slab_elements(); ++i)
        out[h * shape.slab_elements() + i] = bits::dense_get(codes + per * static_cast<std::size_t>(h), static_cast<std::size_t>(i), 1) ? s : -s;
    }
  }
};

// half_step that refuses blocks of fewer channels than `min_channels` (default 64): a plugin whose default group or
// block size is larger than some blocks. supports() says why; layout() throws, as the contract asks.
class WideBlocksOnlyQuantizer : public HalfStepQuantizer {
 public:
  struct Params {
    int min_channels = 64;
    template <class B>
    static void bind(B& b) { b.integer("min_channels", &Params::min_channels, 1, 4096, "", "fewest channels taken"); }
  };
  explicit WideBlocksOnlyQuantizer(const Params& p) : HalfStepQuantizer(HalfStepQuantizer::Params{}), min_(p.min_channels) {}
  bool supports(Device device, const BlockShape& shape, std::string* why) const override {
    if (shape.channels >= min_) return Quantizer::supports(device, shape, why);
    if (why) *why = "fewer than " + std::to_string(min_) + " channels";
    return false;
  }
  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override {
    if (shape.channels < min_) throw ShapeError("wide_blocks_only: " + shape.str() + " has fewer than " + std::to_string(min_) + " channels");
    return HalfStepQuantizer::layout(shape, ctx);
  }

 private:
  int min_;
};

// A registry with the fixtures and every built-in selector, protector and composite.
inline PluginRegistry fixture_registry() {
  PluginRegistry r;
  register_builtin_plugins(r);
  r.add<HalfStepQuantizer>("half_step", "test fixture: multiples of 0.5 in int8");
  r.add<MeanSignQuantizer>("mean_sign", "test fixture: sign times mean |x| per head");
  r.add<WideBlocksOnlyQuantizer>("wide_blocks_only", "test fixture: refuses blocks narrower than min_channels");
  return r;
}

// Config-node builders: scalar("2"), map({{"type", scalar("half_step")}, ...}).
inline ConfigNode scalar(const std::string& text) { return ConfigNode::scalar(text); }
inline ConfigNode map(std::initializer_list<std::pair<std::string, ConfigNode>> entries) {
  ConfigNode n = ConfigNode::map();
  for (const auto& [k, v] : entries) n.set(k, v);
  return n;
}

// Encodes into a buffer with 16 guard bytes (0xA5) on each side; checks the guards and returns the payload.
inline std::vector<std::uint8_t> encode_guarded(const Quantizer& q, const float* in, const BlockShape& shape,
                                                const TokenContext& ctx, bool* guards_intact) {
  const std::size_t n = q.layout(shape, ctx).bytes();
  std::vector<std::uint8_t> buf(n + 32, 0xA5);
  q.encode(in, shape, ctx, buf.data() + 16);
  bool ok = true;
  for (std::size_t i = 0; i < 16; ++i) ok = ok && buf[i] == 0xA5 && buf[n + 16 + i] == 0xA5;
  *guards_intact = ok;
  return std::vector<std::uint8_t>(buf.begin() + 16, buf.begin() + 16 + static_cast<std::ptrdiff_t>(n));
}

}  // namespace vidkv::test
