// `vidkv run EXPERIMENT.yaml`: plan, validate, replay every run x trace, write results, print the summary table.
#include <cstdlib>
#include <iostream>

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
  }
  const ResultsFolder folder(plan, options.out_dir, options.resume);
  options.out_dir = folder.dir();
  const ExperimentOutcome out = run_experiment(plan, options, builtin_registry(implementation));
  std::cout << "\n" << rows_to_markdown(out.summary, summary_columns(plan)) << "\n";
  std::cout << "results: " << out.dir << "/results.csv (" << out.rows.size() << " rows; " << out.cells_computed
            << " cells computed, " << out.cells_resumed << " resumed)\n";
  return 0;
}

}  // namespace

void add_run_commands(std::vector<Command>& out) {
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
                 "metrics on the device (experiments/README.md, \"Trace replay on the GPU\").\n"
                 "Schema: experiments/README.md. Example: vidkv run experiments/quickstart.yaml",
                 run_command});
}

}  // namespace vidkv::cli
