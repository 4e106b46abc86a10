// Codec presets: YAML files experiments/presets/NAME.yaml, each {description, codec: {key, value}, lifecycle}.
// Variants that differ only in parameters are presets, not code (gem5 habit).
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "vidkv/core/config_node.h"

namespace vidkv {

struct PresetInfo {
  std::string name;
  std::string description;
  std::string path;
};

// The preset folder: $VIDKV_PRESETS_DIR if set, else experiments/presets of the source tree this binary was built
// from, else experiments/presets under the current directory.
std::string presets_dir();
std::vector<PresetInfo> list_presets();
// Longest preset name looked up as a file (NAME.yaml within a file system's 255-byte name limit, with room).
constexpr std::size_t kMaxPresetNameBytes = 200;
// The preset document {description, codec, lifecycle}. Unknown names, and names no preset file can have (a '/', a
// NUL, over kMaxPresetNameBytes), are ConfigErrors located at `where` (the `preset:` value) with the closest valid
// name and the list.
ConfigNode load_preset(const std::string& name, const ConfigNode& where);

}  // namespace vidkv
