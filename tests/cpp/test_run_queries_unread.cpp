// A run reads a trace's recorded query states (/layers/NNN/query) only when something uses them: an attention
// metric, or a codec whose token protector scores from them (semantic_attention). The trace below is the small
// hand-made trace with an Inf written into /layers/001/query: every read of that dataset refuses it (the reader
// checks the finiteness of everything it reads), so a run that finishes never read it.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>
#include <string>

#include "catch.h"
#include "test_registry.h"
#include "trace_test_support.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/yaml_config.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"

using namespace vidkv;
using vidkv::test::EditTrace;
using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

// The small trace with query head 3, query 1, dim 0 of layer 1 set to +Inf.
std::string trace_with_bad_queries(const TempDir& dir) {
  const std::string path = dir.file("bad-query.h5");
  SmallTrace::write(path, DType::f16);
  EditTrace(path).set_half("/layers/001/query", {3, 1, 0}, std::numeric_limits<float>::infinity());
  return path;
}

// Runs `codec_and_metrics` (YAML lines) on `trace` into a fresh folder under `dir`; returns the outcome.
ExperimentOutcome run(const TempDir& dir, const std::string& trace, const std::string& name, const std::string& codec_and_metrics) {
  const std::string yaml = "name: " + name + "\ntraces: " + trace + "\n" + codec_and_metrics;
  const ExperimentPlan plan = plan_experiment_document(parse_yaml_text(yaml, name + ".yaml"), {}, test::builtin_registry(), name + ".yaml");
  RunOptions options;
  options.out_dir = dir.file(name);
  options.progress = false;
  return run_experiment(plan, options, test::builtin_registry());
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kUniform = "codec:\n  key: {type: uniform, bits: 2, group: 4, axis: token}\n"
                             "  value: {type: uniform, bits: 2, group: 4, axis: token}\n"
                             "lifecycle: {type: paper, group: 2, residual: 2}\n";
const std::string kSemanticAttention =
    "codec:\n  key: {type: uniform, bits: 2, group: 4, axis: token}\n"
    "  value:\n    type: mixed_token\n    protector: {type: semantic_attention, count: 1}\n"
    "    protected: {type: uniform, bits: 4, group: 4, axis: token}\n"
    "    rest: {type: uniform, bits: 2, group: 4, axis: token}\n"
    "lifecycle: {type: paper, group: 2, residual: 2}\n";

// `vidkv run FILE --out DIR --quiet` with `yaml` written to FILE: the exit code and stderr.
std::pair<int, std::string> vidkv_run(const TempDir& dir, const std::string& name, const std::string& yaml) {
  const std::string file = dir.file(name + ".yaml"), err = dir.file(name + ".err");
  std::ofstream(file) << yaml;
  const std::string command = "'" + std::string(VIDKV_BINARY_DIR) + "/bin/vidkv' run '" + file + "' --out '" +
                              dir.file(name + "-out") + "' --quiet >/dev/null 2>'" + err + "'";
  const int status = std::system(command.c_str());
  std::stringstream text;
  text << std::ifstream(err).rdbuf();
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, text.str()};
}

}  // namespace

TEST_CASE("read_layer without the query part leaves /layers/NNN/query unread", "[traces][queries]") {
  TempDir dir;
  const std::string path = trace_with_bad_queries(dir);
  const TraceReader reader(path);
  const LayerData without = reader.read_layer(1, LayerParts{false});
  CHECK_FALSE(without.queries);
  CHECK(without.key.size() == static_cast<std::size_t>(SmallTrace::kKvHeads * SmallTrace::kTokens * SmallTrace::kDim));
  CHECK(without.key[0] == SmallTrace::key(1, 0, 0, 0));
  // With the query part (the default) the same layer is refused, naming the dataset.
  const std::string message = error_of([&] { reader.read_layer(1); });
  CHECK(message.find(path + ": /layers/001/query: non-finite value inf") != std::string::npos);
  // A reused LayerData that held queries drops them.
  LayerData reused = reader.read_layer(0);
  REQUIRE(reused.queries);
  reader.read_layer(1, reused, LayerParts{false});
  CHECK_FALSE(reused.queries);
}

