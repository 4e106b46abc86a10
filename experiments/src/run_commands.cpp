// `vidkv run EXPERIMENT.yaml`: plan, validate, replay every run x trace, write results, print the summary table.
#include <CLI/CLI.hpp>

#include <cmath>
#include <iostream>
#include <memory>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"
#include "vidkv/core/logging.h"
#include "vidkv/core/name_list.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/cell_partition.h"
#include "vidkv/experiments/src/column_key.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/plugin_loading.h"
#include "vidkv/experiments/src/process_group.h"
#include "vidkv/experiments/src/yaml_config.h"
#include "vidkv/experiments/src/results_folder.h"
#include "vidkv/experiments/src/summary_notes.h"
#include "vidkv/experiments/src/terminal_table.h"
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
  bool all_columns = false;
  std::string shard;
  std::vector<std::string> plugins;
  bool allow_plugins = false;
  TraceReadFlags trace_read;
};

// Prints the summary table of a finished experiment (its columns shortened past kMaxTerminalColumns unless
// `all_columns`: terminal_table.h; summary.md holds all), the key of the columns shown and the notes
// (summary_notes.h: where the decode-step metrics of backend cuda come from, non-finite values, values that look
// wrong).
void print_summary(const ExperimentPlan& plan, const ExperimentOutcome& out, bool all_columns) {
  const std::vector<std::string> columns = summary_columns(plan);
  const TerminalColumns shown = terminal_columns(columns, all_columns);
  std::cout << "\n" << rows_to_markdown(out.summary, shown.shown) << omitted_columns_line(shown, out.dir) << "\n"
            << summary_column_key(shown.shown);
  for (const std::string& note : summary_notes(plan, out.summary, shown.shown)) std::cout << note;
}

// The registry of this run: the built-in plugins, those the user loads (VIDKV_PLUGIN_PATH, --plugin) and those the
// experiment names (`plugins:`, only with --allow-plugins or already loaded): plugin_loading.h.
PluginRegistry run_registry(const RunArgs& a, const ConfigNode& document) {
  PluginRegistry registry = builtin_plugin_registry();
  load_user_plugins(registry, a.plugins);
  // `plugins:` as the --set options leave it: the list that the results' config.yaml records is the one loaded.
  ConfigNode with_sets = document;
  for (const auto& o : a.overrides) {
    auto [path, value] = parse_set_override(o);
    if (path == "plugins" && with_sets.is_map()) with_sets.set_path_value(path, value);
  }
  load_experiment_plugins(registry, with_sets, a.experiment, a.allow_plugins);
  return registry;
}

// Plans the experiment and validates every trace (printing what it found when `verbose`).
ExperimentPlan plan_and_validate(const RunArgs& a, const ConfigNode& document, const RunOptions& options,
                                 const PluginRegistry& registry, bool verbose) {
  ExperimentPlan plan = plan_experiment_document(document, options.overrides, registry, a.experiment);
  if (!plan.model.is_null())
    VIDKV_THROW(ConfigError, a.experiment, ": this experiment names a model (live mode): run it with vidkv live");
  if (options.out_dir.empty()) check_output_inside_working_dir(plan);
  if (verbose) {
    std::cout << "experiment " << plan.name << ": " << plan.runs.size() << " run(s) x " << plan.traces.size()
              << " trace(s)\n";
    if (plan.backend == Device::cuda) std::cout << "  backend cuda: " << cuda_device_description(0) << "\n";
  }
  // One validation: every check of `vidkv trace validate`, on every trace, before any cell starts (the recorded
  // queries only when a run uses them). Its identity (size, modification time, hash of header and layer shapes)
  // goes into the resume fingerprint.
  const LayerParts parts{plan_reads_recorded_queries(plan, registry)};
  for (const auto& t : plan.traces) {
    const TraceValidationReport report = validate_trace(t, parts);
    const TraceInfo& info = report.info;
    plan.trace_identities.push_back(report.identity);
    check_prefill_blocks(plan, registry, t);  // a plugin's refusal of this trace's blocks, before any cell
    // A token protector that takes its candidates from visual tokens protects nothing on a trace without any
    // (said once: under mpirun by rank 0, the verbose one).
    if (verbose && report.modality_count[1] == 0) {
      std::vector<std::string> runs;
      for (const RunPlan& r : plan.runs)
        if (protects_visual_tokens(r.codec)) runs.push_back("'" + r.name + "'");
      if (!runs.empty())
        VIDKV_WARN(t, " has no visual tokens, so the token protector of ", join_names(runs),
                   " (candidates: visual, the default) protects nothing there; candidates: context takes them from the "
                   "context span (system and document tokens)");
    }
    if (!verbose) continue;
    std::cout << "  trace " << t << ": " << info.num_layers << " layers x " << info.num_kv_heads << " KV heads x "
              << info.tokens << " tokens x " << info.head_dim << " dims, source: " << info.source
              << (info.source == "synthetic" ? " (SYNTHETIC data, not recorded from a model)" : ", model: " + info.model_id)
              << "\n";
    if (info.rope == "pre")
      std::cout << "    keys stored before RoPE: attention metrics rotate keys and queries to /tokens/position"
                << (info.rotary ? " (" + info.rotary->str() + ")" : " (no rotary parameters in /model: refused)") << "\n";
  }
  return plan;
}

