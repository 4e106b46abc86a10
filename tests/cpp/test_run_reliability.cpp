// `vidkv run` on hostile experiments and in hostile conditions (docs/reliability.md): bounded YAML, refused
// metrics and output places, one validation before any cell, results folders that are never mixed (fingerprint
// of each trace's identity, --resume required to reuse a folder, a lock), and kill-and-resume at 20 random points.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "results_compare.h"
#include "test_registry.h"
#include "trace_test_support.h"
#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/results_folder.h"
#include "vidkv/experiments/src/yaml_config.h"

namespace fs = std::filesystem;
using namespace vidkv;
using vidkv::test::EditTrace;
using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

const std::string kVidkv = std::string(VIDKV_BINARY_DIR) + "/bin/vidkv";

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The ConfigError message of planning `yaml` (fails the test when it plans).
std::string plan_error(const std::string& yaml) {
  try {
    plan_experiment_document(parse_yaml_text(yaml, "exp.yaml"), {}, test::builtin_registry(), "exp.yaml");
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("planned without an error:\n" << yaml);
  return "";
}

const std::string kHead = "name: t\ntraces: " + std::string(VIDKV_SOURCE_DIR) + "/traces/data/synthetic-default.h5\n"
                          "codec: {preset: kivi-2}\n";

struct Run {
  int exit_code = -1;
  std::string err;
};

Run run_vidkv(const TempDir& dir, const std::string& arguments) {
  const std::string err = dir.file("stderr.txt");
  const int status = std::system(("'" + kVidkv + "' " + arguments + " >/dev/null 2>'" + err + "'").c_str());
  Run r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream in(err);
  std::stringstream s;
  s << in.rdbuf();
  r.err = s.str();
  return r;
}

}  // namespace

