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
  CHECK(rows_to_jsonl({b}, cols) == "{\"run\": \"say \\\"hi\\\"\", \"layer\": -1, \"key_snr_db\": null}\n");
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
