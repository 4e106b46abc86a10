// Replay's default schedule is the live model's: the prefill is the trace's prompt (tokens before the first
// generated one), every generated token a decode step (algorithms.md section 5); `prefill_tokens` set explicitly
// (-1: the whole trace) is kept; the results name the lifecycle each run used.
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <variant>

#include "catch.h"
#include "test_registry.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"

namespace fs = std::filesystem;
using namespace vidkv;

namespace {

double number(const ResultRow& r, const char* column) {
  const ResultValue* v = r.get(column);
  REQUIRE(v);
  return std::get<double>(*v);
}

}  // namespace

TEST_CASE("replay prefills the trace's prompt by default, prefill_tokens -1 replays the whole trace as prefill",
          "[experiments][schedule]") {
  const fs::path dir = fs::temp_directory_path() / ("vidkv-schedule-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path yaml = dir / "s.yaml";
  std::ofstream(yaml) << "name: schedule\ntraces: [\"" << VIDKV_SOURCE_DIR << "/traces/data/smollm2-135m-longdoc.h5\"]\n"
                      << "codec: {preset: vidkv-2}\nmetrics: [effective_bits]\nsweep:\n"
                      << "  - {name: live-schedule}\n  - {name: all-prefill, lifecycle: {prefill_tokens: -1}}\n"
                      << "  - {name: kivi, codec: {preset: kivi-2}}\n";
  const ExperimentPlan plan = plan_experiment(yaml.string(), {}, test::builtin_registry());
  RunOptions options;
  options.out_dir = (dir / "out").string();
  options.progress = false;
  const ExperimentOutcome out = run_experiment(plan, options, test::builtin_registry());
  REQUIRE(out.summary.size() == 3);
  // The bundled trace: 464 prompt tokens, then 35 generated (traces/README-recorded.md). vidkv-2 stores 3 bits per
  // element in blocks (2-bit codes, fp16 scale and min per 32 tokens) and 16 in the fp16 residual (paper, G = 32,
  // R = 128). Prefill 464: blocks hold 448 tokens, the residual 16 + 35 decode steps = 51 < R:
  // (448 * 3 + 51 * 16) / 499 = 2160 / 499 = 4.3287 (what `vidkv live` counts on the same tokens).
  const ResultRow& live = out.summary[0];
  CHECK(number(live, "prefill_tokens") == 464);
  CHECK(number(live, "effective_bits") == Approx(2160.0 / 499.0).epsilon(1e-12));
  CHECK(std::get<std::string>(*live.get("lifecycle")) == "paper G=32 R=128");
  // Prefill 499 (-1): blocks hold 480 tokens, 19 stay full precision: (480 * 3 + 19 * 16) / 499 = 1744 / 499.
  const ResultRow& all = out.summary[1];
  CHECK(number(all, "prefill_tokens") == -1);
  CHECK(number(all, "effective_bits") == Approx(1744.0 / 499.0).epsilon(1e-12));
  // A preset's own lifecycle is named (kivi-2: the kivi lifecycle), not the file's default.
  CHECK(std::get<std::string>(*out.summary[2].get("lifecycle")) == "kivi G=32 R=128");
  fs::remove_all(dir);
}
