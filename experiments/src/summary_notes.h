// The notes `vidkv run` prints under its summary table: where a column's values come from, why a value is not a
// number, and why a value that looks wrong is what the method gives. Each note names the column, the runs and the
// reason.
#pragma once

#include <string>
#include <vector>

#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/result_table.h"

namespace vidkv {

// One line per note ("note: ...\n"), for the summary rows `summary` (one per run and trace, ResultRow "run" naming a
// run of `plan`) and the table's columns `columns`:
//   * backend cuda with decode_* columns: those come from a host replay through the codec's CPU tiers;
//   * decode_* columns empty in every row: no trace has a recorded query at a decode step (what to record or set);
//   * a non-finite value: the reference is all zeros there (the runner refuses non-finite reconstructions, so a
//     relative error or SNR against zeros is what remains), once per column;
//   * key_rel_error / value_rel_error above 1: the reconstruction is farther from the data than zero is; for runs
//     whose side is magnitude-free ternary (ternary with reconstruction magnitude_free, the default: decoded to
//     exactly -1, 0, +1, paper Eq. 6, algorithms.md section 2.3) that is the method's behaviour, said as such.
std::vector<std::string> summary_notes(const ExperimentPlan& plan, const std::vector<ResultRow>& summary,
                                       const std::vector<std::string>& columns);

// Whether a resolved quantizer block (RunPlan::codec's key or value, composites' children included) holds a
// ternary quantizer that decodes without magnitude (reconstruction magnitude_free, or not given: its default).
bool has_magnitude_free_ternary(const ConfigNode& quantizer);

}  // namespace vidkv
