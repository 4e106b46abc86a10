// The key under vidkv run's summary table (experiments/src/column_key.h).
#include <string>
#include <vector>

#include "catch.h"
#include "vidkv/experiments/src/column_key.h"
#include "vidkv/experiments/src/experiment_plan.h"

using namespace vidkv;

TEST_CASE("every metric of vidkv run and vidkv live has a line in the summary's key", "[experiments][results]") {
  // A metric added to either list without a key entry fails here, naming it.
  for (const auto* names : {&all_metric_names(), &all_live_metric_names()})
    for (const std::string& m : *names) {
      INFO(m);
      CHECK(column_has_key(m));
    }
  CHECK_FALSE(column_has_key("run"));
  CHECK_FALSE(column_has_key("trace"));
  CHECK(column_has_key("lifecycle"));  // "paper G=32 R=128" needs its letters explained
}

TEST_CASE("the summary's key names only the table's columns, the headline first", "[experiments][results]") {
  const std::vector<std::string> cols = {"run", "lifecycle", "decode_attn_out_depth_error", "key_rel_error", "attn_kl",
                                         "effective_bits"};
  const std::string key = summary_column_key(cols);
  // A heading, then one line per group present: headline; key_rel_error (its group without value_rel_error);
  // attn_kl; effective_bits; lifecycle.
  CHECK(key.rfind("key (", 0) == 0);
  CHECK(key.find("\n  decode_attn_out_depth_error: the headline, lower is better") != std::string::npos);
  CHECK(key.find("\n  key_rel_error: lower is better") != std::string::npos);
  CHECK(key.find("value_rel_error") == std::string::npos);
  CHECK(key.find("\n  attn_kl: lower is better") != std::string::npos);
  CHECK(key.find("\n  effective_bits: bits per element from the bytes stored") != std::string::npos);
  CHECK(key.find("nominal_bits") == std::string::npos);
  CHECK(key.find("\n  seconds:") == std::string::npos);
  CHECK(key.find("decode_attn_out_depth_error") < key.find("key_rel_error"));
  std::size_t lines = 0;
  for (char c : key) lines += c == '\n';
  CHECK(lines == 6);
  // The lifecycle last (found, and after every metric line).
  REQUIRE(key.find("\n  lifecycle: which tokens are quantized when") != std::string::npos);
  CHECK(key.find("\n  lifecycle: which tokens are quantized when") > key.find("effective_bits"));
  // Grouped columns share a line, in the entry's order.
  CHECK(summary_column_key({"value_snr_db", "key_snr_db"}).find("  key_snr_db, value_snr_db: higher is better") !=
        std::string::npos);
  CHECK(summary_column_key({"run", "trace"}).empty());
  // A group's line explains only its shown columns.
  const std::string decode = summary_column_key({"decode_attn_out_rel_error"});
  CHECK(decode.find("\n  decode_attn_out_rel_error: lower is better: the generated tokens' queries against the cache "
                    "as it stood at their decode step: output error relative to |o|\n") != std::string::npos);
  CHECK(decode.find("rel_value") == std::string::npos);
  CHECK(decode.find("mse") == std::string::npos);
  const std::string two = summary_column_key({"attn_out_rel_error", "attn_out_rel_error_value_only"});
  CHECK(two.find(": with K^ and V^; value_only: with K and V^\n") != std::string::npos);
  CHECK(two.find("key_only") == std::string::npos);
  // The heading says how values are pooled: vidkv run's over a trace's layers, vidkv live's over a run's prompts.
  CHECK(key.rfind("key (per trace: errors are means over layers", 0) == 0);
  const std::string live = summary_column_key({"run", "perplexity", "effective_bits"}, KeyFor::live);
  CHECK(live.rfind("key (per run, over every prompt:", 0) == 0);
  CHECK(live.find("per trace") == std::string::npos);
}

TEST_CASE("live mode's key speaks of the exact cache, the model's dtype and the run's wall time", "[experiments][results]") {
  const std::vector<std::string> cols = {"run", "perplexity", "next_token_kl", "greedy_agreement", "compression_ratio", "seconds"};
  const std::string live = summary_column_key(cols, KeyFor::live), run = summary_column_key(cols, KeyFor::run);
  // The reference of vidkv live is the exact cache in the model's own dtype (fp32 for a float32 model), not fp16.
  CHECK(live.find("fp16") == std::string::npos);
  CHECK(live.find("against the exact cache's") != std::string::npos);
  CHECK(live.find("\n  compression_ratio: the model's K/V dtype's bits / effective_bits") != std::string::npos);
  CHECK(live.find("\n  seconds: the run's wall time over every prompt") != std::string::npos);
  CHECK(run.find("\n  compression_ratio: the trace dtype's bits / effective_bits") != std::string::npos);
  CHECK(run.find("\n  seconds: wall time of replay and metrics, summed over layers") != std::string::npos);
}
