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
#include "vidkv/experiments/src/results_folder.h"
#include "vidkv/experiments/src/trace_read_options.h"
#include "vidkv/traces/trace_validation.h"

namespace vidkv::cli {

namespace {

<<<<<<< HEAD
int run_command(const Args& args_in) {
  Args args = args_in;
  std::string command_line = "vidkv run";
  for (const auto& a : args_in) command_line += " " + a;
  RunOptions options;
  options.command_line = command_line;
  std::string value;
  while (take_option(args, "--set", value)) options.overrides.push_back(value);
  if (take_option(args, "--jobs", value)) {
    char* end = nullptr;
    const long n = std::strtol(value.c_str(), &end, 10);
    if (*end || n < 1 || n > 1024) VIDKV_THROW(ConfigError, "--jobs: expected a positive integer, got '", value, "'");
    options.jobs = static_cast<int>(n);
  }
  CpuImplementation implementation = CpuImplementation::optimized;
  if (take_option(args, "--implementation", value)) implementation = parse_cpu_implementation(value);
  options.resume = take_flag(args, "--resume");
  take_option(args, "--out", options.out_dir);
  const bool quiet = take_flag(args, "--quiet");
  if (quiet) set_log_level(LogLevel::warning);
  take_trace_read_options(args);
  reject_unknown_options(args, "vidkv run");
  if (args.size() != 1) VIDKV_THROW(ConfigError, "usage: vidkv run EXPERIMENT.yaml [--set k=v]... [--jobs N] [--resume] [--out DIR]");

  ExperimentPlan plan = plan_experiment(args[0], options.overrides, builtin_registry());
  if (!plan.model.is_null())
    VIDKV_THROW(ConfigError, args[0], ": this experiment names a model (live mode): run it with vidkv live");
  if (options.out_dir.empty()) check_output_inside_working_dir(plan);
=======
struct RunArgs {
  std::string experiment;
  std::vector<std::string> overrides;
  int jobs = 1;
  std::string implementation = "optimized";
  bool resume = false;
  std::string out;
  bool quiet = false;
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

  const ExperimentPlan plan = plan_experiment(a.experiment, options.overrides, builtin_registry());
  if (!plan.model.is_null())
    VIDKV_THROW(ConfigError, a.experiment, ": this experiment names a model (live mode): run it with vidkv live");
>>>>>>> issue14-truth
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
  const ExperimentOutcome out = run_experiment(plan, options, builtin_registry(implementation));
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
                 "worker threads: over run x trace cells, or over the layers of each cell when there are fewer cells")
      ->check(CLI::Range(1, 1024))
      ->capture_default_str();
  app.add_option("--implementation", a->implementation,
                 "CPU quantizer paths: optimized, or reference (the scalar oracle; slower; recorded in provenance.json)")
      ->check(CLI::IsMember({"optimized", "reference"}))
      ->capture_default_str();
  app.add_flag("--resume", a->resume, "continue the latest results folder of this experiment (same plan only)");
  app.add_option("--out", a->out, "write results to DIR instead of the file's `output:` (default results/{name})")
      ->type_name("DIR");
  app.add_flag("--quiet", a->quiet, "no progress output");
  return [a](const Args& raw) { return run_command(*a, raw); };
}

}  // namespace

void add_run_commands(std::vector<Command>& out) {
<<<<<<< HEAD
  out.push_back({{"run"}, "vidkv run EXPERIMENT.yaml [--set k=v]... [--jobs N] [--resume] [--out DIR] [--implementation I]\n"
                 "          [--allow-external-data] [--allow-filter-plugins]",
                 "replay traces through every run of a YAML experiment and print a results table",
                 "Options:\n"
                 "  --set dotted.path=value  override a value of the file (repeatable), e.g. --set codec.value.gamma=0.5\n"
                 "  --jobs N                 N worker threads: over run x trace cells, or over the KV heads of each\n"
                 "                           layer's metrics when there are fewer cells than N (default 1)\n"
                 "  --implementation I       CPU quantizer paths: optimized (default) or reference (the scalar oracle;\n"
                 "                           same packed bytes, slower; recorded in provenance.json)\n"
                 "  --resume                 continue the latest results folder of this experiment, or --out DIR (same\n"
                 "                           plan and same trace files only)\n"
                 "  --out DIR                write results to DIR instead of the file's `output:` (default results/{name});\n"
                 "                           a DIR that already holds files needs --resume\n"
                 "  --quiet                  no progress output\n" + std::string(kTraceReadOptionsHelp) + "\n"
                 "The whole plan is validated, then every trace is checked as by vidkv trace validate, before any cell\n"
                 "starts. Results go to a new folder (results/NAME, results/NAME-2, ...; `output:` must lie below the\n"
                 "working directory): config.yaml, provenance.json, results.csv, results.jsonl, summary.md. One run\n"
                 "at a time writes a folder (a lock); a run killed at any point continues with --resume.\n"
                 "`backend: cuda` in the file (or --set backend=cuda) replays on the GPU: codec, lifecycle and the\n"
                 "reconstruction errors on the device (experiments/README.md, \"Trace replay on the GPU\").\n"
                 "Schema: experiments/README.md. Example: vidkv run experiments/quickstart.yaml",
                 run_command});
=======
  out.push_back({{"run"}, "replay traces through every run of a YAML experiment and print a results table",
                 "The whole plan is validated before any trace is read. Results go to a new folder (results/NAME,\n"
                 "results/NAME-2, ...): config.yaml, provenance.json, results.csv, results.jsonl, summary.md.\n"
                 "Example: vidkv run experiments/quickstart.yaml --set codec.value.gamma=0.5 --jobs 2",
                 define_run});
>>>>>>> issue14-truth
}

}  // namespace vidkv::cli
