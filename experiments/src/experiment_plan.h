// Experiment YAML -> a validated plan of runs (architecture.md section 7, experiments/README.md).
//
// Layering, lowest first: built-in defaults, then a preset (`codec: {preset: NAME}`), then the file, then each
// `--set dotted.path=value`. `sweep:` is either a map of dotted paths to value lists (cartesian product, first key
// outermost) or a list of named variants ({name: X, dotted.path: value, ...}). The whole plan -- every run's codec
// and lifecycle built through the plugin registry, every trace glob, every metric name -- is validated before any
// trace is opened.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/config_node.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/tensor_view.h"

namespace vidkv {

// Longest experiment `name:` (it names the results folder, with "-N" suffixes for later runs, within a file
// system's 255-byte file-name limit).
constexpr std::size_t kMaxExperimentNameBytes = 200;

struct RunPlan {
  std::string name;                                          // "key.selector.type=range" or the variant's name
  std::vector<std::pair<std::string, std::string>> params;   // swept dotted path -> value (as YAML text)
  ConfigNode codec;                                          // resolved {key: block, value: block}
  LifecycleParams lifecycle;
  ConfigNode lifecycle_node;                                 // resolved lifecycle block (for saving)
};

struct ExperimentPlan {
  std::string name;
  std::string description;
  std::string source_file;
  std::vector<std::string> traces;   // resolved file paths, sorted, de-duplicated (empty in live mode)
  // trace_identity() of each trace (size, mtime, hash of header and layer shapes), filled by `vidkv run` after it
  // validated the traces; part of the resume fingerprint, so a replaced trace file is never mixed with old cells.
  std::vector<std::string> trace_identities;
  ConfigNode model;                  // live mode: the `model:` block (checked by the live runner), else null
  Device backend = Device::cpu;
  std::uint64_t seed = 0;
  std::vector<std::string> metrics;  // canonical names, in metric order
  std::string output_dir;            // the pattern with {name} substituted (before uniquifying)
  std::vector<RunPlan> runs;
  ConfigNode resolved;               // the experiment document after layering, sweep kept, for config.yaml
};

// Every metric name the trace runner can compute, in column order.
const std::vector<std::string>& all_metric_names();
// Every metric name of live mode (vidkv live), in column order.
const std::vector<std::string>& all_live_metric_names();

// Builds and validates the plan. `overrides` are "dotted.path=value" strings from --set.
ExperimentPlan plan_experiment(const std::string& file, const std::vector<std::string>& overrides,
                               const PluginRegistry& registry);
// Same from an in-memory document (tests, Python).
ExperimentPlan plan_experiment_document(const ConfigNode& document, const std::vector<std::string>& overrides,
                                        const PluginRegistry& registry, const std::string& source_file);

// Resolves a codec block: {preset: NAME, [part: key|value], key: ..., value: ...} -> {key, value} (or one side
// when part is given). Preset blocks are deep-merged with the overrides (see merge_config). Also returns the preset's lifecycle block (null if none).
ConfigNode resolve_codec(const ConfigNode& codec, const PluginRegistry& registry, ConfigNode* preset_lifecycle = nullptr);

// Whether a codec block (one side or {key, value}, presets resolved) holds a token protector other than `none` whose
// candidates are the visual tokens (`candidates: visual`, the default; core/token_protector.h): it protects nothing
// on tokens of which none is visual.
bool protects_visual_tokens(const ConfigNode& codec);
// Deep merge with the plugin-type rule above: switching a block to another plugin (`type:`) keeps only the old
// block's parameters that the new plugin (looked up in `registry`, in the family of the block) also declares.
void merge_config(ConfigNode& base, const ConfigNode& overlay, const PluginRegistry& registry);

}  // namespace vidkv
