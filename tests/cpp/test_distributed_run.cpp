// One experiment over several processes (docs/distributed.md): the cell partition (golden and property tests),
// --shard i/N job-array shards and vidkv merge, and -- in a build with MPI -- mpirun -np 4 vidkv run on the bundled
// paper experiments. Every end-to-end case compares with a single-process run of the same plan: the same rows in
// the same order (every column but `seconds`), and a shard or rank killed mid-run resumes with no row lost or
// duplicated.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <set>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "results_compare.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/cell_partition.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/yaml_config.h"

namespace fs = std::filesystem;
using namespace vidkv;
using vidkv::test::csv_fields;
using vidkv::test::csv_without_seconds;

namespace {

const std::string kVidkv = std::string(VIDKV_BINARY_DIR) + "/bin/vidkv";

// Exit status of `cmd` (its output discarded); -1 when killed by a signal.
int run_quiet(const std::string& cmd) {
  const int status = std::system((cmd + " >/dev/null 2>&1").c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// A fresh folder under the temporary directory, removed at the end of the test.
struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& tag) : path(fs::temp_directory_path() / (tag + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
};

// A synthetic trace and a 12-cell experiment on it (6 key bit widths x 2 value bit widths: equal codec costs, so the
// partition deals cells round-robin: shard s of 4 owns cells s, s + 4, s + 8).
fs::path write_experiment(const fs::path& dir) {
  const fs::path trace = dir / "t.h5";
  REQUIRE(run_quiet(kVidkv + " trace synth --shape 8x2x1024x64 --seed 3 -o " + trace.string()) == 0);
  const fs::path exp = dir / "exp.yaml";
  std::ofstream(exp) << "name: dist\ntraces: [" << trace.string() << "]\nseed: 5\n"
                     << "codec:\n  key: {type: uniform, bits: 2}\n  value: {type: uniform, bits: 2, axis: token}\n"
                     << "sweep:\n  codec.key.bits: [1, 2, 3, 4, 5, 6]\n  codec.value.bits: [2, 4]\n";
  return exp;
}

fs::path cell_file(const fs::path& dir, int cell) {
  char name[64];
  std::snprintf(name, sizeof name, "run%04d-trace0000.tsv", cell);
  return dir / "cells" / name;
}

// Data rows of results.csv, and whether each (run, trace, layer, kv_head) occurs once.
std::size_t data_rows(const fs::path& csv, bool* unique) {
  std::ifstream in(csv);
  std::string line;
  std::getline(in, line);
  std::set<std::string> keys;
  std::size_t n = 0;
  *unique = true;
  while (std::getline(in, line)) {
    const auto f = csv_fields(line);
    REQUIRE(f.size() >= 5);
    *unique = keys.insert(f[1] + "|" + f[2] + "|" + f[3] + "|" + f[4]).second && *unique;
    ++n;
  }
  return n;
}

// Starts `cmd` through sh in a new process group; returns its process id.
pid_t start(const std::string& cmd) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::setpgid(0, 0);
    ::execl("/bin/sh", "sh", "-c", (cmd + " >/dev/null 2>&1").c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Waits up to `seconds` for `pred`.
template <typename Pred>
bool wait_for(Pred pred, int seconds = 120) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return true;
}

// Exit status of `pid` (waited for at most 120 s; then its process group is killed and -1 returned).
int finish(pid_t pid) {
  int status = 0;
  const bool done = wait_for([&] { return ::waitpid(pid, &status, WNOHANG) == pid; });
  if (!done) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The process id written in a lock file of a results folder (results_folder.h), 0 when not yet written.
pid_t lock_holder(const fs::path& lock) {
  long pid = 0;
  std::ifstream(lock) >> pid;
  return static_cast<pid_t>(pid);
}

#ifdef VIDKV_WITH_MPI
// mpirun for `np` ranks on this machine. Open MPI refuses to start as root without --allow-run-as-root (CI runs as
// root); --oversubscribe lets 4 ranks share 2 cores; the shared-memory transport copies through its buffers rather
// than cross-memory attach, which containers often forbid (ptrace), and these runs exchange only a few bytes.
std::string mpirun(int np) {
  std::string cmd = std::string(VIDKV_MPIEXEC) + " -np " + std::to_string(np) +
                    " --oversubscribe --mca btl_vader_single_copy_mechanism none";
  if (::geteuid() == 0) cmd += " --allow-run-as-root";
  return cmd;
}
#endif

}  // namespace

TEST_CASE("partition_cells: longest processing time first, golden", "[distributed][partition]") {
  // Costs 5 4 3 3 2 1 over 2 shards, by decreasing cost (ties: the earlier cell), each to the lighter shard (ties:
  // shard 0): 5 -> 0 (5, 0); 4 -> 1 (5, 4); 3 (cell 2) -> 1 (5, 7); 3 (cell 3) -> 0 (8, 7); 2 -> 1 (8, 9); 1 -> 0 (9, 9).
  CHECK(partition_cells({5, 4, 3, 3, 2, 1}, 2) == std::vector<int>{0, 1, 1, 0, 1, 0});
  // Equal costs: round-robin in plan order.
  CHECK(partition_cells({1, 1, 1, 1, 1}, 2) == std::vector<int>{0, 1, 0, 1, 0});
  CHECK(partition_cells(std::vector<double>(6, 2.0), 4) == std::vector<int>{0, 1, 2, 3, 0, 1});
  // More shards than cells: the extra shards own nothing. One shard owns everything.
  CHECK(partition_cells({3, 7}, 4) == std::vector<int>{1, 0});
  CHECK(partition_cells({3, 7, 1}, 1) == std::vector<int>{0, 0, 0});
  CHECK(partition_cells({}, 3).empty());
  CHECK_THROWS_AS(partition_cells({1}, 0), ValueError);
}

TEST_CASE("partition_cells: every cell once, within Graham's bound, deterministic", "[distributed][partition]") {
  std::mt19937 rng(17);
  std::uniform_real_distribution<double> cost(0.1, 10.0);
  for (int trial = 0; trial < 50; ++trial) {
    const int shards = 1 + trial % 16;
    std::vector<double> costs(static_cast<std::size_t>(1 + trial * 3));
    for (auto& c : costs) c = cost(rng);
    const std::vector<int> owner = partition_cells(costs, shards);
    REQUIRE(owner.size() == costs.size());
    std::vector<double> load(static_cast<std::size_t>(shards), 0.0);
    for (std::size_t i = 0; i < costs.size(); ++i) {
      REQUIRE(owner[i] >= 0);
      REQUIRE(owner[i] < shards);
      load[static_cast<std::size_t>(owner[i])] += costs[i];
    }
    // List scheduling never exceeds the mean load plus the largest cell (Graham 1966); LPT is a list schedule.
    double total = 0;
    for (double c : costs) total += c;
    const double largest = *std::max_element(costs.begin(), costs.end());
    CHECK(*std::max_element(load.begin(), load.end()) <= total / shards + largest + 1e-9);
    CHECK(partition_cells(costs, shards) == owner);
  }
}

TEST_CASE("parse_shard_spec: i/N counted from 0, one error per kind of bad text", "[distributed][cli]") {
  const ShardSpec s = parse_shard_spec("2/4");
  CHECK(s.index == 2);
  CHECK(s.count == 4);
  CHECK(s.str() == "2/4");
  CHECK(parse_shard_spec("0/1").whole());
  for (const char* bad : {"4/4", "-1/4", "1/0", "a/4", "1", "1/4x", "", "/4", "1/", "1/100001"})
    CHECK_THROWS_AS(parse_shard_spec(bad), ConfigError);
}

TEST_CASE("codec_cost: 1 for the metrics, 0.25 per plugin block, 1 per token protector", "[distributed][partition]") {
  const ConfigNode doc = parse_yaml_text(
      "name: cost\ntraces: [traces/data/smollm2-135m-longdoc.h5]\ncodec: {preset: fp16}\nsweep:\n"
      "  - {name: fp16, codec: {preset: fp16}}\n  - {name: stp, codec: {preset: vidkv-k1.5-v1.66-stp}}\n",
      "test");
  const ExperimentPlan plan = plan_experiment_document(doc, {}, test::builtin_registry(), "test");
  REQUIRE(plan.runs.size() == 2);
  // fp16: key identity + value identity = 1 + 0.25 + 0.25.
  CHECK(codec_cost(plan.runs[0]) == 1.5);
  // STP: key mixed_channel + selector + high + low (4 x 0.25); value mixed_token + protected + rest (3 x 0.25) and the
  // protector (1): 1 + 1 + 0.75 + 1.
  CHECK(codec_cost(plan.runs[1]) == 3.75);
  // A cell's cost: tokens x layers x KV heads x head_dim x codec cost, run-major.
  const std::vector<double> costs = cell_costs(plan, {TraceSize{30, 3, 499, 64}});
  CHECK(costs == std::vector<double>{30.0 * 3 * 499 * 64 * 1.5, 30.0 * 3 * 499 * 64 * 3.75});
  CHECK_THROWS_AS(cell_costs(plan, {}), ValueError);
}

TEST_CASE("vidkv run --shard i/N then vidkv merge writes what one process writes", "[distributed][shard]") {
  const TempDir tmp("vidkv-shards");
  const fs::path exp = write_experiment(tmp.path);
  const fs::path whole = tmp.path / "whole", sharded = tmp.path / "sharded";
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + whole.string()) == 0);
  for (int i = 0; i < 4; ++i)
    REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --shard " + std::to_string(i) + "/4 --out " +
                      sharded.string()) == 0);
  CHECK_FALSE(fs::exists(sharded / "results.csv"));  // shards never assemble
  REQUIRE(run_quiet(kVidkv + " merge " + sharded.string()) == 0);
  CHECK(csv_without_seconds(sharded / "results.csv") == csv_without_seconds(whole / "results.csv"));
  bool unique = false;
  CHECK(data_rows(sharded / "results.csv", &unique) == 12 * (8 * 3 + 1));  // per cell: 8 layers x (2 heads + layer) + trace
  CHECK(unique);
  // A shard run again without --resume refuses (its cells are stored); a merge of a folder without cells.json too.
  CHECK(run_quiet(kVidkv + " run " + exp.string() + " --quiet --shard 1/4 --out " + sharded.string()) == 1);
  CHECK(run_quiet(kVidkv + " merge " + tmp.path.string()) == 1);
  CHECK(run_quiet(kVidkv + " run " + exp.string() + " --shard 4/4 --out " + sharded.string()) == 1);
  // A shard into the folder of a finished one-process run refuses, saying so (not "an earlier run of this shard").
  const fs::path said = tmp.path / "said.txt";
  const int status = std::system((kVidkv + " run " + exp.string() + " --quiet --shard 0/2 --out " + whole.string() +
                                   " >/dev/null 2>" + said.string()).c_str());
  CHECK((WIFEXITED(status) && WEXITSTATUS(status) == 1));
  std::ifstream in(said);
  const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  CHECK(text.find("holds a finished experiment's results (results.csv)") != std::string::npos);
}