// mpirun -np N vidkv run (docs/distributed.md): rank 0 picks the results folder as a single process would and holds
// its lock; every rank computes the cells partition_cells gives it; once every rank is done (or any failed: then
// every rank stops with the error), rank 0 assembles the result files from all cells, in plan order.
int run_mpi(const RunArgs& a, const ConfigNode& document, const PluginRegistry& registry, RunOptions options,
            CpuImplementation implementation, ProcessGroup& group) {
  if (!a.shard.empty())
    VIDKV_THROW(ConfigError, "--shard ", a.shard, ": this vidkv runs under MPI (", group.size(),
                " ranks), which splits the experiment itself; give --shard only without mpirun");
  const bool root = group.rank() == 0;
  if (!root) set_log_level(LogLevel::warning);
  ExperimentPlan plan;
  group.agree([&] { plan = plan_and_validate(a, document, options, registry, root); });
  if (plan.backend == Device::cuda) {
    // One GPU per rank of a node, in local-rank order (several ranks share a GPU when a node has fewer GPUs).
    const int devices = cuda_device_count();
    if (devices > 0) set_process_cuda_device(group.local_rank() % devices);
  }
  std::unique_ptr<ResultsFolder> folder;
  group.agree([&] {
    if (root) folder = std::make_unique<ResultsFolder>(plan, options.out_dir, options.resume);
  });
  options.out_dir = group.broadcast(root ? folder->dir() : "");
  if (root)
    std::cout << "  mpi: " << group.size() << " ranks, results folder " << options.out_dir << "\n";
  options.shard = ShardSpec{group.rank(), group.size()};
  options.assemble = false;
  options.progress = options.progress && root;
  std::unique_ptr<ShardLock> lock;
  ExperimentOutcome mine;
  group.agree([&] {
    lock = std::make_unique<ShardLock>(options.out_dir, options.shard, false);
    mine = run_experiment(plan, options, registry.with_implementation(implementation));
  });
  const std::vector<std::string> counts =
      group.all_gather(std::to_string(mine.cells_computed) + " " + std::to_string(mine.cells_resumed));
  if (!root) return 0;
  int computed = 0, resumed = 0;
  for (const auto& c : counts) {
    const auto space = c.find(' ');
    computed += std::stoi(c.substr(0, space));
    resumed += std::stoi(c.substr(space + 1));
  }
  ExperimentOutcome out;
  try {
    out = merge_results(options.out_dir);
  } catch (const IoError& e) {
    // Every rank reported its cells stored: a missing one is a folder that rank 0 does not share with the others.
    throw IoError(std::string(e.what()) + " [every rank finished its cells: is " + options.out_dir +
                  " on a file system that every rank shares? (docs/distributed.md)]");
  }
  print_summary(plan, out, a.all_columns);
  std::cout << "results: " << out.dir << "/results.csv (" << out.rows.size() << " rows; " << computed
            << " cells computed, " << resumed << " resumed, by " << group.size() << " MPI ranks)\n";
  return 0;
}

