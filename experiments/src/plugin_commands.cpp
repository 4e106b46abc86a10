// `vidkv plugins list`, `vidkv plugins describe NAME` and `vidkv presets bits`.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <array>

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/core/plugin_library.h"
#include "vidkv/experiments/src/plugin_conformance.h"
#include "vidkv/experiments/src/plugin_loading.h"
#include "vidkv/experiments/src/preset_bits.h"
#include "vidkv/experiments/src/presets.h"

namespace vidkv::cli {

namespace {

PluginRegistry user_registry(const std::vector<std::string>& plugins) {
  PluginRegistry reg = builtin_plugin_registry();
  load_user_plugins(reg, plugins);
  return reg;
}

int plugins_list(const std::vector<std::string>& plugins) {
  const PluginRegistry reg = user_registry(plugins);
  std::string family;
  for (const auto& info : reg.list()) {
    if (family != plugin_family_name(info.family)) {
      family = plugin_family_name(info.family);
      std::cout << (family == "quantizer" ? "" : "\n") << family << "s:\n";
    }
    std::printf("  %-22s %s%s\n", info.name.c_str(), info.summary.c_str(),
                info.origin == "built-in" ? "" : (" [" + info.origin + "]").c_str());
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
    case ParamType::choice: return join_names(p.choices, " | ");
    case ParamType::block: return std::string("a ") + p.block_family + " block";
  }
  return "";
}

// Every plugin of that name (names are scoped by family, so a quantizer and a selector may share one).
int plugins_describe(const std::string& name, const std::vector<std::string>& plugins) {
  const PluginRegistry reg = user_registry(plugins);
  std::vector<PluginInfo> found, all;
  for (const auto& i : reg.list()) {
    all.push_back(i);
    if (i.name == name) found.push_back(i);
  }
  if (found.empty()) {
    for (const PresetInfo& p : list_presets())
      if (p.name == name)
        VIDKV_THROW(ConfigError, "'", name, "' is a preset, not a plugin: its key and value blocks are in ", p.path,
                    " (use it as codec: {preset: ", name, "}; vidkv presets bits lists its bits)");
    std::vector<std::string> names;
    for (const auto& i : all) names.push_back(i.name);
    VIDKV_THROW(ConfigError, "unknown plugin '", name, "'", did_you_mean(name, names), "; see vidkv plugins list");
  }
  for (const PluginInfo& info : found) {
    if (&info != &found.front()) std::cout << "\n";
    std::cout << info.name << " (" << plugin_family_name(info.family) << "): " << info.summary << "\n";
    std::cout << "config block: {" << kPluginTypeKey << ": " << info.name << ", ...}\n\n";
    // The table's cells, then each column as wide as its widest cell (a long choice list widens its column
    // instead of pushing that row's description out of line).
    std::vector<std::array<std::string, 5>> rows{{"parameter", "type", "default", "range", "description"}};
    for (const auto& p : info.params)
      rows.push_back({p.name, param_type_name(p.type), p.default_text.empty() ? "-" : p.default_text, range_text(p),
                      p.description + (p.unit.empty() ? "" : " [" + p.unit + "]")});
    std::array<std::size_t, 4> width{};
    for (const auto& row : rows)
      for (std::size_t i = 0; i < width.size(); ++i) width[i] = std::max(width[i], row[i].size());
    for (const auto& row : rows) {
      std::cout << " ";
      for (std::size_t i = 0; i < width.size(); ++i) std::cout << " " << row[i] << std::string(width[i] - row[i].size(), ' ');
      std::cout << " " << row[4] << "\n";
    }
  }
  return 0;
}

int presets_bits(const std::string& shape_text) {
  long long h = 0, t = 0, c = 0;
  char tail = 0;
  if (std::sscanf(shape_text.c_str(), "%lldx%lldx%lld%c", &h, &t, &c, &tail) != 3 || h <= 0 || t <= 0 || c <= 0)
    VIDKV_THROW(ConfigError, "--shape: expected HEADSxTOKENSxCHANNELS with positive sizes, got '", shape_text, "'");
  const BlockShape shape{h, t, c};
  std::cout << preset_bits_markdown(preset_bits_table(shape, builtin_plugin_registry()), shape);
  return 0;
}

// `vidkv plugins check LIB`: the conformance suite (plugin_conformance.h) on every plugin LIB registers, or with
// --builtin on every built-in plugin; one line per plugin and check. Exit status 1 when a check failed.
// library and / or builtin: the command line refuses neither (a usage error, parse_complete_callback below).
int plugins_check(const std::string& library, bool builtin) {
  PluginRegistry reg = builtin_plugin_registry();
  std::vector<PluginInfo> which;
  if (!library.empty()) {
    const std::string canonical = load_plugin_file(reg, library);
    for (const auto& info : reg.list())
      if (info.origin == canonical) which.push_back(info);
    if (which.empty()) VIDKV_THROW(ConfigError, "plugin library '", library, "' registered no plugin");
  }
  if (builtin)
    for (const auto& info : reg.list())
      if (info.origin == "built-in") which.push_back(info);
  const auto checks = check_plugins(reg, which);
  std::size_t failed = 0, skipped = 0;
  std::string plugin;
  for (const auto& c : checks) {
    if (c.plugin != plugin) std::cout << (plugin.empty() ? "" : "\n") << (plugin = c.plugin) << "\n";
    std::printf("  %-12s %-8s %s\n", c.check.c_str(), verdict_name(c.verdict), c.detail.c_str());
    failed += c.verdict == Verdict::fail;
    skipped += c.verdict == Verdict::skipped;
  }
  std::cout << "\n" << which.size() << " plugin(s), " << checks.size() << " checks: " << checks.size() - failed - skipped
            << " passed, " << failed << " failed, " << skipped << " skipped\n";
  return failed ? 1 : 0;
}

void add_plugin_option(CLI::App& app, std::vector<std::string>& plugins) {
  app.add_option("--plugin", plugins, "load a plugin library first (repeatable; VIDKV_PLUGIN_PATH=LIB:LIB does the same)")
      ->type_name("LIB")
      ->allow_extra_args(false);
}

}  // namespace

void add_plugin_commands(std::vector<Command>& out) {
  out.push_back({{"plugins", "list"}, "list every registered quantizer, channel selector, token protector and preset",
                 "Lists every registered plugin by family with a one-line summary, then the presets.",
                 [](CLI::App& app) -> Action {
                   auto plugins = std::make_shared<std::vector<std::string>>();
                   add_plugin_option(app, *plugins);
                   return [plugins](const Args&) { return plugins_list(*plugins); };
                 }});
  out.push_back({{"plugins", "describe"}, "every parameter of a plugin: type, default, range, description",
                 "Prints the config block that builds the plugin and each parameter with type, default, valid range or\n"
                 "choices, unit and description. Unknown keys in a block are errors.\n"
                 "Example: vidkv plugins describe uniform",
                 [](CLI::App& app) -> Action {
                   auto name = std::make_shared<std::string>();
                   app.add_option("NAME", *name, "a plugin name (vidkv plugins list)")->required();
                   auto plugins = std::make_shared<std::vector<std::string>>();
                   add_plugin_option(app, *plugins);
                   return [name, plugins](const Args&) { return plugins_describe(*name, *plugins); };
                 }});
  out.push_back({{"plugins", "check"}, "run the plugin conformance suite on a plugin library, a verdict per check",
                 "Loads LIBRARY (a shared object built with vidkv_add_plugin, or a Python plugin module.py;\n"
                 "docs/writing-a-plugin.md) and runs the\n"
                 "conformance suite on every plugin it registers, with default parameters: layout, exact_bytes (guard\n"
                 "bytes), determinism, decode, round_trip, parameters (unknown keys refused), reference (reference vs\n"
                 "optimized CPU paths), shapes (how many block shapes supports() took; none is a failure) for quantizers; scores, masks, determinism, reference, parameters for channel\n"
                 "selectors; indices, determinism, reference, parameters for token protectors; cuda is reported as\n"
                 "skipped with its reason. Exit status 1 when a check failed.\n"
                 "Example: vidkv plugins check build/libmy_quant.so",
                 [](CLI::App& app) -> Action {
                   auto library = std::make_shared<std::string>();
                   auto builtin = std::make_shared<bool>(false);
                   app.add_option("LIBRARY", *library, "a plugin library (lib*.so) or a Python plugin (module.py)");
                   app.add_flag("--builtin", *builtin, "check every built-in plugin too");
                   // Neither given: a usage error (exit status 2), as a missing argument of any command.
                   app.parse_complete_callback([library, builtin] {
                     if (library->empty() && !*builtin)
                       throw CLI::ValidationError("LIBRARY", "nothing to check: give a plugin library, or --builtin");
                   });
                   return [library, builtin](const Args&) { return plugins_check(*library, *builtin); };
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
