// End-to-end: `vidkv run` killed with SIGKILL (or interrupted by SIGINT) in the middle and continued with --resume ends with exactly the rows
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

// A folder with a synthetic trace and an 8-run sweep over it (8 cells), and the sweep run whole into DIR/whole.
struct SweepFolder {
  fs::path dir, exp, whole;
  explicit SweepFolder(const std::string& name) : dir(fs::temp_directory_path() / ("vidkv-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(dir);
    fs::create_directories(dir);
    const fs::path trace = dir / "t.h5";
    REQUIRE(run_quiet(kVidkv + " trace synth --shape 4x2x1024x64 --seed 3 -o " + trace.string()) == 0);
    exp = dir / "exp.yaml";
    std::ofstream(exp) << "name: " << name << "\ntraces: [" << trace.string() << "]\nseed: 5\n"
                       << "codec:\n  key: {type: uniform, bits: 2}\n  value: {type: uniform, bits: 2, axis: token}\n"
                       << "sweep:\n  codec.key.bits: [1, 2, 3, 4, 5, 6, 7, 8]\n";
    whole = dir / "whole";
    REQUIRE(run_quiet(kVidkv + " run " + exp.string() + " --quiet --out " + whole.string()) == 0);
    REQUIRE(count_cells(whole) == 8);
  }
  ~SweepFolder() { fs::remove_all(dir); }
};

// Starts `vidkv run EXP --quiet --out OUT` (stderr into `err`, or /dev/null when empty), sends `sig` as soon as its
// first cell is stored (the run is then certainly in the middle of the next one) and returns its wait status.
int signal_after_first_cell(const fs::path& exp, const fs::path& out, int sig, const fs::path& err = {}) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 1);
    ::dup2(err.empty() ? devnull : ::open(err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644), 2);
    ::execl(kVidkv.c_str(), kVidkv.c_str(), "run", exp.c_str(), "--quiet", "--out", out.c_str(), static_cast<char*>(nullptr));
    ::_exit(127);
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (count_cells(out) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ::kill(pid, sig);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return status;
}

}  // namespace

TEST_CASE("an experiment killed with SIGKILL resumes to the same results", "[experiments][resume]") {
  const SweepFolder f("resume");
  const fs::path& exp = f.exp;
  const fs::path& whole = f.whole;
  const fs::path killed = f.dir / "killed";
  signal_after_first_cell(exp, killed, SIGKILL);
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
}

TEST_CASE("an experiment interrupted by SIGINT says where its cells are kept, ends by the signal, and resumes",
          "[experiments][resume]") {
  // Ctrl-C used to end vidkv run with status 130 and nothing said (interrupt_note.h).
  const SweepFolder f("sigint");
  const fs::path stopped = f.dir / "stopped", err = f.dir / "stderr.txt";
  const int status = signal_after_first_cell(f.exp, stopped, SIGINT, err);
  REQUIRE(count_cells(stopped) < 8);  // stopped mid-way
  CHECK(WIFSIGNALED(status));
  CHECK((WIFSIGNALED(status) ? WTERMSIG(status) : 0) == SIGINT);
  std::ifstream in(err);
  std::stringstream text;
  text << in.rdbuf();
  CHECK(text.str().find("vidkv run: interrupted; the cells finished so far are kept in " + (stopped / "cells").string() +
                        ": run the command again with --resume") != std::string::npos);
  REQUIRE(run_quiet(kVidkv + " run " + f.exp.string() + " --quiet --resume --out " + stopped.string()) == 0);
  CHECK(csv_without_seconds(stopped / "results.csv") == csv_without_seconds(f.whole / "results.csv"));
}