// vidkv run EXP --shard i/N (a job-array task, docs/distributed.md): the folder is --out DIR or the plan's output
// as it is (every shard must name the same one), shared by the shards; this one computes its cells and stops.
int run_shard(const RunArgs& a, const ConfigNode& document, const PluginRegistry& registry, RunOptions options,
              CpuImplementation implementation) {
  options.shard = parse_shard_spec(a.shard);
  options.assemble = false;
  const ExperimentPlan plan = plan_and_validate(a, document, options, registry, true);
  if (options.out_dir.empty()) options.out_dir = plan.output_dir;
  const ShardLock lock(options.out_dir, options.shard, true);
  const ExperimentOutcome out = run_experiment(plan, options, registry.with_implementation(implementation));
  std::cout << "shard " << options.shard.str() << ": " << out.cells_computed << " cells computed, " << out.cells_resumed
            << " resumed, in " << out.dir << "/cells; when every shard is done: vidkv merge " << out.dir << "\n";
  return 0;
}

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
  const ConfigNode document = load_yaml_file(a.experiment);
  const PluginRegistry registry = run_registry(a, document);
  if (launched_by_mpi()) {
    ProcessGroup& group = ProcessGroup::world();
    if (group.size() > 1) return run_mpi(a, document, registry, options, implementation, group);
  }
  if (!a.shard.empty()) return run_shard(a, document, registry, options, implementation);

  ExperimentPlan plan = plan_and_validate(a, document, options, registry, true);
  const ResultsFolder folder(plan, options.out_dir, options.resume);
  options.out_dir = folder.dir();
  const ExperimentOutcome out = run_experiment(plan, options, registry.with_implementation(implementation));
  print_summary(plan, out, a.all_columns);
  std::cout << "results: " << out.dir << "/results.csv (" << out.rows.size() << " rows; " << out.cells_computed
            << " cells computed, " << out.cells_resumed << " resumed)\n";
  return 0;
}

Action define_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  app.add_option("EXPERIMENT", a->experiment, "the YAML experiment (schema: experiments/README.md)")->required();
  app.add_option("--set", a->overrides,
                 "override a value of the file (repeatable), applied to every run of its sweep (a run's sweep values\n"
                 "apply over it; a --set that every run replaces is refused), e.g. --set seed=7; --set 'sweep.codec.key.bits=[2,4]'\n"
                 "sets one entry of a sweep map;\n"
                 "--set codec.value.gamma=0.5 only where every run's values are ternary (the key must exist for the run's plugin)")
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
  app.add_flag("--all-columns", a->all_columns,
               "print every column of the summary table (past 14 columns the terminal gets 14: the headline, the K / V\n"
               "and attention errors, attn_kl, bits and seconds first; summary.md and results.csv always hold all)");
  app.add_option("--shard", a->shard,
                 "compute only shard i of N (counted from 0) of the cells, for job arrays without MPI: every shard\n"
                 "writes its cells into the same folder (--out DIR, or `output:` as it is), then vidkv merge DIR\n"
                 "writes the results (docs/distributed.md)")
      ->type_name("i/N");
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

Action define_merge(CLI::App& app) {
  auto dir = std::make_shared<std::string>();
  app.add_option("DIR", *dir, "a results folder whose cells the shards of vidkv run --shard i/N computed")->required();
  return [dir](const Args&) {
    const ExperimentOutcome out = merge_results(*dir);
    std::cout << "results: " << out.dir << "/results.csv (" << out.rows.size() << " rows from " << out.cells_resumed
              << " cells)\n";
    return 0;
  };
}

}  // namespace

void add_run_commands(std::vector<Command>& out) {
  out.push_back({{"run"}, "replay traces through every run of a YAML experiment and print a results table",
                 "The whole plan is validated, then every trace is checked as by vidkv trace validate, before any cell\n"
                 "starts (the recorded query states only when an attention metric or the codec uses them; otherwise\n"
                 "they are never read). Results go to a new folder (results/NAME, results/NAME-2, ...; `output:` must lie below the\n"
                 "working directory): config.yaml, provenance.json, results.csv, results.jsonl, summary.md. One run\n"
                 "at a time writes a folder (a lock); a run killed at any point continues with --resume.\n"
                 "`backend: cuda` in the file (or --set backend=cuda) replays on the GPU: codec, lifecycle and the\n"
                 "metrics on the device (experiments/README.md, \"Trace replay on the GPU\").\n"
                 "Schema: experiments/README.md.\n"
                 "Several processes (docs/distributed.md): `mpirun -np N vidkv run EXP` splits the cells over N MPI\n"
                 "ranks (in a build with MPI; as root, mpirun needs --allow-run-as-root) and rank 0 writes the same\n"
                 "result files; without MPI, --shard i/N per process and then vidkv merge DIR.\n"
                 "Example: vidkv run experiments/quickstart.yaml --set 'traces=[traces/data/mine.h5]' --jobs 2",
                 define_run});
  out.push_back({{"merge"}, "write the result files of a folder whose cells shards computed (vidkv run --shard i/N)",
                 "Reads DIR/cells.json and every cell file, in plan order, and writes results.csv, results.jsonl and\n"
                 "summary.md: the same bytes one vidkv run of the whole experiment writes. Refused, naming the missing\n"
                 "cells, while a shard has not finished (nothing is written then). docs/distributed.md.\n"
                 "Example: vidkv merge results/table2-main",
                 define_merge});
}

}  // namespace vidkv::cli
