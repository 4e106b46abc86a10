// vidkv run's terminal table and the notes under it (experiments/src/terminal_table.h, summary_notes.h).
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "catch.h"
#include "vidkv/core/config_node.h"
#include "vidkv/experiments/src/summary_notes.h"
#include "vidkv/experiments/src/terminal_table.h"
#include "vidkv/experiments/src/yaml_config.h"

using namespace vidkv;

namespace {

std::vector<std::string> default_summary_columns() {
  std::vector<std::string> cols = {"run", "lifecycle", "decode_attn_out_depth_error"};
  for (const std::string& m : all_metric_names())
    if (m != "decode_attn_out_depth_error") cols.push_back(m);
  return cols;
}

ResultRow row(const std::string& run, const std::string& col, double v) {
  ResultRow r;
  r.set("run", std::string(run));
  r.set(col, v);
  return r;
}

RunPlan run_with(const std::string& name, const std::string& codec_yaml) {
  RunPlan r;
  r.name = name;
  r.codec = parse_yaml_text(codec_yaml, "<test>");
  return r;
}

}  // namespace

TEST_CASE("the terminal table keeps the comparing columns of a wide summary, in order, and names the rest",
          "[experiments][results]") {
  const std::vector<std::string> all = default_summary_columns();
  REQUIRE(all.size() > kMaxTerminalColumns);
  const TerminalColumns t = terminal_columns(all, false);
  // run, lifecycle and the 11 kept metrics that the default list has, plus the first other one (key_mse) to make
  // 14, in the summary's order.
  const std::vector<std::string> expected = {"run", "lifecycle", "decode_attn_out_depth_error", "key_rel_error",
                                             "value_rel_error", "key_mse", "attn_kl", "attn_out_rel_error",
                                             "decode_attn_out_rel_error", "key_effective_bits",
                                             "value_effective_bits", "effective_bits", "compression_ratio", "seconds"};
  CHECK(t.shown == expected);
  CHECK(t.shown.size() + t.omitted.size() == all.size());
  for (const std::string& c : t.omitted) CHECK(std::find(expected.begin(), expected.end(), c) == expected.end());
  const std::string line = omitted_columns_line(t, "results/x");
  CHECK(line.rfind(std::to_string(t.omitted.size()) + " more columns in results/x/summary.md and results.csv: ", 0) == 0);
  CHECK(line.find("value_mse") != std::string::npos);
  CHECK(line.find("--all-columns") != std::string::npos);
  // --all-columns, or a table narrow enough, shows everything and names nothing.
  CHECK(terminal_columns(all, true).shown == all);
  const std::vector<std::string> few = {"run", "lifecycle", "trace", "key_mse", "value_snr_db"};
  CHECK(terminal_columns(few, false).shown == few);
  CHECK(omitted_columns_line(terminal_columns(few, false), "r").empty());
  // At exactly kMaxTerminalColumns everything shows; past it the table holds exactly kMaxTerminalColumns.
  std::vector<std::string> fourteen(all.begin(), all.begin() + 14);
  CHECK(terminal_columns(fourteen, false).shown == fourteen);
  const TerminalColumns fill = terminal_columns(all, false);
  CHECK(fill.shown.size() == kMaxTerminalColumns);
  // Metrics outside the kept list still fill the terminal table up to kMaxTerminalColumns, in order.
  std::vector<std::string> others = {"run", "lifecycle"};
  for (const std::string& m : all_metric_names())
    if (m.find("mse") != std::string::npos || m.find("snr") != std::string::npos || m.find("cosine") != std::string::npos ||
        m.find("nominal") != std::string::npos || m.find("key_only") != std::string::npos ||
        m.find("logit") != std::string::npos || m.find("topk") != std::string::npos)
      others.push_back(m);
  REQUIRE(others.size() > kMaxTerminalColumns);
  const TerminalColumns o = terminal_columns(others, false);
  CHECK(o.shown == std::vector<std::string>(others.begin(), others.begin() + kMaxTerminalColumns));
  CHECK(o.omitted == std::vector<std::string>(others.begin() + kMaxTerminalColumns, others.end()));
  // A wide table with several traces keeps the trace column.
  std::vector<std::string> traced = all;
  traced.insert(traced.begin() + 2, "trace");
  CHECK(terminal_columns(traced, false).shown[2] == "trace");
}

TEST_CASE("a relative error above 1 gets a note: the method's for magnitude-free ternary, plainly otherwise",
          "[experiments][results]") {
  ExperimentPlan plan;
  plan.runs.push_back(run_with("tern", "{key: {type: uniform, bits: 2}, value: {type: ternary, gamma: 0.7}}"));
  plan.runs.push_back(run_with("stp", "{key: {type: uniform, bits: 2}, value: {type: mixed_token, protected: "
                                      "{type: uniform, bits: 2}, rest: {type: ternary, reconstruction: magnitude_free}}}"));
  plan.runs.push_back(run_with("scaled", "{key: {type: uniform, bits: 2}, value: {type: ternary, reconstruction: scaled}}"));
  plan.runs.push_back(run_with("fine", "{key: {type: uniform, bits: 2}, value: {type: ternary}}"));
  const std::vector<ResultRow> summary = {row("tern", "value_rel_error", 1.114), row("stp", "value_rel_error", 1.022),
                                          row("scaled", "value_rel_error", 1.5), row("fine", "value_rel_error", 0.9)};
  const std::vector<std::string> cols = {"run", "value_rel_error"};
  const std::vector<std::string> notes = summary_notes(plan, summary, cols);
  REQUIRE(notes.size() == 1);
  const std::string& n = notes[0];
  // The magnitude-free runs with their values, then the scaled one plainly; the run at 0.9 in neither.
  CHECK(n.find("note: value_rel_error above 1 for 'tern' 1.114, 'stp' 1.022: their values are magnitude-free ternary") == 0);
  CHECK(n.find("paper Eq. 6") != std::string::npos);
  CHECK(n.find("more than |v| when |v| < 1/2") != std::string::npos);
  CHECK(n.find("\nnote: value_rel_error above 1 for 'scaled' 1.5: the reconstruction lies farther from V than zero does") !=
        std::string::npos);
  CHECK(n.find("'fine'") == std::string::npos);
  // Not printed when the column is not in the table, nor for values at or below 1.
  CHECK(summary_notes(plan, summary, {"run", "key_rel_error"}).empty());
  CHECK(summary_notes(plan, {row("tern", "value_rel_error", 1.0)}, cols).empty());
}

