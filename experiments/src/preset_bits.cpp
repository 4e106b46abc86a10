#include "vidkv/experiments/src/preset_bits.h"

#include <cstdio>
#include <sstream>

#include "vidkv/core/bits_accounting.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/presets.h"

namespace vidkv {

std::vector<PresetBits> preset_bits_table(const BlockShape& shape, const PluginRegistry& registry) {
  TraceTokens tokens = TraceTokens::uniform(shape.tokens, Modality::visual);
  const std::int64_t edge = std::max<std::int64_t>(1, shape.tokens / 64);
  for (std::int64_t i = 0; i < edge && i < shape.tokens; ++i) {
    tokens.modality[static_cast<std::size_t>(i)] = Modality::system_text;
    tokens.modality[static_cast<std::size_t>(shape.tokens - 1 - i)] = Modality::query_text;
  }
  TokenContext ctx;
  ctx.tokens = &tokens;
  std::vector<PresetBits> out;
  for (const auto& p : list_presets()) {
    ConfigNode codec = ConfigNode::map({p.path, 0, 0});
    codec.set("preset", ConfigNode::scalar(p.name, {p.path, 0, 0}));
    const ConfigNode resolved = resolve_codec(codec, registry);
    const PackedLayout k = registry.make_quantizer(resolved.at("key"))->layout(shape, ctx);
    const PackedLayout v = registry.make_quantizer(resolved.at("value"))->layout(shape, ctx);
    // K and V as trace replay accounts them (core/bits_accounting.h); the compression ratio is not shown here.
    const BitsAccount a = account_bits(StoredBits::of(k), StoredBits::of(v), DType::f16);
    out.push_back({p.name, a.key_nominal_bits, a.key_effective_bits, a.value_nominal_bits, a.value_effective_bits,
                   a.nominal_bits, a.effective_bits});
  }
  return out;
}

std::string preset_bits_markdown(const std::vector<PresetBits>& rows, const BlockShape& shape) {
  std::ostringstream out;
  out << "Bits per element of one layer block " << shape.str()
      << " (quantized region; the lifecycle's full-precision residual is not included).\n\n"
      << "| preset | K nominal | K effective | V nominal | V effective | K+V nominal | K+V effective |\n"
      << "| --- | --- | --- | --- | --- | --- | --- |\n";
  for (const auto& r : rows) {
    char buf[256];
    std::snprintf(buf, sizeof buf, "| %s | %.3f | %.3f | %.3f | %.3f | %.3f | %.3f |\n", r.preset.c_str(), r.key_nominal,
                  r.key_effective, r.value_nominal, r.value_effective, r.kv_nominal, r.kv_effective);
    out << buf;
  }
  return out.str();
}

}  // namespace vidkv