TEST_CASE("a YAML 'billion laughs' of nested aliases is an error at a line, in bounded time and memory", "[experiments][hostile]") {
  std::string yaml = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 10; ++i) {  // a<i>: &a<i> [*a<i-1>, ... ten times]
    const std::string name = "a" + std::to_string(i);
    yaml += name + ": &" + name + " [" + join_names(std::vector<std::string>(10, "*a" + std::to_string(i - 1))) + "]\n";
  }
  const auto start = std::chrono::steady_clock::now();
  try {
    parse_yaml_text(yaml, "laughs.yaml");
    FAIL("10^10 values accepted");
  } catch (const ConfigError& e) {
    CHECK(contains(e.what(), "laughs.yaml:"));
    CHECK(contains(e.what(), "more than 20000 values"));
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("YAML nested deeper than 64 levels is an error", "[experiments][hostile]") {
  const std::string yaml = "a: " + std::string(100, '[') + std::string(100, ']') + "\n";
  try {
    parse_yaml_text(yaml, "deep.yaml");
    FAIL("accepted");
  } catch (const ConfigError& e) {
    CHECK(contains(e.what(), "deep.yaml:1:"));
  }
}

TEST_CASE("a sweep of more than 10000 runs is refused at the sweep's line before it is expanded", "[experiments][hostile]") {
  std::string yaml = kHead + "sweep:\n";
  for (const char* key : {"codec.key.bits", "codec.value.bits", "codec.key.group", "codec.value.group", "lifecycle.residual"})
    yaml += std::string("  ") + key + ": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n";  // 10^5 runs
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = plan_error(yaml);
  CHECK(contains(msg, "exp.yaml:5:"));
  CHECK(contains(msg, "more than 10000 runs"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("metrics: 7 and metrics: [] are refused with their YAML line", "[experiments][hostile]") {
  const std::string seven = plan_error(kHead + "metrics: 7\n");
  CHECK(contains(seven, "exp.yaml:4:"));
  CHECK(contains(seven, "unknown metric '7'"));
  const std::string empty = plan_error(kHead + "metrics: []\n");
  CHECK(contains(empty, "exp.yaml:4:"));
  CHECK(contains(empty, "the list is empty"));
}

TEST_CASE("a YAML output: outside the working directory is refused at its line, --out may name any place", "[experiments][hostile]") {
  for (const std::string out : {"/tmp/elsewhere/{name}", "../up/{name}", "results/../../up"}) {
    INFO(out);
    const ExperimentPlan plan =
        plan_experiment_document(parse_yaml_text(kHead + "output: " + out + "\n", "exp.yaml"), {}, test::builtin_registry(), "exp.yaml");
    try {
      check_output_inside_working_dir(plan);
      FAIL("accepted");
    } catch (const ConfigError& e) {
      CHECK(contains(e.what(), "exp.yaml:4:"));
      CHECK(contains(e.what(), "--out"));
    }
  }
  const ExperimentPlan inside =
      plan_experiment_document(parse_yaml_text(kHead + "output: results/x/{name}\n", "exp.yaml"), {}, test::builtin_registry(), "exp.yaml");
  CHECK_NOTHROW(check_output_inside_working_dir(inside));
}

TEST_CASE("a results folder that holds files is reused only with --resume, and one run at a time holds it", "[experiments][hostile]") {
  TempDir dir;
  const ExperimentPlan plan = plan_experiment_document(parse_yaml_text(kHead, "exp.yaml"), {}, test::builtin_registry(), "exp.yaml");
  const std::string out = dir.file("out");
  {
    ResultsFolder first(plan, out, false);  // a new folder
    CHECK(first.dir() == out);
    std::ofstream(out + "/results.csv") << "x\n";
    fs::create_directories(out + "/cells");
    try {
      ResultsFolder second(plan, out, true);
      FAIL("two holders of one folder");
    } catch (const ConfigError& e) {
      CHECK(contains(e.what(), "another vidkv run (process " + std::to_string(::getpid()) + ")"));
    }
  }
  try {
    ResultsFolder again(plan, out, false);
    FAIL("reused without --resume");
  } catch (const ConfigError& e) {
    CHECK(contains(e.what(), "--resume"));
  }
  CHECK_NOTHROW(ResultsFolder(plan, out, true));  // the lock went with the first holder
}

TEST_CASE("vidkv run applies every check of trace validate before any cell starts", "[experiments][hostile]") {
  TempDir dir;
  const std::string trace = dir.file("t.h5");
  SmallTrace::write(trace);
  {
    EditTrace e(trace);
    const std::int32_t unsorted[2] = {7, 6};  // validate refuses: query positions must be strictly increasing
    hid_t ds = H5Dopen2(e.file(), "/queries/positions", H5P_DEFAULT);
    REQUIRE(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, unsorted) >= 0);
    H5Dclose(ds);
  }
  const std::string exp = dir.file("exp.yaml");
  std::ofstream(exp) << "name: t\ntraces: " << trace << "\ncodec: {preset: kivi-2}\nlifecycle: {group: 4, residual: 4}\n";
  const std::string out = dir.file("out");
  const Run r = run_vidkv(dir, "run " + exp + " --quiet --out " + out);
  CHECK(r.exit_code == 1);
  CHECK(contains(r.err, trace + ": /queries/positions: entries must be strictly increasing"));
  CHECK_FALSE(fs::exists(out));  // refused before the results folder, let alone a cell
}

TEST_CASE("resuming after the trace file was replaced is refused instead of mixing results", "[experiments][hostile]") {
  TempDir dir;
  const std::string trace = dir.file("t.h5");
  SmallTrace::write(trace);
  const std::string exp = dir.file("exp.yaml");
  std::ofstream(exp) << "name: t\ntraces: " << trace << "\ncodec: {preset: kivi-2}\nlifecycle: {group: 4, residual: 4}\n";
  const std::string out = dir.file("out");
  REQUIRE(run_vidkv(dir, "run " + exp + " --quiet --out " + out).exit_code == 0);
  const Run again = run_vidkv(dir, "run " + exp + " --quiet --out " + out);
  CHECK(again.exit_code == 1);
  CHECK(contains(again.err, "--resume"));
  SmallTrace::write(trace, DType::f32);  // same path and shapes, other contents
  const Run resumed = run_vidkv(dir, "run " + exp + " --quiet --resume --out " + out);
  CHECK(resumed.exit_code == 1);
  INFO(resumed.err);
  // What changed (plan.fingerprint stores the items), and advice that works with --out.
  CHECK(contains(resumed.err, "different plan (changed: contents of trace " + trace + ": "));
  CHECK(contains(resumed.err, "give this plan a new --out folder (or delete " + out));
  SmallTrace::write(trace);  // the first contents again, but another seed
  const Run seeded = run_vidkv(dir, "run " + exp + " --quiet --resume --set seed=6 --out " + out);
  CHECK(seeded.exit_code == 1);
  CHECK(contains(seeded.err, "different plan (changed: seed: 6 (was: 0)"));
}

TEST_CASE("vidkv run killed with SIGKILL at 20 random points in a row, then resumed, ends with the rows of a whole run",
          "[experiments][resume][hostile]") {
  TempDir dir;
  const std::string trace = dir.file("t.h5");
  REQUIRE(std::system(("'" + kVidkv + "' trace synth --shape 2x2x512x64 --seed 4 -o " + trace + " >/dev/null").c_str()) == 0);
  const std::string exp = dir.file("exp.yaml");
  std::ofstream(exp) << "name: kills\ntraces: [" << trace << "]\nseed: 2\nlifecycle: {group: 32, residual: 32}\n"
                     << "codec:\n  key: {type: uniform, bits: 2}\n  value: {type: uniform, bits: 2, axis: token}\n"
                     << "sweep:\n  codec.key.bits: [1, 2, 3, 4, 5, 6, 7, 8]\n  codec.value.bits: [1, 2, 4, 8]\n";
  const std::string whole = dir.file("whole"), killed = dir.file("killed");
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(run_vidkv(dir, "run " + exp + " --quiet --out " + whole).exit_code == 0);
  const auto full_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count();
  // The fixed part of a run (start, planning, validation, folder, lock, final files): a resume with nothing to do,
  // the fastest of three (on a loaded machine one slow start would widen every kill window below, and an attempt
  // could then finish the remaining cells before its kill).
  long long fixed_ms = -1;
  for (int i = 0; i < 3; ++i) {
    const auto t1 = std::chrono::steady_clock::now();
    REQUIRE(run_vidkv(dir, "run " + exp + " --quiet --resume --out " + whole).exit_code == 0);
    const long long ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t1).count();
    fixed_ms = fixed_ms < 0 ? ms : std::min(fixed_ms, ms);
  }

  std::mt19937 rng(20261130);
  int kills = 0, attempts = 0;
  while (kills < 20 && attempts < 200) {
    ++attempts;
    const bool first = !fs::exists(killed);
    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      const int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      if (first)
        ::execl(kVidkv.c_str(), kVidkv.c_str(), "run", exp.c_str(), "--quiet", "--out", killed.c_str(), static_cast<char*>(nullptr));
      else
        ::execl(kVidkv.c_str(), kVidkv.c_str(), "run", exp.c_str(), "--quiet", "--resume", "--out", killed.c_str(),
                static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // A point in the fixed part or in the first 40th of the cells' time, so that 20 interrupted runs together
    // compute well under a whole run: in start-up, validation, the folder and its lock, a cell, the final files.
    const long long cells_ms = std::max<long long>(1, full_ms - fixed_ms);
    const int delay = std::uniform_int_distribution<int>(0, static_cast<int>(fixed_ms + cells_ms / 40))(rng);
    std::this_thread::sleep_for(std::chrono::milliseconds(delay));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
      ++kills;
    } else {
      INFO("attempt " << attempts << " ended before the kill, exit " << WEXITSTATUS(status));
      REQUIRE(WEXITSTATUS(status) == 0);
      break;  // all cells were done: nothing left to interrupt
    }
  }
  INFO("kills: " << kills << " in " << attempts << " attempts; a whole run takes " << full_ms << " ms, its fixed part "
                  << fixed_ms << " ms");
  CHECK(kills >= 20);
  REQUIRE(run_vidkv(dir, "run " + exp + " --quiet --resume --out " + killed).exit_code == 0);
  CHECK(test::csv_without_seconds(fs::path(killed) / "results.csv") == test::csv_without_seconds(fs::path(whole) / "results.csv"));
}

TEST_CASE("a result cell damaged after it was written is computed again by --resume and refused by vidkv merge",
          "[experiments][hostile]") {
  // Cell files are written whole (write_file_atomic); a cut at a line end or a file replaced by other text reads
  // back as rows, which were taken into results.csv as they were (a run's rows missing, exit status 0).
  TempDir dir;
  const std::string trace = dir.file("t.h5");
  SmallTrace::write(trace);
  const std::string exp = dir.file("exp.yaml");
  std::ofstream(exp) << "name: t\ntraces: " << trace << "\ncodec: {preset: kivi-2}\nlifecycle: {group: 4, residual: 4}\n"
                     << "sweep:\n  codec.key.bits: [2, 4]\n";
  const std::string whole = dir.file("whole"), out = dir.file("out");
  REQUIRE(run_vidkv(dir, "run " + exp + " --quiet --out " + whole).exit_code == 0);
  REQUIRE(run_vidkv(dir, "run " + exp + " --quiet --out " + out).exit_code == 0);
  std::vector<fs::path> cells;
  for (const auto& e : fs::directory_iterator(fs::path(out) / "cells")) cells.push_back(e.path());
  std::sort(cells.begin(), cells.end());
  REQUIRE(cells.size() == 2);
  {  // the first cell cut after its third row (a line end), the second replaced by one word
    std::ifstream in(cells[0]);
    std::string text, line;
    for (int i = 0; i < 4 && std::getline(in, line); ++i) text += line + "\n";
    in.close();
    std::ofstream(cells[0]) << text;
    std::ofstream(cells[1]) << "garbage\n";
  }
  const Run merged = run_vidkv(dir, "merge " + out);
  CHECK(merged.exit_code == 1);
  CHECK(contains(merged.err, cells[0].string() + ": not a whole result cell (its last row is not the trace row"));
  const Run resumed = run_vidkv(dir, "run " + exp + " --resume --out " + out);
  CHECK(resumed.exit_code == 0);
  CHECK(contains(resumed.err, cells[0].string() + " is not a whole result cell"));
  CHECK(contains(resumed.err, cells[1].string() + " is not a whole result cell (it holds no rows); computing it again"));
  CHECK(vidkv::test::csv_without_seconds(fs::path(out) / "results.csv") ==
        vidkv::test::csv_without_seconds(fs::path(whole) / "results.csv"));
  CHECK(run_vidkv(dir, "merge " + out).exit_code == 0);  // the cells are whole again
}

TEST_CASE("VIDKV_CPU_KERNELS with another value than portable is refused, not ignored", "[experiments][hostile]") {
  // A typo (VIDKV_CPU_KERNELS=protable) ran the AVX-512 kernels silently, where VIDKV_SIGN_FFT=bogus was refused.
  TempDir dir;
  const std::string trace = dir.file("t.h5");
  SmallTrace::write(trace);
  const std::string exp = dir.file("exp.yaml");
  std::ofstream(exp) << "name: t\ntraces: " << trace << "\ncodec: {preset: vidkv-k1.5-v1.58}\nlifecycle: {group: 4, residual: 4}\n";
  const std::string err = dir.file("stderr.txt");
  const std::string run = "'" + kVidkv + "' run '" + exp + "' --quiet --out '" + dir.file("out") + "' >/dev/null 2>'" + err + "'";
  const int status = std::system(("VIDKV_CPU_KERNELS=protable " + run).c_str());
  CHECK((WIFEXITED(status) ? WEXITSTATUS(status) : -1) == 1);
  std::ifstream in(err);
  std::stringstream s;
  s << in.rdbuf();
  CHECK(contains(s.str(), "environment variable VIDKV_CPU_KERNELS: 'protable' is not a valid value"));
  CHECK(std::system(("VIDKV_CPU_KERNELS=portable " + run).c_str()) == 0);
}