TEST_CASE("has_magnitude_free_ternary walks composites and honours the reconstruction", "[experiments][results]") {
  CHECK(has_magnitude_free_ternary(parse_yaml_text("{type: ternary}", "<t>")));
  CHECK(has_magnitude_free_ternary(parse_yaml_text("{type: ternary, reconstruction: magnitude_free}", "<t>")));
  CHECK_FALSE(has_magnitude_free_ternary(parse_yaml_text("{type: ternary, reconstruction: scaled}", "<t>")));
  CHECK_FALSE(has_magnitude_free_ternary(parse_yaml_text("{type: uniform, bits: 2}", "<t>")));
  CHECK(has_magnitude_free_ternary(parse_yaml_text("{type: mixed_token, rest: {type: ternary}}", "<t>")));
}

TEST_CASE("the notes under the table: where cuda's decode-step metrics come from, a non-finite value's reason",
          "[experiments][results]") {
  ExperimentPlan plan;
  plan.backend = Device::cuda;
  std::vector<std::string> notes = summary_notes(plan, {}, {"run", "decode_attn_kl"});
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("come from a replay on the host through the codec's CPU tiers") != std::string::npos);
  CHECK(summary_notes(plan, {}, {"run", "key_mse"}).empty());
  plan.backend = Device::cpu;
  CHECK(summary_notes(plan, {}, {"run", "decode_attn_kl"}).empty());
  notes = summary_notes(plan, {row("zeros", "key_mse", 0.0), row("zeros", "key_snr_db", std::nan(""))}, {"run", "key_snr_db"});
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("note: key_snr_db is nan for run 'zeros': the reference is all zeros there") == 0);
}

TEST_CASE("decode-step metrics empty in every row get a note saying why and what to do", "[experiments][results]") {
  ExperimentPlan plan;
  const std::vector<std::string> cols = {"run", "decode_attn_out_depth_error", "key_mse"};
  // Rows without the decode columns: no recorded query past the prefill (a trace without generated tokens, or a
  // synthetic one, whose queries are at its query-text tokens in the prompt even with generated tokens).
  std::vector<std::string> notes = summary_notes(plan, {row("a", "key_mse", 0.1), row("b", "key_mse", 0.2)}, cols);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("note: the decode-step metrics (decode_*, the headline among them) are empty: no trace has a "
                      "recorded query at a decode step") == 0);
  CHECK(notes[0].find("set lifecycle.prefill_tokens below the first of them") != std::string::npos);
  // One row with a value: no note; no rows, or no decode column shown: none either.
  CHECK(summary_notes(plan, {row("a", "key_mse", 0.1), row("b", "decode_attn_out_depth_error", 0.3)}, cols).empty());
  CHECK(summary_notes(plan, {}, cols).empty());
  CHECK(summary_notes(plan, {row("a", "key_mse", 0.1)}, {"run", "key_mse"}).empty());
}

TEST_CASE("a lossy codec with key and value errors both exactly 0 gets a note: nothing left the residual window",
          "[experiments][results]") {
  // A trace shorter than the lifecycle's G and R never reaches the codec (found by a newcomer's trial: kivi-2 on a
  // 40-token trace showed error 0 at 16 bits without a word). fp16 (identity) at 0 is the truth and gets no note;
  // a run with one side's error above 0 did quantize.
  ExperimentPlan plan;
  plan.runs.push_back(run_with("kivi", "{key: {type: uniform, bits: 2}, value: {type: uniform, bits: 2}}"));
  plan.runs.push_back(run_with("fp16", "{key: {type: identity}, value: {type: identity}}"));
  plan.runs.push_back(run_with("half", "{key: {type: uniform, bits: 2}, value: {type: ternary}}"));
  auto both = [](const std::string& run, double k, double v) {
    ResultRow r = row(run, "key_rel_error", k);
    r.set("value_rel_error", v);
    return r;
  };
  const std::vector<std::string> cols = {"run", "key_rel_error", "value_rel_error"};
  const auto notes = summary_notes(plan, {both("kivi", 0.0, 0.0), both("fp16", 0.0, 0.0), both("half", 0.0, 0.31)}, cols);
  REQUIRE(notes.size() == 1);
  CHECK(notes[0].find("note: key_rel_error and value_rel_error are exactly 0 for 'kivi' (G=32 R=128): no token left the "
                      "full-precision residual window") == 0);
  CHECK(notes[0].find("'fp16'") == std::string::npos);
  CHECK(notes[0].find("'half'") == std::string::npos);
  CHECK(summary_notes(plan, {both("kivi", 0.01, 0.02)}, cols).empty());
}
