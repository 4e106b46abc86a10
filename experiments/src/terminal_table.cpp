// vidkv run's terminal table (terminal_table.h).
#include "vidkv/experiments/src/terminal_table.h"

#include <algorithm>

#include "vidkv/core/name_list.h"
#include "vidkv/experiments/src/column_list.h"

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

// The identity columns and the kept metrics.
bool kept(const std::string& c) { return c == "run" || c == "lifecycle" || c == "trace" || has_column(kept_metrics(), c); }

}  // namespace

TerminalColumns terminal_columns(const std::vector<std::string>& summary, bool all) {
  TerminalColumns t;
  if (all || summary.size() <= kMaxTerminalColumns) {
    t.shown = summary;
    return t;
  }
  // The identity and kept columns, then the others in the summary's order while there is room.
  const auto kept_count = static_cast<std::size_t>(std::count_if(summary.begin(), summary.end(), kept));
  std::size_t room = kMaxTerminalColumns > kept_count ? kMaxTerminalColumns - kept_count : 0;
  for (const std::string& c : summary) {
    if (kept(c)) {
      t.shown.push_back(c);
    } else if (room > 0) {
      t.shown.push_back(c);
      --room;
    } else {
      t.omitted.push_back(c);
    }
  }
  return t;
}

std::string omitted_columns_line(const TerminalColumns& t, const std::string& results_dir) {
  if (t.omitted.empty()) return "";
  return std::to_string(t.omitted.size()) + " more column" + (t.omitted.size() == 1 ? "" : "s") + " in " + results_dir +
         "/summary.md and results.csv: " + join_names(t.omitted) + "; --all-columns prints them here\n";
}

}  // namespace vidkv
