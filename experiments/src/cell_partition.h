// How one experiment's cells are split over several processes (docs/distributed.md): the ranks of `mpirun -np N
// vidkv run`, or the tasks of a job array (`vidkv run --shard i/N`). A cell is one run x trace (experiment_runner.h);
// every process computes the same partition from the plan and the trace headers alone, so no process has to tell
// another which cells are its own, and a shard started again (--resume) owns exactly the cells it owned before.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "vidkv/experiments/src/experiment_plan.h"

namespace vidkv {

// Shard `index` of `count` (0 <= index < count); {0, 1} is the whole experiment.
struct ShardSpec {
  int index = 0;
  int count = 1;
  bool whole() const { return count == 1; }
  std::string str() const;  // "2/4"
};

// Parses "i/N" (0-based i, as Slurm's SLURM_ARRAY_TASK_ID of --array=0-(N-1)). ConfigError naming `text` when it is
// not two integers with 0 <= i < N <= 100000.
ShardSpec parse_shard_spec(const std::string& text);

// The relative cost of one layer of a run's codec, per element of the KV cache (a unitless estimate, used only to
// balance shards). 1 for the metrics (the same for every run: on the bundled trace the fp16 run, which encodes
// nothing, takes 0.69 s of the 0.7-0.9 s of a typical cell), plus 0.25 for every plugin block of the codec (a
// quantizer, a selector, a composite's part) and 0.75 more for a token protector (the STP cells of
// experiments/paper/table2-main.yaml take 1.4-2.0 s). Deterministic: a function of the resolved codec only.
double codec_cost(const RunPlan& run);

// The trace dimensions that a cell's cost scales with (from the trace header).
struct TraceSize {
  std::int64_t layers = 0, kv_heads = 0, tokens = 0, head_dim = 0;
};

// Estimated cost of every cell, in plan order (run-major: cell r * traces + t): tokens x layers x KV heads x head_dim
// x codec_cost(run). `traces` holds one TraceSize per plan trace.
std::vector<double> cell_costs(const ExperimentPlan& plan, const std::vector<TraceSize>& traces);

// The shard of each cell (same order as `costs`): longest processing time first -- cells by decreasing cost (ties:
// the earlier cell first), each to the shard with the least cost so far (ties: the lower shard). With equal costs
// this deals the cells round-robin. Every cell gets exactly one shard; throws ValueError when shards < 1.
std::vector<int> partition_cells(const std::vector<double>& costs, int shards);

}  // namespace vidkv
