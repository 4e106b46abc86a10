// skeleton_absmax: the quantizer skeleton of docs/writing-a-plugin.md, a whole plugin in one file.
//
// Symmetric per-token absmax quantization: each row (one token of one KV head, `channels` values) stores its
// scale s = max |x| / (2^(bits-1) - 1) as fp32 and one signed code q = round(x / s) per value, clamped to
// [-(2^(bits-1) - 1), 2^(bits-1) - 1], one byte each (unpacked, to keep the skeleton short: effective bits are
// 8 + 32 / channels, nominal bits `bits`). decode: x' = q * s. A row of zeros stores s = 0 and decodes to zeros.
// Rounding: std::nearbyint (round half to even, the default FP environment).
//
// Packed layout, block [heads, tokens, channels] fp32: section "scales" (heads * tokens fp32, little-endian), then
// section "codes" (heads * tokens * channels int8), both in block order.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vidkv/core/plugin_abi.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"

namespace {

struct SkeletonAbsmaxParams {
  int bits = 4;

  template <class B>
  static void bind(B& b) {
    b.integer("bits", &SkeletonAbsmaxParams::bits, 2, 8, "bits", "code bits per value (symmetric, 2^(bits-1)-1 levels each side)");
  }
};

class SkeletonAbsmaxQuantizer : public vidkv::Quantizer {
 public:
  using Params = SkeletonAbsmaxParams;
  explicit SkeletonAbsmaxQuantizer(const Params& params) : params_(params) { set_plugin_name("skeleton_absmax"); }

  vidkv::PackedLayout layout(const vidkv::BlockShape& shape, const vidkv::TokenContext&) const override {
    const std::size_t rows = std::size_t(shape.heads * shape.tokens);
    vidkv::PackedLayout l(shape.elements(), params_.bits);
    l.add("scales", vidkv::SectionKind::scales, rows * sizeof(float));
    l.add("codes", vidkv::SectionKind::codes, std::size_t(shape.elements()));
    return l;
  }

  void encode(const float* in, const vidkv::BlockShape& shape, const vidkv::TokenContext&,
              std::uint8_t* out) const override {
    const std::int64_t rows = shape.heads * shape.tokens, c = shape.channels;
    const float top = float((1 << (params_.bits - 1)) - 1);
    std::uint8_t* codes = out + rows * sizeof(float);
    for (std::int64_t r = 0; r < rows; ++r) {
      float amax = 0.0f;
      for (std::int64_t i = 0; i < c; ++i) amax = std::max(amax, std::fabs(in[r * c + i]));
      const float s = amax / top;
      std::memcpy(out + r * sizeof(float), &s, sizeof(float));
      for (std::int64_t i = 0; i < c; ++i) {
        const float q = s > 0.0f ? std::clamp(std::nearbyint(in[r * c + i] / s), -top, top) : 0.0f;
        codes[r * c + i] = static_cast<std::uint8_t>(static_cast<std::int8_t>(q));
      }
    }
  }

  void decode(const std::uint8_t* in, const vidkv::BlockShape& shape, const vidkv::TokenContext&,
              float* out) const override {
    const std::int64_t rows = shape.heads * shape.tokens, c = shape.channels;
    const std::uint8_t* codes = in + rows * sizeof(float);
    for (std::int64_t r = 0; r < rows; ++r) {
      float s;
      std::memcpy(&s, in + r * sizeof(float), sizeof(float));
      for (std::int64_t i = 0; i < c; ++i) out[r * c + i] = float(static_cast<std::int8_t>(codes[r * c + i])) * s;
    }
  }

 private:
  Params params_;
};

}  // namespace

VIDKV_PLUGIN_ENTRY(registry) {
  registry.add<SkeletonAbsmaxQuantizer>("skeleton_absmax", "symmetric per-token absmax, fp32 scale + one int8 code per value (plugin skeleton)");
}
