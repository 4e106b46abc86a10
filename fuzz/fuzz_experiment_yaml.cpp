// libFuzzer target: any byte string as an experiment YAML file, through what `vidkv run` does before it reads a
// trace: parse (experiments/src/yaml_config.h: bounded size, values after alias expansion, nesting) and plan
// (experiment_plan.h: keys, presets, sweep expansion with its bounds, every run's codec built through the plugin
// registry, metric names, trace globs). Must end in a vidkv::Error or a plan: no crash, no hang, no runaway
// memory. Inputs with a wildcard next to a '/' ("*/", "/*", "?/", "/?") are skipped, since a trace pattern such as
// /*/*/*/* walks the whole machine's file tree (slow, not wrong); YAML aliases (*name) stay in. Seeds: fuzz/corpus/fuzz_experiment_yaml.
#include <cstdint>
#include <string>

#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/yaml_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  for (const char* walk : {"*/", "/*", "?/", "/?"})
    if (text.find(walk) != std::string::npos) return 0;
  try {
    const vidkv::ConfigNode doc = vidkv::parse_yaml_text(text, "fuzz.yaml");
    static const vidkv::PluginRegistry registry = vidkv::builtin_plugin_registry();
    vidkv::plan_experiment_document(doc, {}, registry, "fuzz.yaml");
  } catch (const vidkv::Error&) {
  }
  return 0;
}
