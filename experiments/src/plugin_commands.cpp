// `vidkv plugins list`, `vidkv plugins describe NAME` and `vidkv presets bits`.
#include <CLI/CLI.hpp>

#include <cstdio>
#include <iostream>
#include <memory>

#include "vidkv/core/error.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/preset_bits.h"
#include "vidkv/experiments/src/presets.h"

namespace vidkv::cli {

namespace {

int plugins_list() {
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

int plugins_describe(const std::string& name) {
  const auto& reg = builtin_registry();
  const PluginInfo* info = reg.find(name);
  if (!info) {
    std::vector<std::string> all;
    for (const auto& i : reg.list()) all.push_back(i.name);
    auto near = closest_names(name, all);
    VIDKV_THROW(ConfigError, "unknown plugin '", name, "'", near.empty() ? "" : " (did you mean '" + near[0] + "'?)",
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

int presets_bits(const std::string& shape_text) {
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
  out.push_back({{"plugins", "list"}, "list every registered quantizer, channel selector, token protector and preset",
                 "Lists every registered plugin by family with a one-line summary, then the presets.",
                 [](CLI::App&) -> Action { return [](const Args&) { return plugins_list(); }; }});
  out.push_back({{"plugins", "describe"}, "every parameter of a plugin: type, default, range, description",
                 "Prints the config block that builds the plugin and each parameter with type, default, valid range or\n"
                 "choices, unit and description. Unknown keys in a block are errors.\n"
                 "Example: vidkv plugins describe uniform",
                 [](CLI::App& app) -> Action {
                   auto name = std::make_shared<std::string>();
                   app.add_option("NAME", *name, "a plugin name (vidkv plugins list)")->required();
                   return [name](const Args&) { return plugins_describe(*name); };
                 }});
  out.push_back({{"presets", "bits"}, "nominal and effective bits of every preset, from the packed layouts",
                 "Builds each preset's key and value codec and prints the bits of its packed layout for one layer block:\n"
                 "nominal bits (paper convention, code bits only) and effective bits (8 x stored bytes / elements:\n"
                 "codes, scales, zero points, masks). docs/bits.md is this command's output.",
                 [](CLI::App& app) -> Action {
                   auto shape = std::make_shared<std::string>("4x8192x128");
                   app.add_option("--shape", *shape, "one layer block, HEADSxTOKENSxCHANNELS (default: a 7B VideoLLM layer)")
                       ->type_name("HxTxC")
                       ->capture_default_str();
                   return [shape](const Args&) { return presets_bits(*shape); };
                 }});
}

}  // namespace vidkv::cli
