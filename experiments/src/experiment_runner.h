// Runs a validated ExperimentPlan: every run x trace "cell" replays each layer of the trace through the run's codec
// and lifecycle, computes the metrics per layer and head, and stores the cell's rows atomically. results.csv and
// results.jsonl are assembled from the finished cells, so a killed experiment resumes (--resume) without losing
// or duplicating rows, and a resumed experiment ends with the same rows as an uninterrupted one (except `seconds`).
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/plugin_registry.h"
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
};

struct ExperimentOutcome {
  std::string dir;                       // results folder
  std::vector<ResultRow> rows;           // every row, in plan order
  std::vector<ResultRow> summary;        // the per-trace aggregate rows (layer = -1, head = -1)
  int cells_computed = 0;
  int cells_resumed = 0;
};

ExperimentOutcome run_experiment(const ExperimentPlan& plan, const RunOptions& options, const PluginRegistry& registry);

// Whether any run of the plan uses the traces' recorded query states: an attention metric, or a codec whose
// quantizers read them (Quantizer::reads_recorded_queries, e.g. a semantic_attention protector). When not, neither
// the validation nor the replay reads /layers/NNN/query.
bool plan_reads_recorded_queries(const ExperimentPlan& plan, const PluginRegistry& registry);

// Columns of the printed summary table: run, trace (when several), then the plan's metrics.
std::vector<std::string> summary_columns(const ExperimentPlan& plan);

}  // namespace vidkv
