// The key printed under `vidkv run`'s summary table: what each column measures and which way is better, one line per
// group of related columns (the full definitions: experiments/README.md, "Metrics").
#pragma once

#include <string>
#include <vector>

namespace vidkv {

// Lines "  col_a, col_b  meaning" for the groups with at least one column in `columns` (naming only those columns),
// in the key's order (the headline metric first, the lifecycle last), after a heading line; the empty string when
// no column of `columns` has an entry (run and trace need none).
// `table`: whose table it is, which the heading's line on pooling follows (vidkv run: over the layers of a trace;
// vidkv live: over the prompts of a run).
enum class KeyFor { run, live };
std::string summary_column_key(const std::vector<std::string>& columns, KeyFor table = KeyFor::run);

// Whether `column` (a metric name of vidkv run or vidkv live) has an entry in the key. vidkv run and vidkv live
// (through the _vidkv binding summary_column_key) print the key under their tables.
bool column_has_key(const std::string& column);

}  // namespace vidkv
