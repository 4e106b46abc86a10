// `vidkv run EXPERIMENT.yaml`: plan, validate, replay every run x trace, write results, print the summary table.
#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>
#include <memory>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"
#include "vidkv/core/logging.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/plugin_loading.h"
#include "vidkv/experiments/src/yaml_config.h"
#include "vidkv/experiments/src/results_folder.h"
#include "vidkv/experiments/src/trace_read_options.h"
#include "vidkv/traces/trace_validation.h"

namespace vidkv::cli {

namespace {

struct RunArgs {
  std::string experiment;
  std::vector<std::string> overrides;
  int jobs = 1;
  std::string implementation = "optimized";
  bool resume = false;
  std::string out;
  bool quiet = false;
  std::vector<std::string> plugins;
  bool allow_plugins = false;
  TraceReadFlags trace_read;
};

int run_command(const RunArgs& a, const Args& raw) {
  RunOptions options;
  options.command_line = "vidkv run";
  for (const auto& s : raw) options.command_line += " " + s;
  options.overrides = a.overrides;
  options.jobs = a.jobs;
  options.resume = a.resume;
  options.out_dir = a.out;
  const CpuImplementation implementation = parse_cpu_implementation(a.implementation);
  if (a.quiet) set_log_level(LogLevel::warning);
  apply_trace_read_options(a.trace_read);

  // The registry of this run: the built-in plugins, those the user loads (VIDKV_PLUGIN_PATH, --plugin) and those the
  // experiment names (`plugins:`, only with --allow-plugins or already loaded): plugin_loading.h.
  PluginRegistry registry = builtin_plugin_registry();
  load_user_plugins(registry, a.plugins);
  const ConfigNode document = load_yaml_file(a.experiment);
  load_experiment_plugins(registry, document, a.experiment, a.allow_plugins);
  ExperimentPlan plan = plan_experiment_document(document, options.overrides, registry, a.experiment);
  if (!plan.model.is_null())
    VIDKV_THROW(ConfigError, a.experiment, ": this experiment names a model (live mode): run it with vidkv live");
  if (options.out_dir.empty()) check_output_inside_working_dir(plan);
  std::cout << "experiment " << plan.name << ": " << plan.runs.size() << " run(s) x " << plan.traces.size()
            << " trace(s)\n";
  if (plan.backend == Device::cuda) std::cout << "  backend cuda: " << cuda_device_description(0) << "\n";
  // One validation: every check of `vidkv trace validate`, on every trace, before any cell starts. Its identity
  // (size, modification time, hash of header and layer shapes) goes into the resume fingerprint.
  for (const auto& t : plan.traces) {
    const TraceValidationReport report = validate_trace(t);
    const TraceInfo& info = report.info;
    plan.trace_identities.push_back(report.identity);
    std::cout << "  trace " << t << ": " << info.num_layers << " layers x " << info.num_kv_heads << " KV heads x "
              << info.tokens << " tokens x " << info.head_dim << " dims, source: " << info.source
              << (info.source == "synthetic" ? " (SYNTHETIC data, not recorded from a model)" : ", model: " + info.model_id)
              << "\n";
    if (info.rope == "pre")
      std::cout << "    keys stored before RoPE: attention metrics rotate keys and queries to /tokens/position"
                << (info.rotary ? " (" + info.rotary->str() + ")" : " (no rotary parameters in /model: refused)") << "\n";
  }
  const ResultsFolder folder(plan, options.out_dir, options.resume);
  options.out_dir = folder.dir();
  const ExperimentOutcome out = run_experiment(plan, options, registry.with_implementation(implementation));
  std::cout << "\n" << rows_to_markdown(out.summary, summary_columns(plan)) << "\n";
  // Never an inf or nan without its reason: the runner refuses non-finite reconstructions, so what remains is a
  // relative error (or SNR) against an all-zero reference.
  for (const auto& col : summary_columns(plan))
    for (const auto& r : out.summary)
      if (const ResultValue* v = r.get(col); v && std::holds_alternative<double>(*v) && !std::isfinite(std::get<double>(*v))) {
        std::cout << "note: " << col << " is " << format_value(*v) << " for run '" << format_value(*r.get("run"))
                  << "': the reference is all zeros there, so a relative error (or SNR) is not a number\n";
        break;
      }
  std::cout << "results: " << out.dir << "/results.csv (" << out.rows.size() << " rows; " << out.cells_computed
            << " cells computed, " << out.cells_resumed << " resumed)\n";
  return 0;
}

Action define_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  app.add_option("EXPERIMENT", a->experiment, "the YAML experiment (schema: experiments/README.md)")->required();
  app.add_option("--set", a->overrides,
                 "override a value of the file (repeatable), e.g. --set codec.value.gamma=0.5")
      ->type_name("dotted.path=value")
      ->allow_extra_args(false);
  app.add_option("--jobs", a->jobs,
                 "worker threads: over run x trace cells, or over the KV heads of each layer's metrics when there are\n"
                 "fewer cells than N")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--implementation", a->implementation,
                 "CPU quantizer paths: optimized, or reference (the scalar oracle; same packed bytes, slower; recorded\n"
                 "in provenance.json)")
      ->check(CLI::IsMember({"optimized", "reference"}))
      ->capture_default_str();
  app.add_flag("--resume", a->resume,
               "continue the latest results folder of this experiment, or --out DIR (same plan and same trace files\n"
               "only)");
  app.add_option("--out", a->out, "write results to DIR instead of the file's `output:` (default results/{name}); a DIR that already\n"
                 "holds files needs --resume")
      ->type_name("DIR");
  app.add_flag("--quiet", a->quiet, "no progress output");
  app.add_option("--plugin", a->plugins, "load a plugin library (lib*.so built with vidkv_add_plugin) before planning\n"
                 "(repeatable; VIDKV_PLUGIN_PATH=LIB:LIB does the same for every command)")
      ->type_name("LIB")
      ->allow_extra_args(false);
  app.add_flag("--allow-plugins", a->allow_plugins,
               "load the plugin libraries the experiment file lists under `plugins:` (refused without it: loading a\n"
               "library runs its code)");
  add_trace_read_options(app, a->trace_read);
  return [a](const Args& raw) { return run_command(*a, raw); };
}

}  // namespace

void add_run_commands(std::vector<Command>& out) {
  out.push_back({{"run"}, "replay traces through every run of a YAML experiment and print a results table",
                 "The whole plan is validated, then every trace is checked as by vidkv trace validate, before any cell\n"
                 "starts. Results go to a new folder (results/NAME, results/NAME-2, ...; `output:` must lie below the\n"
                 "working directory): config.yaml, provenance.json, results.csv, results.jsonl, summary.md. One run\n"
                 "at a time writes a folder (a lock); a run killed at any point continues with --resume.\n"
                 "`backend: cuda` in the file (or --set backend=cuda) replays on the GPU: codec, lifecycle and the\n"
                 "metrics on the device (experiments/README.md, \"Trace replay on the GPU\").\n"
                 "Schema: experiments/README.md.\n"
                 "Example: vidkv run experiments/quickstart.yaml --set codec.value.gamma=0.5 --jobs 2",
                 define_run});
}

}  // namespace vidkv::cli
