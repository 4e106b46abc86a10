// End-to-end: `vidkv run` killed with SIGKILL in the middle and continued with --resume ends with exactly the rows
// of an uninterrupted run (every column but `seconds`). Runs the real binary on a synthetic trace.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "results_compare.h"

namespace fs = std::filesystem;

using vidkv::test::csv_without_seconds;

namespace {

const std::string kVidkv = std::string(VIDKV_BINARY_DIR) + "/bin/vidkv";

int run_quiet(const std::string& cmd) { return std::system((cmd + " >/dev/null 2>&1").c_str()); }

std::size_t count_cells(const fs::path& dir) {
  std::size_t n = 0;
  if (!fs::exists(dir / "cells")) return 0;
  for (const auto& e : fs::directory_iterator(dir / "cells"))
    if (e.path().extension() == ".tsv") ++n;
  return n;
}

}  // namespace

TEST_CASE("an experiment killed with SIGKILL resumes to the same results", "[experiments][resume]") {
  const fs::path dir = fs::temp_directory_path() / ("vidkv-resume-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path trace = dir / "t.h5";
  REQUIRE(run_quiet(kVidkv + " trace synth --shape 4x2x1024x64 --seed 3 -o " + trace.string()) == 0);
  const fs::path exp = dir / "exp.yaml";
  std::ofstream(exp) << "name: resume\ntraces: [" << trace.string() << "]\nseed: 5\n"
                     << "codec:\n  key: {type: uniform, bits: 2}\n  value: {type: uniform, bits: 2, axis: token}\n"
                     << "sweep:\n  codec.key.bits: [1, 2, 3, 4, 5, 6, 7, 8]\n";
  const fs::path whole = dir / "whole", killed = dir / "killed";
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + whole.string()) == 0);
  REQUIRE(count_cells(whole) == 8);

  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    ::execl(kVidkv.c_str(), kVidkv.c_str(), "run", exp.c_str(), "--quiet", "--out", killed.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  // Kill as soon as the first cell is stored: the run is then certainly in the middle of the next one.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_cells(killed) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGKILL);
  int status = 0;
  ::waitpid(pid, &status, 0);
  const std::size_t done_at_kill = count_cells(killed);
  INFO("cells stored when killed: " << done_at_kill);
  REQUIRE(done_at_kill >= 1);
  REQUIRE(done_at_kill < 8);  // killed mid-way, not after the end
  CHECK_FALSE(fs::exists(killed / "results.csv"));

  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --resume --out " + killed.string()) == 0);
  CHECK(count_cells(killed) == 8);
  CHECK(csv_without_seconds(killed / "results.csv") == csv_without_seconds(whole / "results.csv"));
  // A resume with a different plan is refused rather than mixing results.
  CHECK(run_quiet(kVidkv + " run " + exp.string() + " --quiet --resume --set seed=6 --out " + killed.string()) != 0);
  fs::remove_all(dir);
}

TEST_CASE("an experiment interrupted by SIGINT says where its cells are kept, ends by the signal, and resumes",
          "[experiments][resume]") {
  // Ctrl-C used to end vidkv run with status 130 and nothing said (interrupt_note.h).
  const fs::path dir = fs::temp_directory_path() / ("vidkv-sigint-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  const fs::path trace = dir / "t.h5";
  REQUIRE(run_quiet(kVidkv + " trace synth --shape 4x2x1024x64 --seed 3 -o " + trace.string()) == 0);
  const fs::path exp = dir / "exp.yaml";
  std::ofstream(exp) << "name: sigint\ntraces: [" << trace.string() << "]\nseed: 5\n"
                     << "codec:\n  key: {type: uniform, bits: 2}\n  value: {type: uniform, bits: 2, axis: token}\n"
                     << "sweep:\n  codec.key.bits: [1, 2, 3, 4, 5, 6, 7, 8]\n";
  const fs::path whole = dir / "whole", stopped = dir / "stopped", err = dir / "stderr.txt";
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + whole.string()) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    const int errfd = ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(devnull, 1);
    ::dup2(errfd, 2);
    ::execl(kVidkv.c_str(), kVidkv.c_str(), "run", exp.c_str(), "--quiet", "--out", stopped.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_cells(stopped) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, SIGINT);
  int status = 0;
  ::waitpid(pid, &status, 0);
  REQUIRE(count_cells(stopped) < 8);  // stopped mid-way
  CHECK(WIFSIGNALED(status));
  CHECK((WIFSIGNALED(status) ? WTERMSIG(status) : 0) == SIGINT);
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str().find("vidkv run: interrupted; the cells finished so far are kept in " + (stopped / "cells").string() +
                        ": run the command again with --resume") != std::string::npos);
  REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --resume --out " + stopped.string()) == 0);
  CHECK(csv_without_seconds(stopped / "results.csv") == csv_without_seconds(whole / "results.csv"));
  fs::remove_all(dir);
}
