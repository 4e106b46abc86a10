// `vidkv plugins list` and `vidkv plugins describe NAME`.
#include <cstdio>
#include <iostream>

#include "vidkv/core/error.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/preset_bits.h"
#include "vidkv/experiments/src/presets.h"

namespace vidkv::cli {

namespace {

int plugins_list(const Args& args) {
  reject_unknown_options(args, "vidkv plugins list");
  const auto& reg = builtin_registry();
  std::string family;
  for (const auto& info : reg.list()) {
    if (family != plugin_family_name(info.family)) {
      family = plugin_family_name(info.family);
      std::cout << (family == "quantizer" ? "" : "\n") << family << "s:\n";
    }
    std::printf("  %-22s %s\n", info.name.c_str(), info.summary.c_str());
  }
  std::cout << "\npresets (experiments/presets; use as codec: {preset: NAME}):\n";
  for (const auto& p : list_presets()) std::printf("  %-22s %s\n", p.name.c_str(), p.description.c_str());
  return 0;
}

std::string range_text(const ParamSpec& p) {
  switch (p.type) {
    case ParamType::integer:
    case ParamType::real: return "[" + format_number(p.min) + ", " + format_number(p.max) + "]";
    case ParamType::boolean: return "true | false";
    case ParamType::choice: {
      std::string s;
      for (const auto& c : p.choices) s += (s.empty() ? "" : " | ") + c;
      return s;
    }
    case ParamType::block: return std::string("a ") + p.block_family + " block";
  }
  return "";
}

int plugins_describe(const Args& args_in) {
  Args args = args_in;
  reject_unknown_options(args, "vidkv plugins describe");
  if (args.size() != 1) VIDKV_THROW(ConfigError, "usage: vidkv plugins describe NAME (see vidkv plugins list)");
  const auto& reg = builtin_registry();
  const PluginInfo* info = reg.find(args[0]);
  if (!info) {
    std::vector<std::string> all;
    for (const auto& i : reg.list()) all.push_back(i.name);
    auto near = closest_names(args[0], all);
    VIDKV_THROW(ConfigError, "unknown plugin '", args[0], "'", near.empty() ? "" : " (did you mean '" + near[0] + "'?)",
                "; see vidkv plugins list");
  }
  std::cout << info->name << " (" << plugin_family_name(info->family) << "): " << info->summary << "\n";
  std::cout << "config block: {" << plugin_type_key(info->family) << ": " << info->name << ", ...}\n\n";
  std::printf("  %-16s %-7s %-14s %-26s %s\n", "parameter", "type", "default", "range", "description");
  for (const auto& p : info->params) {
    std::string desc = p.description + (p.unit.empty() ? "" : " [" + p.unit + "]");
    std::printf("  %-16s %-7s %-14s %-26s %s\n", p.name.c_str(), param_type_name(p.type).c_str(),
                p.default_text.empty() ? "-" : p.default_text.c_str(), range_text(p).c_str(), desc.c_str());
  }
  return 0;
}

int presets_bits(const Args& args_in) {
  Args args = args_in;
  std::string shape_text = "4x8192x128";
  take_option(args, "--shape", shape_text);
  reject_unknown_options(args, "vidkv presets bits");
  if (!args.empty()) VIDKV_THROW(ConfigError, "usage: vidkv presets bits [--shape HEADSxTOKENSxCHANNELS]");
  long long h = 0, t = 0, c = 0;
  char tail = 0;
  if (std::sscanf(shape_text.c_str(), "%lldx%lldx%lld%c", &h, &t, &c, &tail) != 3 || h <= 0 || t <= 0 || c <= 0)
    VIDKV_THROW(ConfigError, "--shape: expected HEADSxTOKENSxCHANNELS with positive sizes, got '", shape_text, "'");
  const BlockShape shape{h, t, c};
  std::cout << preset_bits_markdown(preset_bits_table(shape, builtin_registry()), shape);
  return 0;
}

}  // namespace

void add_plugin_commands(std::vector<Command>& out) {
  out.push_back({{"plugins", "list"}, "vidkv plugins list", "list every registered quantizer, channel selector and token protector",
                 "Lists every registered plugin by family with a one-line summary.", plugins_list});
  out.push_back({{"plugins", "describe"}, "vidkv plugins describe NAME", "every parameter of a plugin: type, default, range, description",
                 "Prints the config block that builds the plugin and each parameter with type, default, valid range or\n"
                 "choices, unit and description. Unknown keys in a block are errors.",
                 plugins_describe});
  out.push_back({{"presets", "bits"}, "vidkv presets bits [--shape HEADSxTOKENSxCHANNELS]",
                 "nominal and effective bits of every preset, from the packed layouts",
                 "Builds each preset's key and value codec and prints the bits of its packed layout for one layer block\n"
                 "(default 4x8192x128, a 7B VideoLLM layer): nominal bits (paper convention, code bits only) and\n"
                 "effective bits (8 x stored bytes / elements: codes, scales, zero points, masks). docs/bits.md is this\n"
                 "command's output.",
                 presets_bits});
}

}  // namespace vidkv::cli
