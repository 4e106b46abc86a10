// The `vidkv trace ...` commands run as a user runs them: exit codes, the one-line error, no partial output, and
// the bounded resident memory of a layer-by-layer read.
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "catch.h"
#include "trace_test_support.h"

using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

struct Run {
  int exit_code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// Runs build/bin/vidkv with `arguments` (already shell-quoted where needed), capturing stdout and stderr.
Run run_vidkv(const TempDir& dir, const std::string& arguments) {
  const std::string out = dir.file("stdout.txt"), err = dir.file("stderr.txt");
  const std::string command = std::string("'") + VIDKV_BINARY_DIR + "/bin/vidkv' " + arguments + " >'" + out + "' 2>'" + err + "'";
  const int status = std::system(command.c_str());
  Run r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::filesystem::remove(out);
  std::filesystem::remove(err);
  return r;
}

std::size_t count_lines(const std::string& text) {
  std::size_t n = 0;
  for (char c : text) n += c == '\n';
  return n;
}

}  // namespace

TEST_CASE("vidkv trace validate: exit 0 and 'ok:' for a good trace, exit 1 and one error line for a bad one", "[traces][cli]") {
  TempDir dir;
  const std::string good = dir.file("good.h5");
  SmallTrace::write(good);
  const Run ok = run_vidkv(dir, "trace validate '" + good + "'");
  CHECK(ok.exit_code == 0);
  CHECK(ok.out.rfind("ok: " + good + ": 2 layers", 0) == 0);
  CHECK(ok.err.empty());

  const std::string bad = dir.file("bad.h5");
  std::filesystem::copy_file(good, bad);
  vidkv::test::EditTrace(bad).set_half("/layers/001/value", {1, 2, 3}, std::numeric_limits<float>::quiet_NaN());
  const Run fail = run_vidkv(dir, "trace validate '" + bad + "'");
  CHECK(fail.exit_code == 1);
  CHECK(fail.out.empty());
  CHECK(count_lines(fail.err) == 1);
  CHECK(fail.err.rfind("vidkv: error: " + bad + ": /layers/001/value: non-finite value nan", 0) == 0);

  const Run missing = run_vidkv(dir, "trace validate '" + dir.file("nope.h5") + "'");
  CHECK(missing.exit_code == 1);
  CHECK(count_lines(missing.err) == 1);
  CHECK(missing.err.rfind("vidkv: error: ", 0) == 0);
}

TEST_CASE("vidkv trace info prints one statistics line per layer", "[traces][cli]") {
  TempDir dir;
  const std::string good = dir.file("good.h5");
  SmallTrace::write(good);
  const Run r = run_vidkv(dir, "trace info '" + good + "'");
  REQUIRE(r.exit_code == 0);
  CHECK(r.out.find("tokens: 8 (2 context text, 4 visual, 2 query, 0 generated); 2 frames of 1x2 patches") != std::string::npos);
  CHECK(r.out.find("queries: 2 recorded (token indices 6..7)") != std::string::npos);
  CHECK(r.out.find("prompt: what happens in the video?") != std::string::npos);
  // Layer 0, key: K = (t - 3.5) / 8 * (h + 1) + c / 4. max |x| over heads: h = 1, t = 7, c = 3: 2 * 3.5 / 8 + 0.75
  // = 1.625. Per-channel range (max - min over t) is (h + 1) * 7 / 8: 0.875 or 1.75, ratio 2.00.
  CHECK(r.out.find("      0 |") != std::string::npos);
  CHECK(r.out.find("1.6250") != std::string::npos);
  CHECK(r.out.find("2.00 |") != std::string::npos);
  CHECK(r.out.find("      1 |") != std::string::npos);
}

TEST_CASE("a failed vidkv trace synth leaves no output file", "[traces][cli]") {
  TempDir dir;
  // Inconsistent spec: 100 frames do not fit in 16 tokens.
  const std::string out = dir.file("synth.h5");
  const Run r = run_vidkv(dir, "trace synth --shape 2x1x16x8 --frames 100 -o '" + out + "'");
  CHECK(r.exit_code == 1);
  CHECK(count_lines(r.err) == 1);
  CHECK(r.err.rfind("vidkv: error: synthetic trace: ", 0) == 0);
  CHECK_FALSE(std::filesystem::exists(out));
  CHECK_FALSE(std::filesystem::exists(out + ".partial"));

  // Failure at the very end: the output path is an existing non-empty directory, so the final rename fails after
  // every layer was written. The partial file must be gone and the directory untouched.
  const std::string blocked = dir.file("blocked.h5");
  std::filesystem::create_directory(blocked);
  std::ofstream(blocked + "/keep") << "x";
  const Run r2 = run_vidkv(dir, "trace synth --shape 2x1x64x8 --frames 2 -o '" + blocked + "'");
  CHECK(r2.exit_code == 1);
  CHECK(r2.err.rfind("vidkv: error: " + blocked + ": cannot rename", 0) == 0);
  CHECK_FALSE(std::filesystem::exists(blocked + ".partial"));
  CHECK(std::filesystem::is_directory(blocked));

  // Unknown option and missing -o are usage errors (exit status 2) reported the same way, with nothing written.
  CHECK(run_vidkv(dir, "trace synth --shape 2x1x64x8 --bogus 1 -o '" + out + "'").exit_code == 2);
  CHECK(run_vidkv(dir, "trace synth --shape 2x1x64x8").exit_code == 2);
  CHECK_FALSE(std::filesystem::exists(out));

  // And a successful run writes a valid trace.
  const Run ok = run_vidkv(dir, "trace synth --shape 2x1x64x8 --frames 2 --seed 5 -o '" + out + "'");
  CHECK(ok.exit_code == 0);
  CHECK(run_vidkv(dir, "trace validate '" + out + "'").exit_code == 0);
}

TEST_CASE("reading a 28x4x1024x128 trace layer by layer grows resident memory by at most one layer + 16 MB",
          "[traces][cli][memory]") {
  // One layer's K + V as fp32: 2 x 4 x 1024 x 128 x 4 bytes = 4.19 MB; the bound is that plus 16 MB for the
  // scratch block, HDF5 chunk caches and allocator slack. bench-read runs in a fresh process and resets the peak
  // (VmHWM) to the current RSS after opening the trace, so the figure covers only the streaming reads.
  TempDir dir;
  const std::string path = dir.file("mem.h5");
  const Run synth = run_vidkv(dir, "trace synth --shape 28x4x1024x128 --frames 8 -o '" + path + "'");
  REQUIRE(synth.exit_code == 0);
  const Run bench = run_vidkv(dir, "trace bench-read '" + path + "' --max-growth-over-layer-mb 16");
  INFO(bench.out << bench.err);
  CHECK(bench.exit_code == 0);
  CHECK(bench.out.find("one layer K+V as fp32: 4.2 MB") != std::string::npos);
  CHECK(bench.out.find("peak growth") != std::string::npos);
  CHECK(bench.out.find("peak not reset") == std::string::npos);

  // Independently of the option, read the figures back: "peak growth X MB" and "one layer K+V as fp32: Y MB".
  const auto number_after = [&](const std::string& label) {
    const auto at = bench.out.find(label);
    REQUIRE(at != std::string::npos);
    return std::stod(bench.out.substr(at + label.size()));
  };
  const double growth_mb = number_after("peak growth ");
  const double layer_mb = number_after("one layer K+V as fp32: ");
  CHECK(growth_mb < layer_mb + 16.0);
}
