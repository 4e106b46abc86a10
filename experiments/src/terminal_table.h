// Which of the summary's columns `vidkv run` prints on the terminal. summary.md, results.csv and results.jsonl always
// hold every column; a terminal table of all 26 default metrics is about 420 characters wide, so past
// kMaxTerminalColumns the terminal gets the columns a reader compares settings by first and a line naming the rest.
#pragma once

#include <string>
#include <vector>

namespace vidkv {

// More columns than this (identity columns run / lifecycle / trace included) and the terminal table is shortened.
inline constexpr std::size_t kMaxTerminalColumns = 14;

struct TerminalColumns {
  std::vector<std::string> shown;    // in the summary's order
  std::vector<std::string> omitted;  // in the summary's order; empty when everything is shown
};

// `summary` is the summary's column list (experiment_runner.h summary_columns: run, lifecycle, [trace], the headline,
// then the plan's metrics). With `all`, or at most kMaxTerminalColumns columns, every column is shown. Otherwise
// shown = the identity columns (run, lifecycle, trace) and those of the headline, the K / V reconstruction and
// attention-output relative errors, attn_kl, effective bits, compression_ratio and seconds that the summary has,
// then the summary's other columns in order while fewer than kMaxTerminalColumns are shown (so a table of metrics
// outside that list still shows kMaxTerminalColumns of them); all in the summary's order; omitted = the rest.
TerminalColumns terminal_columns(const std::vector<std::string>& summary, bool all);

// The line under a shortened table: "N more columns in DIR/summary.md and results.csv: a, b, ...; --all-columns
// prints them here". Empty when nothing was omitted.
std::string omitted_columns_line(const TerminalColumns& t, const std::string& results_dir);

}  // namespace vidkv