TEST_CASE("a shard killed mid-run resumes with no row lost or duplicated", "[distributed][shard][resume]") {
  const TempDir tmp("vidkv-shard-kill");
  const fs::path exp = write_experiment(tmp.path);
  const fs::path whole = tmp.path / "whole", sharded = tmp.path / "sharded";
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + whole.string()) == 0);
  for (int i : {0, 1, 3})
    REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --shard " + std::to_string(i) + "/4 --out " +
                      sharded.string()) == 0);
  // Shard 2 owns cells 2, 6 and 10: killed once cell 2 is stored, in the middle of cell 6.
  const pid_t pid = start("exec " + kVidkv + " run " + exp.string() + " --quiet --shard 2/4 --out " + sharded.string());
  REQUIRE(wait_for([&] { return fs::exists(cell_file(sharded, 2)); }));
  ::kill(pid, SIGKILL);
  CHECK(finish(pid) == 128 + SIGKILL);
  REQUIRE_FALSE(fs::exists(cell_file(sharded, 10)));  // killed before its last cell
  // The merge names what is missing and writes nothing.
  CHECK(run_quiet(kVidkv + " merge " + sharded.string()) == 1);
  CHECK_FALSE(fs::exists(sharded / "results.csv"));
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --resume --shard 2/4 --out " + sharded.string()) == 0);
  REQUIRE(run_quiet(kVidkv + " merge " + sharded.string()) == 0);
  CHECK(csv_without_seconds(sharded / "results.csv") == csv_without_seconds(whole / "results.csv"));
  bool unique = false;
  CHECK(data_rows(sharded / "results.csv", &unique) == 12 * 25);
  CHECK(unique);
}

