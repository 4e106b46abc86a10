// Kernel tiers of the runs (experiments/src/kernel_tiers.h): the tier each run's key and value quantizer reports
// on the plan's backend is written to provenance.json, and only inexact tiers change the resume fingerprint.
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "catch.h"
#include "test_registry.h"
#include "vidkv/core/cpu_fft_tier.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/kernel_tiers.h"

using namespace vidkv;
namespace fs = std::filesystem;

namespace {

struct Dir {
  fs::path path = fs::temp_directory_path() / ("vidkv-tiers-" + std::to_string(::getpid()));
  Dir() { fs::create_directories(path); }
  ~Dir() { fs::remove_all(path); }
};

ExperimentPlan two_runs(const Dir& d) {
  const fs::path yaml = d.path / "t.yaml";
  std::ofstream(yaml) << "name: tiers\ntraces: [\"" << VIDKV_SOURCE_DIR << "/traces/data/synthetic-default.h5\"]\n"
                      << "codec: {key: {type: uniform, bits: 2}, value: {type: uniform, bits: 2, axis: token}}\n"
                      << "metrics: [key_rel_error]\nsweep:\n  - {name: a}\n  - {name: b, codec.key.bits: 4}\n";
  return plan_experiment(yaml.string(), {}, test::builtin_registry());
}

}  // namespace

TEST_CASE("inexact kernel tiers enter the resume fingerprint, exact ones do not", "[experiments][tiers]") {
  Dir d;
  const ExperimentPlan plan = two_runs(d);
  std::vector<RunTiers> tiers(2);
  tiers[0].key = {"uniform:avx512", true};
  tiers[0].value = {"uniform:avx512", true};
  tiers[1].key = {"sign:cuda+cufft", false};
  tiers[1].value = {"uniform:cuda", true};
  CHECK(inexact_tier_fingerprint(plan, tiers) == "|b:key=sign:cuda+cufft");
  tiers[1].key.exact = true;
  CHECK(inexact_tier_fingerprint(plan, tiers).empty());
  CHECK(tiers_json(tiers[0]) ==
        R"({"key": {"name": "uniform:avx512", "exact": true}, "value": {"name": "uniform:avx512", "exact": true}})");
}

TEST_CASE("provenance.json names the backend and every run's kernel tiers", "[experiments][tiers]") {
  Dir d;
  const ExperimentPlan plan = two_runs(d);
  const BlockShape shape{2, 64, 64};
  const std::vector<RunTiers> tiers = run_kernel_tiers(plan, test::builtin_registry(), shape);
  REQUIRE(tiers.size() == 2);
  const KernelTier want = test::builtin_registry().make_quantizer(plan.runs[1].codec.at("key"))->tier(Device::cpu, shape);
  CHECK(tiers[1].key.name == want.name);
  CHECK(tiers[1].key.name.rfind("uniform:", 0) == 0);

  RunOptions options;
  options.out_dir = (d.path / "out").string();
  options.progress = false;
  run_experiment(plan, options, test::builtin_registry());
  std::ifstream in(d.path / "out" / "provenance.json");
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json p = nlohmann::json::parse(text.str());
  CHECK(p.at("backend") == "cpu");
  CHECK(p.at("tier_shape").get<std::string>().rfind("[", 0) == 0);
  REQUIRE(p.at("runs").size() == 2);
  CHECK(p.at("runs")[1].at("tiers").at("key").at("name").get<std::string>() == want.name);
  CHECK(p.at("runs")[1].at("tiers").at("key").at("exact").is_boolean());
  CHECK_FALSE(p.contains("metrics_device"));  // only with backend: cuda
}

TEST_CASE("the sign FFT tier that runs on the CPU enters the resume fingerprint when it is inexact",
          "[experiments][tiers][fft-tier]") {
  Dir d;
  const fs::path yaml = d.path / "fft.yaml";
  std::ofstream(yaml) << "name: fft\ntraces: [\"" << VIDKV_SOURCE_DIR << "/traces/data/synthetic-default.h5\"]\n"
                      << "codec: {key: {type: sign, fft: real}, value: {type: uniform, bits: 2}}\n"
                      << "metrics: [key_rel_error]\nsweep:\n  - {name: a}\n";
  const ExperimentPlan plan = plan_experiment(yaml.string(), {}, test::builtin_registry());
  const BlockShape shape{2, 64, 64};  // the AVX-512 transform's range (n = 64), where the CPU has it
  auto fingerprint = [&](CpuFftTier t) {
    const ScopedCpuFftTier scoped(t);
    return inexact_tier_fingerprint(plan, run_kernel_tiers(plan, test::builtin_registry(), shape));
  };
  // FFTW's per-row plans are the reference's bits: nothing enters. The batched plans are inexact on every CPU.
  CHECK(fingerprint(CpuFftTier::fftw).empty());
  const std::string batched = fingerprint(CpuFftTier::fftw_batched);
  CHECK(batched.find("|a:key=sign:") == 0);
  CHECK(batched.find("+fft-fftw-batched") != std::string::npos);
  CHECK(fingerprint(CpuFftTier::avx512) != batched);
}
