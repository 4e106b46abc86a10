// Result rows and their files: results.csv, results.jsonl, the per-cell files that make resume exact, and the
// markdown table printed at the end of a run.
//
// A row is one run x trace x layer x KV head (layer or kv_head -1 for aggregates). Values are text or numbers;
// numbers are written with 10 significant digits, non-finite numbers as "inf"/"-inf"/"nan" in CSV and null in JSON.
// The KV-head column is `kv_head` (it was `head` before 2026-11, which collides with pandas' DataFrame.head; the
// readers of this project accept both: read_cell_file here, analysis/vidkv_analysis/results.py).
#pragma once

#include <string>
#include <utility>
#include <variant>
#include <vector>

namespace vidkv {

using ResultValue = std::variant<std::string, double>;

struct ResultRow {
  std::vector<std::pair<std::string, ResultValue>> columns;  // in column order
  void set(const std::string& column, ResultValue value);
  const ResultValue* get(const std::string& column) const;
};

// The leading columns of every result file: experiment, run, trace, layer, kv_head.
extern const std::vector<std::string> kKeyColumns;

std::string format_value(const ResultValue& v);
// A value as summary.md and the terminal table print it: numbers to 4 significant digits.
std::string format_cell(const ResultValue& v);
// A JSON string literal for `s` (nlohmann::json; invalid UTF-8 bytes become U+FFFD).
std::string json_quote(const std::string& s);

// Writes `text` to `path` atomically: a temporary file in the same folder, fsync, rename. A crash leaves either
// the old file or the new one, never a torn one.
void write_file_atomic(const std::string& path, const std::string& text);

// Cell files: the rows of one finished run x trace cell, as tab-separated text with a header line.
void write_cell_file(const std::string& path, const std::vector<ResultRow>& rows);
// Throws IoError naming the file (and line) for a cell that cannot be read: no header, a row with another number of
// fields than the header, a field without its s: / n: type.
std::vector<ResultRow> read_cell_file(const std::string& path);
// What is missing from the rows of a cell file for them to be a whole cell as experiment_runner.cpp writes one, or
// "" when nothing is: for each layer 0..L-1 (L >= 1) the rows of KV heads 0..H-1 (the same H >= 1 for every
// layer) and one layer row (kv_head -1), then last one trace row (layer -1, kv_head -1), all of one run and trace.
// A file cut short (its trace row is the last line written) or replaced by other text fails this, which
// read_cell_file alone cannot see when the cut falls at a line end.
std::string incomplete_cell(const std::vector<ResultRow>& rows);

// The union of the rows' columns: `leading` first, then every other column in order of first appearance.
std::vector<std::string> result_columns(const std::vector<ResultRow>& rows, const std::vector<std::string>& leading);
std::string rows_to_csv(const std::vector<ResultRow>& rows, const std::vector<std::string>& columns);
std::string rows_to_jsonl(const std::vector<ResultRow>& rows, const std::vector<std::string>& columns);
// Markdown table with `columns` as header; numbers with 4 significant digits; `|` in text (a run name) is written
// `\|` and a line break as a space, so every row stays one table row.
std::string rows_to_markdown(const std::vector<ResultRow>& rows, const std::vector<std::string>& columns);

// The result files of one results folder: results.csv and results.jsonl (`rows`, `columns`) and summary.md
// (`summary`, `summary_columns`), each written atomically. The one writer of `vidkv run` (experiment_runner.cpp)
// and `vidkv live` (through the _vidkv extension's write_result_files), so both escape and format alike.
void write_result_files(const std::string& dir, const std::vector<ResultRow>& rows, const std::vector<std::string>& columns,
                        const std::vector<ResultRow>& summary, const std::vector<std::string>& summary_columns);

}  // namespace vidkv
