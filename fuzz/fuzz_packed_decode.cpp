// libFuzzer target: corrupt packed blocks through every packed-format decoder. The input picks a quantizer
// configuration (every registered quantizer with its defaults, the extra configurations of the conformance test,
// and the key and value block of every preset), a block shape and token metadata; the rest of the input is the
// packed block, cut or zero-padded to the layout's size and placed in a heap buffer of exactly that size, so
// AddressSanitizer reports any read past it. decode_checked (core/checked_decode.h) must end in a vidkv::Error or
// finite values. Every sixth input is passed at its own length, which decode_checked must refuse unless it is the
// layout's size. Seeds: fuzz/corpus/fuzz_packed_decode (encoded blocks of each configuration).
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/checked_decode.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/presets.h"

namespace {

using vidkv::ConfigNode;

ConfigNode block(const std::string& name, const std::vector<std::pair<std::string, std::string>>& params) {
  ConfigNode n = ConfigNode::map({"fuzz", 1, 1});
  n.set("type", ConfigNode::scalar(name, {"fuzz", 1, 1}));
  for (const auto& [k, v] : params) n.set(k, ConfigNode::scalar(v, {"fuzz", 1, 1}));
  return n;
}

std::vector<std::unique_ptr<vidkv::Quantizer>>& quantizers() {
  static std::vector<std::unique_ptr<vidkv::Quantizer>> all = [] {
    std::vector<std::unique_ptr<vidkv::Quantizer>> out;
    static const vidkv::PluginRegistry reg = vidkv::builtin_plugin_registry();
    std::vector<ConfigNode> blocks;
    for (const auto& name : reg.names(vidkv::PluginFamily::quantizer)) blocks.push_back(block(name, {}));
    const std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>> extra{
        {"identity", {{"dtype", "bf16"}}},
        {"identity", {{"dtype", "fp32"}}},
        {"uniform", {{"bits", "1"}}},
        {"uniform", {{"bits", "3"}, {"group", "7"}}},
        {"uniform", {{"bits", "4"}, {"axis", "token"}}},
        {"uniform", {{"bits", "8"}, {"scale_dtype", "fp32"}}},
        {"uniform", {{"bits", "2"}, {"layout", "release"}}},
        {"uniform", {{"bits", "4"}, {"layout", "release"}, {"axis", "token"}}},
        {"sign", {{"axis", "token"}}},
        {"sign", {{"reconstruction", "symmetric"}, {"group", "7"}}},
        {"sign", {{"fft", "complex"}}},
        {"sign", {{"fft", "real"}}},
        {"sign", {{"fft", "complex"}, {"layout", "release"}}},
        {"ternary", {{"packing", "slots2"}}},
        {"ternary", {{"packing", "release"}, {"gamma", "0.5"}}},
        {"ternary", {{"reconstruction", "scaled"}, {"group", "5"}}},
    };
    for (const auto& [name, params] : extra)
      if (reg.find(vidkv::PluginFamily::quantizer, name)) blocks.push_back(block(name, params));
    for (const auto& preset : vidkv::list_presets()) {
      ConfigNode codec = ConfigNode::map({"fuzz", 1, 1});
      codec.set("preset", ConfigNode::scalar(preset.name, {"fuzz", 1, 1}));
      const ConfigNode resolved = vidkv::resolve_codec(codec, reg);
      for (const char* side : {"key", "value"})
        if (const ConfigNode* b = resolved.find(side)) blocks.push_back(*b);
    }
    for (const auto& b : blocks) out.push_back(reg.make_quantizer(b));
    return out;
  }();
  return all;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 6) return 0;
  auto& qs = quantizers();
  const vidkv::Quantizer& q = *qs[data[0] % qs.size()];
  const vidkv::BlockShape shape{1 + data[1] % 3, 1 + data[2] % 80, 1 + data[3] % 160};
  // Tokens: system text, a span of visual tokens (frames of 2 x 2 patches), query text; split points from data[4].
  vidkv::TraceTokens tokens = vidkv::TraceTokens::uniform(shape.tokens, vidkv::Modality::system_text);
  const std::int64_t a = shape.tokens * (data[4] & 15) / 16, b = a + (shape.tokens - a) * (data[4] >> 4) / 16;
  for (std::int64_t i = a; i < shape.tokens; ++i) {
    const auto u = static_cast<std::size_t>(i);
    const bool visual = i < b;
    tokens.modality[u] = visual ? vidkv::Modality::visual : vidkv::Modality::query_text;
    if (visual) {
      tokens.frame[u] = static_cast<std::int32_t>((i - a) / 4);
      tokens.patch_row[u] = static_cast<std::int16_t>((i - a) % 4 / 2);
      tokens.patch_col[u] = static_cast<std::int16_t>((i - a) % 2);
    }
  }
  vidkv::TokenContext ctx;
  ctx.layer = data[5] % 4;
  ctx.tokens = &tokens;
  ctx.seed = data[5];
  std::size_t bytes = 0;
  try {
    if (!q.supports(vidkv::Device::cpu, shape)) return 0;
    bytes = q.layout(shape, ctx).bytes();
  } catch (const vidkv::Error&) {
    return 0;
  }
  const std::uint8_t* blob = data + 6;
  const std::size_t blob_size = size - 6;
  const bool own_length = data[5] % 6 == 5;
  const std::size_t n = own_length ? blob_size : bytes;
  std::unique_ptr<std::uint8_t[]> in(new std::uint8_t[n ? n : 1]);
  std::memset(in.get(), 0, n);
  std::memcpy(in.get(), blob, std::min(n, blob_size));
  std::vector<float> out(static_cast<std::size_t>(shape.elements()));
  try {
    vidkv::decode_checked(q, in.get(), n, shape, ctx, out.data(), out.size());
    if (n != bytes) __builtin_trap();  // a wrong length must be refused
  } catch (const vidkv::Error&) {
  }
  return 0;
}
