// vidkv run's terminal table (terminal_table.h).
#include "vidkv/experiments/src/terminal_table.h"

#include <algorithm>

namespace vidkv {

namespace {

// The columns a shortened table keeps, besides run / lifecycle / trace: the headline, the reconstruction and
// attention-output errors, the attention distribution, the bits actually stored, and time.
const std::vector<std::string>& kept_metrics() {
  static const std::vector<std::string> kept = {
      "decode_attn_out_depth_error", "key_rel_error",      "value_rel_error",      "attn_out_rel_error",
      "decode_attn_out_rel_error",   "attn_kl",            "key_effective_bits",   "value_effective_bits",
      "effective_bits",              "compression_ratio",  "seconds"};
  return kept;
}

bool contains(const std::vector<std::string>& v, const std::string& s) { return std::find(v.begin(), v.end(), s) != v.end(); }

}  // namespace

TerminalColumns terminal_columns(const std::vector<std::string>& summary, bool all) {
  TerminalColumns t;
  if (all || summary.size() <= kMaxTerminalColumns) {
    t.shown = summary;
    return t;
  }
  // The identity and kept columns, then the others in the summary's order while there is room.
  std::size_t room = kMaxTerminalColumns;
  for (const std::string& c : summary)
    if (c == "run" || c == "lifecycle" || c == "trace" || contains(kept_metrics(), c)) room -= room > 0 ? 1 : 0;
  for (const std::string& c : summary) {
    const bool kept = c == "run" || c == "lifecycle" || c == "trace" || contains(kept_metrics(), c);
    if (!kept && room > 0) --room;
    else if (!kept) {
      t.omitted.push_back(c);
      continue;
    }
    t.shown.push_back(c);
  }
  return t;
}

std::string omitted_columns_line(const TerminalColumns& t, const std::string& results_dir) {
  if (t.omitted.empty()) return "";
  std::string names;
  for (const std::string& c : t.omitted) names += (names.empty() ? "" : ", ") + c;
  return std::to_string(t.omitted.size()) + " more column" + (t.omitted.size() == 1 ? "" : "s") + " in " + results_dir +
         "/summary.md and results.csv: " + names + "; --all-columns prints them here\n";
}

}  // namespace vidkv