TEST_CASE("a vidkv built without MPI refuses to be one of several mpirun processes", "[distributed][mpi]") {
#ifdef VIDKV_WITH_MPI
  VIDKV_SKIP("built with MPI: mpirun splits the experiment (the tests below)");
#else
  const TempDir tmp("vidkv-no-mpi");
  const fs::path exp = write_experiment(tmp.path);
  // What Open MPI's mpirun sets for each of 4 ranks: every process would otherwise run all cells into its own folder.
  CHECK(run_quiet("OMPI_COMM_WORLD_SIZE=4 " + kVidkv + " run " + exp.string() + " --quiet --out " +
                  (tmp.path / "out").string()) == 1);
  CHECK_FALSE(fs::exists(tmp.path / "out" / "results.csv"));
  CHECK(run_quiet("OMPI_COMM_WORLD_SIZE=1 " + kVidkv + " run " + exp.string() + " --quiet --out " +
                  (tmp.path / "one").string()) == 0);
#endif
}

TEST_CASE("mpirun -np 4 vidkv run on the paper experiments writes what one process writes", "[distributed][mpi]") {
#ifndef VIDKV_WITH_MPI
  VIDKV_SKIP("built without MPI (VIDKV_ENABLE_MPI=OFF)");
#else
  const TempDir tmp("vidkv-mpi-paper");
  std::vector<fs::path> experiments;
  for (const auto& e : fs::directory_iterator(fs::path(VIDKV_SOURCE_DIR) / "experiments" / "paper"))
    if (e.path().extension() == ".yaml") experiments.push_back(e.path());
  std::sort(experiments.begin(), experiments.end());
  REQUIRE(experiments.size() >= 7);
  for (const fs::path& exp : experiments) {
    INFO(exp.filename().string());
    const fs::path one = tmp.path / ("one-" + exp.stem().string()), four = tmp.path / ("mpi-" + exp.stem().string());
    REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + one.string()) == 0);
    REQUIRE(run_quiet(mpirun(4) + " " + kVidkv + " run " + exp.string() + " --quiet --out " + four.string()) == 0);
    CHECK(csv_without_seconds(four / "results.csv") == csv_without_seconds(one / "results.csv"));
    for (int rank = 0; rank < 4; ++rank)  // every rank ran its shard
      CHECK(fs::exists(four / "shards" / ("shard-000" + std::to_string(rank) + "-of-0004.json")));
  }
