#include "vidkv/experiments/src/presets.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"
#include "vidkv/experiments/src/yaml_config.h"

namespace fs = std::filesystem;

namespace vidkv {

std::string presets_dir() {
  if (const char* env = std::getenv("VIDKV_PRESETS_DIR"); env && *env) return env;
#ifdef VIDKV_SOURCE_DIR
  const fs::path built = fs::path(VIDKV_SOURCE_DIR) / "experiments" / "presets";
  if (fs::is_directory(built)) return built.string();
#endif
  return (fs::current_path() / "experiments" / "presets").string();
}

std::vector<PresetInfo> list_presets() {
  std::vector<PresetInfo> out;
  const fs::path dir = presets_dir();
  if (!fs::is_directory(dir)) return out;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    PresetInfo info{entry.path().stem().string(), "", entry.path().string()};
    ConfigNode doc = load_yaml_file(info.path);
    if (const ConfigNode* d = doc.find("description"); d && d->is_scalar()) info.description = d->text();
    out.push_back(std::move(info));
  }
  std::sort(out.begin(), out.end(), [](const PresetInfo& a, const PresetInfo& b) { return a.name < b.name; });
  return out;
}

ConfigNode load_preset(const std::string& name, const ConfigNode& where) {
  const fs::path file = fs::path(presets_dir()) / (name + ".yaml");
  // A name no file can have (a '/', a NUL, longer than a file name may be) is unknown like any other, never a
  // file-system error (std::filesystem throws ENAMETOOLONG for a 300-byte name: found by fuzz_experiment_yaml).
  std::error_code ec;
  const bool plausible = name.size() <= kMaxPresetNameBytes && name.find('/') == std::string::npos &&
                         name.find('\0') == std::string::npos;
  if (!plausible || !fs::is_regular_file(file, ec)) {
    std::vector<std::string> names;
    for (const auto& p : list_presets()) names.push_back(p.name);
    const std::string valid = join_names(names);
    const std::string shown = name.size() <= 80 ? name : name.substr(0, 80) + "... (" + std::to_string(name.size()) + " bytes)";
    where.fail("unknown preset '" + shown + "'" + did_you_mean(name, names) +
               "; valid: " + (valid.empty() ? "none found in " + presets_dir() : valid) + " (read from " +
               presets_dir() + ", VIDKV_PRESETS_DIR)");
  }
  ConfigNode doc = load_yaml_file(file.string());
  if (!doc.is_map() || !doc.find("codec")) throw ConfigError(file.string() + ": a preset needs a 'codec:' block");
  for (const auto& [key, value] : doc.entries()) {
    if (key != "description" && key != "codec" && key != "lifecycle")
      value.fail_at_key("unknown key '" + key + "' in preset (valid: description, codec, lifecycle)");
  }
  return doc;
}

}  // namespace vidkv
