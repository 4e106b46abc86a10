// Notes under vidkv run's summary table (summary_notes.h).
#include "vidkv/experiments/src/summary_notes.h"

#include <cmath>
#include <string>
#include <variant>

#include "vidkv/core/name_list.h"
#include "vidkv/experiments/src/column_list.h"

namespace vidkv {

namespace {

const RunPlan* run_named(const ExperimentPlan& plan, const std::string& name) {
  for (const RunPlan& r : plan.runs)
    if (r.name == name) return &r;
  return nullptr;
}

std::string run_of(const ResultRow& r) {
  const ResultValue* v = r.get("run");
  return v ? format_value(*v) : std::string("?");
}

// The relative-error note of one side ("key" / "value"), or "" when no row exceeds 1.
std::string relative_error_note(const ExperimentPlan& plan, const std::vector<ResultRow>& summary, const std::string& side) {
  const std::string col = side + "_rel_error";
  const bool several_traces = plan.traces.size() > 1;
  std::vector<std::string> magnitude_free, other;
  for (const ResultRow& r : summary) {
    const ResultValue* v = r.get(col);
    if (!v || !std::holds_alternative<double>(*v)) continue;
    const double x = std::get<double>(*v);
    if (!std::isfinite(x) || x <= 1.0) continue;
    const std::string name = run_of(r);
    const RunPlan* run = run_named(plan, name);
    const ConfigNode* block = run ? run->codec.find(side) : nullptr;
    const ResultValue* trace = r.get("trace");
    const std::string entry = "'" + name + "'" + (several_traces && trace ? " on " + format_cell(*trace) : "") + " " + format_cell(*v);
    ((block && has_magnitude_free_ternary(*block)) ? magnitude_free : other).push_back(entry);
  }
  const std::string what = side == "key" ? "K" : "V";
  std::string out;
  if (!magnitude_free.empty())
    out += "note: " + col + " above 1 for " + join_names(magnitude_free) + ": their " + side +
           "s are magnitude-free ternary, decoded to exactly -1, 0 or +1 whatever the group's magnitude (paper Eq. 6, "
           "algorithms.md section 2.3): a value v coded +-1 errs by |1 - |v||, more than |v| when |v| < 1/2, so |" +
           what + " - " + what + "^| exceeds |" + what + "| where most magnitudes lie well below 1. That is the "
           "method, not a fault: compare such runs by the attention columns and the headline (reconstruction: scaled "
           "decodes t x mean(|x| over |x| > a) instead)\n";
  if (!other.empty())
    out += "note: " + col + " above 1 for " + join_names(other) + ": the reconstruction lies farther from " + what +
           " than zero does (|" + what + " - " + what + "^|_F > |" + what + "|_F)\n";
  return out;
}

bool is_identity(const ConfigNode& quantizer) {
  const ConfigNode* type = quantizer.is_map() ? quantizer.find("type") : nullptr;
  return type && type->is_scalar() && type->text() == "identity";
}

// Rows of a lossy codec whose key and value errors are both exactly 0: every token stayed in the lifecycle's
// full-precision residual window (a trace shorter than the prefill's group G and the window R), so the codec never
// ran and its "error 0, 16 bits" says nothing about it. "" when there is none (or a column is not computed).
std::string nothing_quantized_note(const ExperimentPlan& plan, const std::vector<ResultRow>& summary) {
  const bool several_traces = plan.traces.size() > 1;
  std::vector<std::string> runs;
  for (const ResultRow& r : summary) {
    const ResultValue* k = r.get("key_rel_error");
    const ResultValue* v = r.get("value_rel_error");
    if (!k || !v || !std::holds_alternative<double>(*k) || !std::holds_alternative<double>(*v)) continue;
    if (std::get<double>(*k) != 0.0 || std::get<double>(*v) != 0.0) continue;
    const RunPlan* run = run_named(plan, run_of(r));
    if (!run || (is_identity(run->codec.at("key")) && is_identity(run->codec.at("value")))) continue;
    const ResultValue* trace = r.get("trace");
    runs.push_back("'" + run->name + "' (G=" + std::to_string(run->lifecycle.group) + " R=" +
                   std::to_string(run->lifecycle.residual) + ")" +
                   (several_traces && trace ? " on " + format_cell(*trace) : ""));
  }
  if (runs.empty()) return "";
  return "note: key_rel_error and value_rel_error are exactly 0 for " + join_names(runs) +
         ": no token left the full-precision residual window, so the codec never quantized anything and its bits "
         "are the residual's. The trace is too short for the lifecycle (paper and release: the prefill quantizes a "
         "multiple of G tokens; kivi: keys a multiple of R, values all but the last R; decode steps quantize once "
         "the window passes R; algorithms.md section 5): use a longer trace, or lower lifecycle.group / "
         "lifecycle.residual\n";
}

}  // namespace

bool has_magnitude_free_ternary(const ConfigNode& quantizer) {
  if (!quantizer.is_map()) return false;
  const ConfigNode* type = quantizer.find("type");
  if (type && type->is_scalar() && type->text() == "ternary") {
    const ConfigNode* rec = quantizer.find("reconstruction");
    return !rec || !rec->is_scalar() || rec->text() == "magnitude_free";
  }
  for (const auto& [key, child] : quantizer.entries())
    if (child.is_map() && has_magnitude_free_ternary(child)) return true;
  return false;
}

std::vector<std::string> summary_notes(const ExperimentPlan& plan, const std::vector<ResultRow>& summary,
                                       const std::vector<std::string>& columns) {
  std::vector<std::string> notes;
  if (plan.backend == Device::cuda)
    for (const auto& col : columns)
      if (col.rfind("decode_", 0) == 0) {
        notes.push_back("note: backend: cuda: the decode-step metrics (decode_*, the headline among them) come from a "
                        "replay on the host through the codec's CPU tiers (the GPU's packed bytes where its tiers are "
                        "exact, FFT keys within their tolerance; experiments/README.md, \"Trace replay on the GPU\")\n");
        break;
      }
  for (const auto& col : columns)
    for (const ResultRow& r : summary)
      if (const ResultValue* v = r.get(col); v && std::holds_alternative<double>(*v) && !std::isfinite(std::get<double>(*v))) {
        notes.push_back("note: " + col + " is " + format_value(*v) + " for run '" + run_of(r) +
                        "': the reference is all zeros there, so a relative error (or SNR) is not a number\n");
        break;
      }
  // The decode-step metrics empty in every row: no trace had a decode step to measure.
  for (const auto& col : columns)
    if (col.rfind("decode_", 0) == 0) {
      bool any = false;
      for (const ResultRow& r : summary) {
        const ResultValue* v = r.get(col);
        any = any || (v && std::holds_alternative<double>(*v));
      }
      if (!any && !summary.empty())
        notes.push_back("note: the decode-step metrics (decode_*, the headline among them) are empty: no trace has a "
                        "recorded query at a decode step. They score the query states recorded at tokens after the "
                        "prefill (by default the prefill is every token before the first generated one). vidkv record "
                        "records the generated tokens' queries; a synthetic trace (vidkv trace synth) records queries "
                        "at its query-text tokens only, generated tokens or not: set lifecycle.prefill_tokens below the "
                        "first of them (vidkv trace info lists them) to score those as decode steps\n");
      break;
    }
  for (const char* side : {"key", "value"})
    if (has_column(columns, std::string(side) + "_rel_error"))
      if (std::string n = relative_error_note(plan, summary, side); !n.empty()) notes.push_back(n);
  if (std::string n = nothing_quantized_note(plan, summary); !n.empty()) notes.push_back(n);
  return notes;
}

}  // namespace vidkv
