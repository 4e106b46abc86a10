#include <cmath>
#include <filesystem>
#include <string>

#include "catch.h"
#include "vidkv/experiments/src/result_table.h"

using namespace vidkv;
namespace fs = std::filesystem;

TEST_CASE("result rows render as CSV, JSONL and markdown", "[experiments][results]") {
  ResultRow a;
  a.set("run", std::string("key.selector={type: range, fraction: 0.5}"));
  a.set("layer", 3.0);
  a.set("key_rel_error", 0.123456789012);
  ResultRow b;
  b.set("run", std::string("say \"hi\""));
  b.set("layer", -1.0);
  b.set("key_snr_db", INFINITY);
  const auto cols = result_columns({a, b}, {"run", "layer"});
  CHECK(cols == std::vector<std::string>{"run", "layer", "key_rel_error", "key_snr_db"});
  CHECK(rows_to_csv({a, b}, cols) ==
        "run,layer,key_rel_error,key_snr_db\n"
        "\"key.selector={type: range, fraction: 0.5}\",3,0.123456789,\n"
        "\"say \"\"hi\"\"\",-1,,inf\n");
  CHECK(rows_to_jsonl({a, b}, cols) ==
        "{\"run\":\"key.selector={type: range, fraction: 0.5}\",\"layer\":3,\"key_rel_error\":0.123456789}\n"
        "{\"run\":\"say \\\"hi\\\"\",\"layer\":-1,\"key_snr_db\":null}\n");
  CHECK(rows_to_markdown({a}, {"run", "key_rel_error"}) ==
        "| run | key_rel_error |\n| --- | --- |\n| key.selector={type: range, fraction: 0.5} | 0.1235 |\n");
}

TEST_CASE("cell files round-trip every value exactly", "[experiments][results]") {
  const fs::path p = fs::temp_directory_path() / ("vidkv-cell-" + std::to_string(::getpid()) + ".tsv");
  ResultRow a;
  a.set("run", std::string("tab\there"));
  a.set("x", 0.1 + 0.2);  // 0.30000000000000004 must survive
  a.set("y", -INFINITY);
  ResultRow b;
  b.set("x", 1e-300);
  write_cell_file(p.string(), {a, b});
  const auto rows = read_cell_file(p.string());
  fs::remove(p);
  REQUIRE(rows.size() == 2);
  CHECK(std::get<std::string>(*rows[0].get("run")) == "tab here");
  CHECK(std::get<double>(*rows[0].get("x")) == 0.1 + 0.2);
  CHECK(std::get<double>(*rows[0].get("y")) == -INFINITY);
  CHECK(rows[1].get("run") == nullptr);
  CHECK(std::get<double>(*rows[1].get("x")) == 1e-300);
}

TEST_CASE("summary.md escapes | in run names, write_result_files writes the three files", "[experiments][results]") {
  // A run named "KIVI | 2-bit" used to split its row into one cell too many. Escaped as \| it stays one cell,
  // and markdown renderers show the pipe.
  ResultRow r;
  r.set("run", std::string("KIVI | 2-bit\nsecond line"));
  r.set("kv_head", -1.0);
  r.set("key_rel_error", 0.5);
  CHECK(rows_to_markdown({r}, {"run", "key_rel_error"}) ==
        "| run | key_rel_error |\n| --- | --- |\n| KIVI \\| 2-bit second line | 0.5 |\n");
  const fs::path dir = fs::temp_directory_path() / ("vidkv-results-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  write_result_files(dir.string(), {r}, {"run", "kv_head", "key_rel_error"}, {r}, {"run", "key_rel_error"});
  for (const char* f : {"results.csv", "results.jsonl", "summary.md"}) CHECK(fs::exists(dir / f));
  fs::remove_all(dir);
  CHECK(kKeyColumns == std::vector<std::string>{"experiment", "run", "trace", "layer", "kv_head"});
  CHECK(json_quote(std::string("a\"b\\c\n\x01")) == "\"a\\\"b\\\\c\\n\\u0001\"");
}

TEST_CASE("incomplete_cell accepts a whole cell and names what a damaged one lacks", "[experiments][results]") {
  // A whole cell of 2 layers x 2 KV heads: per layer heads 0, 1 then the layer row (kv_head -1), then the trace row.
  auto row = [](double layer, double head, const std::string& run = "r") {
    ResultRow r;
    r.set("run", run);
    r.set("trace", std::string("t.h5"));
    r.set("layer", layer);
    r.set("kv_head", head);
    return r;
  };
  const std::vector<ResultRow> whole = {row(0, 0), row(0, 1), row(0, -1), row(1, 0), row(1, 1), row(1, -1), row(-1, -1)};
  CHECK(incomplete_cell(whole).empty());
  auto without = [&](std::size_t i) {
    std::vector<ResultRow> r = whole;
    r.erase(r.begin() + static_cast<std::ptrdiff_t>(i));
    return r;
  };
  // Cut at a line end (what read_cell_file cannot see): the trace row is gone.
  CHECK(incomplete_cell({whole.begin(), whole.begin() + 3}).find("last row is not the trace row") != std::string::npos);
  CHECK(incomplete_cell({}) == "it holds no rows");
  CHECK(incomplete_cell({row(-1, -1)}) == "it has no layer rows");
  CHECK(incomplete_cell(without(3)).find("KV head 1 where KV head 0 was due") != std::string::npos);  // layer 1 head 0
  CHECK(incomplete_cell(without(2)).find("layer 1 where layer 0 was due") != std::string::npos);    // layer 0's row
  CHECK(incomplete_cell(without(5)).find("layer 1 has KV-head rows but no layer row") != std::string::npos);
  std::vector<ResultRow> fewer_heads = without(4);  // layer 1 holds one KV head, layer 0 two
  CHECK(incomplete_cell(fewer_heads) == "layer 1 has 1 KV-head rows, layer 0 has 2");
  std::vector<ResultRow> other = whole;
  other[1] = row(0, 1, "other");
  CHECK(incomplete_cell(other).find("row 2 is of run 'other'") != std::string::npos);
  // Read back from a file: a header line only (a file replaced by one word) holds no rows.
  const fs::path file = fs::temp_directory_path() / "vidkv-incomplete-cell.tsv";
  write_cell_file(file.string(), whole);
  CHECK(incomplete_cell(read_cell_file(file.string())).empty());
  write_file_atomic(file.string(), "garbage\n");
  CHECK(incomplete_cell(read_cell_file(file.string())) == "it holds no rows");
  fs::remove(file);
}