#endif
}

TEST_CASE("an MPI rank killed mid-run: mpirun --resume ends with no row lost or duplicated", "[distributed][mpi][resume]") {
#ifndef VIDKV_WITH_MPI
  VIDKV_SKIP("built without MPI (VIDKV_ENABLE_MPI=OFF)");
#else
  const TempDir tmp("vidkv-mpi-kill");
  const fs::path exp = write_experiment(tmp.path);
  const fs::path whole = tmp.path / "whole", ranks = tmp.path / "ranks";
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + whole.string()) == 0);
  const pid_t launcher = start(mpirun(4) + " " + kVidkv + " run " + exp.string() + " --quiet --out " + ranks.string());
  // Rank 2 owns cells 2, 6 and 10; its process id is in its shard lock. Killed once cell 2 is stored.
  const fs::path lock = ranks / "shards" / "shard-0002-of-0004.lock";
  REQUIRE(wait_for([&] { return fs::exists(cell_file(ranks, 2)) && lock_holder(lock) > 0; }));
  REQUIRE(::kill(lock_holder(lock), SIGKILL) == 0);
  CHECK(finish(launcher) != 0);  // mpirun ends the job when a rank dies
  REQUIRE_FALSE(fs::exists(cell_file(ranks, 10)));
  CHECK_FALSE(fs::exists(ranks / "results.csv"));
  REQUIRE(run_quiet(mpirun(4) + " " + kVidkv + " run " + exp.string() + " --quiet --resume --out " + ranks.string()) == 0);
  CHECK(csv_without_seconds(ranks / "results.csv") == csv_without_seconds(whole / "results.csv"));
  bool unique = false;
  CHECK(data_rows(ranks / "results.csv", &unique) == 12 * 25);
  CHECK(unique);
#endif
}
