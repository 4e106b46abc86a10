// Runs a validated ExperimentPlan: every run x trace "cell" replays each layer of the trace through the run's codec
// and lifecycle, computes the metrics per layer and head, and stores the cell's rows atomically. results.csv and
// results.jsonl are assembled from the finished cells, so a killed experiment resumes (--resume) without losing
// or duplicating rows, and a resumed experiment ends with the same rows as an uninterrupted one (except `seconds`).
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/cell_partition.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/result_table.h"

namespace vidkv {

struct RunOptions {
  int jobs = 1;                         // cells processed in parallel
  bool resume = false;                  // continue the latest results folder of this experiment
  std::string out_dir;                  // explicit results folder (overrides the plan's output)
  std::vector<std::string> overrides;   // --set values, recorded in provenance
  std::string command_line;             // recorded in provenance
  bool progress = true;
  // Several processes on one results folder (docs/distributed.md): this process computes only the cells that
  // partition_cells gives `shard` (all of them for {0, 1}), and writes results.csv / results.jsonl / summary.md
  // only when `assemble` (one process does, after every shard is done: MPI rank 0, or `vidkv merge`).
  ShardSpec shard;
  bool assemble = true;
};

struct ExperimentOutcome {
  std::string dir;                       // results folder
  std::vector<ResultRow> rows;           // every row, in plan order
  std::vector<ResultRow> summary;        // the per-trace aggregate rows (layer = -1, head = -1)
  int cells_computed = 0;
  int cells_resumed = 0;
};

ExperimentOutcome run_experiment(const ExperimentPlan& plan, const RunOptions& options, const PluginRegistry& registry);

// `vidkv merge DIR`: assembles results.csv, results.jsonl and summary.md of a results folder whose cells were
// computed by several processes (`vidkv run --shard i/N`), from DIR/cells.json (written by every run) and the
// cell files, in plan order: the same bytes a single-process run writes. ConfigError when DIR is not a results
// folder; IoError listing the missing cells when a shard has not finished (nothing is written then).
ExperimentOutcome merge_results(const std::string& dir);

// Whether any run of the plan uses the traces' recorded query states: an attention metric, or a codec whose
// quantizers read them (Quantizer::reads_recorded_queries, e.g. a semantic_attention protector). When not, neither
// the validation nor the replay reads /layers/NNN/query.
bool plan_reads_recorded_queries(const ExperimentPlan& plan, const PluginRegistry& registry);

// Before any cell: each run's key and value quantizers must support the blocks its lifecycle encodes at the prefill
// of `trace` (LifecycleParams::prefill_blocks, the rule LayerCache follows, of the prompt or lifecycle.prefill_tokens),
// on the plan's backend, with the trace's KV
// heads and head_dim. A refusal (Quantizer::supports) is a ConfigError naming the run, the trace, the block and the
// plugin's reason, at the codec side's YAML line; it used to surface as a failed cell after other cells had run.
// Blocks of later decode steps are not checked here (a refusal of those still fails its cell).
void check_prefill_blocks(const ExperimentPlan& plan, const PluginRegistry& registry, const std::string& trace);

// Columns of the printed summary table: run, trace (when several), then the plan's metrics.
std::vector<std::string> summary_columns(const ExperimentPlan& plan);

}  // namespace vidkv
