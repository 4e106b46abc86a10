// Nominal and effective bits of every preset, computed from the packed layouts (never declared).
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/tensor_view.h"

namespace vidkv {

struct PresetBits {
  std::string preset;
  double key_nominal = 0, key_effective = 0;
  double value_nominal = 0, value_effective = 0;
  double kv_nominal = 0, kv_effective = 0;  // K and V together: element-weighted
};

// Layout of each preset's key and value codec for one layer block of `shape` whose tokens are laid out like a
// video prompt: 1/64 system text, then visual tokens, then 1/64 query text (so token protectors have candidates).
// Quantized region only: the lifecycle's full-precision residual is not counted here (it is in run results).
std::vector<PresetBits> preset_bits_table(const BlockShape& shape, const PluginRegistry& registry);
std::string preset_bits_markdown(const std::vector<PresetBits>& rows, const BlockShape& shape);

}  // namespace vidkv