TEST_CASE("reconstruction-only runs never read the recorded queries, attention metrics and semantic_attention do",
          "[experiments][queries]") {
  TempDir dir;
  const std::string path = trace_with_bad_queries(dir);
  // Reconstruction metrics and a codec that does not look at the queries: both layers replay.
  const ExperimentOutcome ok = run(dir, path, "reconstruction", kUniform + "metrics: [key_rel_error, value_rel_error, effective_bits]\n");
  CHECK(ok.cells_computed == 1);
  CHECK_FALSE(ok.summary.empty());
  // An attention metric reads them, and the damage is reported with the file and the dataset.
  const std::string attention = error_of([&] { run(dir, path, "attention", kUniform + "metrics: [key_rel_error, attn_kl]\n"); });
  CHECK(attention.find(path + ": /layers/001/query: non-finite value inf") != std::string::npos);
  // So does a codec whose protector scores from them, with reconstruction metrics only.
  const std::string protector =
      error_of([&] { run(dir, path, "protector", kSemanticAttention + "metrics: [value_rel_error]\n"); });
  CHECK(protector.find(path + ": /layers/001/query: non-finite value inf") != std::string::npos);
  // So do the decode-step metrics alone (the headline without any attn_* metric: they once went unread, and the
  // headline was silently empty).
  const std::string decode = error_of([&] {
    run(dir, path, "decode", kUniform + "metrics: [decode_attn_out_depth_error, key_mse]\n");
  });
  CHECK(decode.find(path + ": /layers/001/query: non-finite value inf") != std::string::npos);
}

TEST_CASE("the headline alone in metrics is computed: the run reads the recorded queries for it",
          "[experiments][queries][decode]") {
  // The bundled trace (recorded queries of its generated tokens) with only the headline and one reconstruction
  // metric: the trace's summary row has the headline, above 0 for KIVI-2.
  const std::string trace = std::string(VIDKV_SOURCE_DIR) + "/traces/data/smollm2-135m-longdoc.h5";
  TempDir dir;
  const ExperimentOutcome out =
      run(dir, "[\"" + trace + "\"]", "headline", "codec: {preset: kivi-2}\nmetrics: [decode_attn_out_depth_error, key_mse]\n");
  REQUIRE(out.summary.size() == 1);
  const ResultValue* headline = out.summary[0].get("decode_attn_out_depth_error");
  REQUIRE(headline);
  CHECK(std::get<double>(*headline) > 0.0);
  CHECK(out.summary[0].get("attn_kl") == nullptr);
}

TEST_CASE("a codec says whether it reads the recorded queries, through its composites", "[experiments][queries]") {
  const PluginRegistry& registry = test::builtin_registry();
  const ConfigNode uniform = parse_yaml_text("{type: uniform, bits: 2, group: 4, axis: token}", "u.yaml");
  CHECK_FALSE(registry.make_quantizer(uniform)->reads_recorded_queries());
  for (const char* protector : {"none", "random", "semantic_embedding", "semantic_attention"}) {
    INFO(protector);
    const ConfigNode mixed = parse_yaml_text(std::string("{type: mixed_token, protector: {type: ") + protector +
                                                 (std::string(protector) == "none" ? "" : ", count: 1") + "}, protected: {type: uniform, bits: 4, group: 4, axis: token}, "
                                                 "rest: {type: uniform, bits: 2, group: 4, axis: token}}",
                                             "m.yaml");
    CHECK(registry.make_quantizer(mixed)->reads_recorded_queries() == (std::string(protector) == "semantic_attention"));
  }
}

TEST_CASE("vidkv run validates the queries only when a run uses them, the trace identity does not depend on it",
          "[experiments][queries]") {
  TempDir dir;
  const std::string path = trace_with_bad_queries(dir);
  // The whole-trace validation before any cell reads /query only for a plan that uses the queries.
  const auto [ok_code, ok_err] = vidkv_run(dir, "reconstruction", "name: r\ntraces: " + path + "\n" + kUniform +
                                                                       "metrics: [key_rel_error, value_rel_error]\n");
  CHECK(ok_code == 0);
  INFO(ok_err);
  const auto [bad_code, bad_err] = vidkv_run(dir, "attention", "name: a\ntraces: " + path + "\n" + kUniform + "metrics: [attn_kl]\n");
  CHECK(bad_code != 0);
  CHECK(bad_err.find("/layers/001/query: non-finite value inf") != std::string::npos);
  // validate_trace with and without the query part: the same shapes hash and identity (the resume fingerprint).
  const std::string good = dir.file("good.h5");
  SmallTrace::write(good, DType::f16);
  const TraceValidationReport with = validate_trace(good), without = validate_trace(good, LayerParts{false});
  CHECK(with.layer_queries);
  CHECK(without.layer_queries);
  CHECK(with.shapes_hash == without.shapes_hash);
  CHECK(with.identity == without.identity);
  CHECK(without.values_checked < with.values_checked);
  CHECK_THROWS_AS(validate_trace(path), IoError);
  CHECK(validate_trace(path, LayerParts{false}).layers_checked == SmallTrace::kLayers);
}
