// Hostile traces (docs/reliability.md): one test per kind of input that once crashed, hung, over-allocated, read
// outside the file or was accepted as garbage. Each must give an IoError / ShapeError naming the file and the
// object, within seconds, without allocating past the memory budget.
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>
#include <vector>
#include <thread>

#include "catch.h"
#include "trace_test_support.h"
#include "vidkv/core/error.h"
#include "vidkv/traces/partial_files.h"
#include "vidkv/traces/trace_isolation.h"
#include "vidkv/traces/trace_read_policy.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"

using namespace vidkv;
using vidkv::test::EditTrace;
using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The message of the IoError that validate_trace(path) must throw (fails the test otherwise).
std::string io_error(const std::string& path) {
  try {
    validate_trace(path);
  } catch (const IoError& e) {
    return e.what();
  } catch (const Error& e) {
    FAIL("not an IoError for " << path << ": " << e.what());
  }
  FAIL("validate_trace accepted " << path);
  return "";
}

// Sets a policy for the scope of a test, restoring the previous one after.
struct PolicyScope {
  TraceReadPolicy saved = trace_read_policy();
  explicit PolicyScope(const TraceReadPolicy& p) { set_trace_read_policy(p); }
  ~PolicyScope() { set_trace_read_policy(saved); }
};

std::string small_trace(const TempDir& dir, const std::string& name = "t.h5") {
  const std::string path = dir.file(name);
  SmallTrace::write(path);
  return path;
}

}  // namespace

TEST_CASE("a FIFO named as a trace is refused at once, not read (it would block forever)", "[traces][hostile]") {
  TempDir dir;
  const std::string path = dir.file("pipe.h5");
  REQUIRE(::mkfifo(path.c_str(), 0600) == 0);
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = io_error(path);
  CHECK(contains(msg, path));
  CHECK(contains(msg, "FIFO"));
  CHECK_THROWS_AS(TraceReader(path), IoError);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a character device named as a trace is refused", "[traces][hostile]") {
  const std::string msg = io_error("/dev/zero");
  CHECK(contains(msg, "/dev/zero"));
  CHECK(contains(msg, "device"));
}

TEST_CASE("an external link in a trace is refused unless --allow-external-data", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir), other = small_trace(dir, "other.h5");
  {
    EditTrace e(path);
    e.remove("/tokens/frame");
    REQUIRE(H5Lcreate_external(other.c_str(), "/tokens/frame", e.file(), "/tokens/frame", H5P_DEFAULT, H5P_DEFAULT) >= 0);
  }
  const std::string msg = io_error(path);
  CHECK(contains(msg, path + ": /tokens/frame"));
  CHECK(contains(msg, "external link"));
  CHECK(contains(msg, "--allow-external-data"));
  TraceReadPolicy allow = trace_read_policy();
  allow.allow_external_data = true;
  PolicyScope scope(allow);
  CHECK(validate_trace(path).layers_checked == SmallTrace::kLayers);
}

TEST_CASE("a dataset stored in an external file (here /etc/passwd) is refused", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir);
  {
    EditTrace e(path);
    e.remove("/tokens/ids");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    REQUIRE(H5Pset_external(dcpl, "/etc/passwd", 0, SmallTrace::kTokens * 4) >= 0);
    const hsize_t n = SmallTrace::kTokens;
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t ds = H5Dcreate2(e.file(), "/tokens/ids", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    REQUIRE(ds >= 0);
    H5Dclose(ds);
    H5Sclose(space);
    H5Pclose(dcpl);
  }
  const std::string msg = io_error(path);
  CHECK(contains(msg, path + ": /tokens/ids"));
  CHECK(contains(msg, "external file"));
}

TEST_CASE("a dataset compressed with a filter this build lacks names the filter, no plugin is loaded", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir);
  {
    EditTrace e(path);
    e.remove("/tokens/position");
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    const hsize_t n = SmallTrace::kTokens, chunk = 4;
    REQUIRE(H5Pset_chunk(dcpl, 1, &chunk) >= 0);
    // 32004 is the registered ID of the LZ4 filter plugin; optional, so HDF5 writes the chunks raw without it.
    REQUIRE(H5Pset_filter(dcpl, 32004, H5Z_FLAG_OPTIONAL, 0, nullptr) >= 0);
    hid_t space = H5Screate_simple(1, &n, nullptr);
    hid_t ds = H5Dcreate2(e.file(), "/tokens/position", H5T_STD_I32LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    REQUIRE(ds >= 0);
    const std::int32_t pos[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    REQUIRE(H5Dwrite(ds, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, pos) >= 0);
    H5Dclose(ds);
    H5Sclose(space);
    H5Pclose(dcpl);
  }
  const std::string msg = io_error(path);
  CHECK(contains(msg, path + ": /tokens/position"));
  CHECK(contains(msg, "filter 32004"));
  CHECK(contains(msg, "--allow-filter-plugins"));
  CHECK_FALSE(contains(msg, "corrupt or truncated"));
  // HDF5's dynamic plugin loading is off: it never scans HDF5_PLUGIN_PATH for shared libraries to dlopen.
  unsigned mask = 1;
  REQUIRE(H5PLget_loading_state(&mask) >= 0);
  CHECK(mask == 0);
  TraceReadPolicy plugins = trace_read_policy();
  plugins.allow_filter_plugins = true;
  {
    PolicyScope scope(plugins);
    REQUIRE(H5PLget_loading_state(&mask) >= 0);
    CHECK(mask != 0);
  }
  REQUIRE(H5PLget_loading_state(&mask) >= 0);
  CHECK(mask == 0);
}

TEST_CASE("a token count larger than the file can hold is refused before anything is allocated", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir);
  {
    EditTrace e(path);
    // 2^33 tokens: /tokens/modality alone would be 8 GiB; the chunks past the first are never written.
    e.set_extent("/tokens/modality", {hsize_t{1} << 33});
  }
  const auto start = std::chrono::steady_clock::now();
  const std::string msg = io_error(path);
  CHECK(contains(msg, path + ": /tokens/modality"));
  CHECK(contains(msg, "8589934592"));
  CHECK(contains(msg, "stores only"));
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a layer count that the file does not hold (10^9 layers) is refused by the reader", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir);
  {
    EditTrace e(path);
    e.set_int64_attr("/model", "num_layers", 1000000000);
  }
  const std::string msg = io_error(path);
  CHECK(contains(msg, path + ": /layers"));
  CHECK(contains(msg, "num_layers says 1000000000"));
}

TEST_CASE("a layer larger than the memory budget is refused before it is allocated", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir);
  TraceReadPolicy tight = trace_read_policy();
  tight.memory_budget_bytes = 64;  // one layer of the small trace: K + V + query = (64 + 64 + 32) x 4 bytes
  PolicyScope scope(tight);
  const std::string msg = io_error(path);
  CHECK(contains(msg, path));
  CHECK(contains(msg, "memory budget"));
  CHECK(contains(msg, "VIDKV_MEMORY_BUDGET_MB"));
}

TEST_CASE("a crash inside the isolated read becomes an IoError naming the file and the object", "[traces][hostile]") {
  const auto work = [] {
    trace_isolation::report_progress("f.h5", "/layers/003/key");
    ::raise(SIGSEGV);
    return std::string("unreachable");
  };
  try {
    trace_isolation::run_isolated("f.h5", "reading its structure", work);
    FAIL("no error");
  } catch (const IoError& e) {
    const std::string msg = e.what();
    CHECK(contains(msg, "f.h5: "));
    CHECK(contains(msg, "SIGSEGV"));
    CHECK(contains(msg, "while reading /layers/003/key"));
  }
}

TEST_CASE("a read that stops making progress is stopped after stall_seconds and named", "[traces][hostile]") {
  TraceReadPolicy quick = trace_read_policy();
  quick.stall_seconds = 0.5;
  PolicyScope scope(quick);
  const auto start = std::chrono::steady_clock::now();
  try {
    trace_isolation::run_isolated("loop.h5", "validating it", [] {
      trace_isolation::report_progress("loop.h5", "/tokens/frame");
      for (;;) std::this_thread::sleep_for(std::chrono::seconds(1));
      return std::string();
    });
    FAIL("no error");
  } catch (const IoError& e) {
    CHECK(contains(e.what(), "loop.h5: HDF5 made no progress for 0.5 s while reading /tokens/frame"));
  }
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(5));
}

TEST_CASE("a runaway allocation inside the isolated read is an IoError, not the parent's memory", "[traces][hostile]") {
  TraceReadPolicy small = trace_read_policy();
  small.memory_budget_bytes = std::int64_t{64} << 20;  // the child's address space: what it maps now + 64 MiB + 1 GiB
  PolicyScope scope(small);
  try {
    trace_isolation::run_isolated("big.h5", "reading its structure", [] {
      trace_isolation::report_progress("big.h5", "/ attribute 'notes'");
      std::vector<char> huge(std::size_t{1} << 40);  // 1 TiB, as a corrupt size field would ask for
      return std::string(huge.data(), 1);
    });
    FAIL("no error");
  } catch (const IoError& e) {
    CHECK(contains(e.what(), "big.h5: "));
    CHECK(contains(e.what(), "/ attribute 'notes'"));
  }
}

TEST_CASE("an error thrown in the isolated read keeps its type and message", "[traces][hostile]") {
  CHECK_THROWS_AS(trace_isolation::run_isolated("x.h5", "t", [] () -> std::string { throw ShapeError("x.h5: /a: bad"); }),
                  ShapeError);
  CHECK(trace_isolation::run_isolated("x.h5", "t", [] { return std::string("result text"); }) == "result text");
}

// tests/data/bad_traces/*.patch: traces that crashed (SIGSEGV inside HDF5 1.10) or hung the reader before it read
// untrusted structure in a child process, stored as byte edits of a seed trace (fuzz/trace_patch.py).
std::string apply_trace_patch(const std::string& patch, const std::string& out) {
  std::ifstream in(patch);
  std::string line, seed;
  std::vector<std::pair<std::size_t, std::string>> edits;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("seed:", 0) == 0) {
      seed = line.substr(line.find_first_not_of(' ', 5));
      continue;
    }
    std::istringstream fields(line);
    std::size_t offset = 0;
    std::string hex, bytes;
    fields >> offset >> hex;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) bytes += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
    edits.emplace_back(offset, bytes);
  }
  REQUIRE_FALSE(seed.empty());
  std::ifstream src(std::string(VIDKV_SOURCE_DIR) + "/" + seed, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(src)), std::istreambuf_iterator<char>());
  REQUIRE_FALSE(data.empty());
  for (const auto& [offset, bytes] : edits) {
    REQUIRE(offset + bytes.size() <= data.size());
    data.replace(offset, bytes.size(), bytes);
  }
  std::ofstream(out, std::ios::binary) << data;
  return out;
}

TEST_CASE("the corrupted traces found by mutation are errors naming the file, never crashes or hangs", "[traces][hostile]") {
  const std::filesystem::path folder = std::string(VIDKV_SOURCE_DIR) + "/tests/data/bad_traces";
  TempDir dir;
  TraceReadPolicy quick = trace_read_policy();
  quick.stall_seconds = 2;  // the hanging ones: stopped after 2 s without progress
  PolicyScope scope(quick);
  int files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(folder)) {
    if (entry.path().extension() != ".patch") continue;
    ++files;
    const std::string path = apply_trace_patch(entry.path().string(), dir.file(entry.path().stem().string() + ".h5"));
    INFO(entry.path().filename().string());
    const auto start = std::chrono::steady_clock::now();
    const std::string msg = io_error(path);
    CHECK(contains(msg, path + ": "));
    CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(15));
    // Opening alone (the structure, no layer values) ends in an IoError or a reader, never a crash.
    try {
      TraceReader reader(path);
    } catch (const IoError&) {
    }
  }
  CHECK(files >= 9);
}

TEST_CASE("a trace's identity changes when the file is replaced by another of the same shape", "[traces][hostile]") {
  TempDir dir;
  const std::string path = small_trace(dir);
  const auto first = validate_trace(path);
  CHECK(contains(first.identity, "size="));
  SmallTrace::write(path, DType::f32);  // same shapes, other bytes
  const auto second = validate_trace(path);
  CHECK(first.identity != second.identity);
  CHECK(first.shapes_hash == second.shapes_hash);
}

TEST_CASE("a .partial trace file is removed when the writing process is interrupted", "[traces][hostile]") {
  TempDir dir;
  const std::string path = dir.file("t.h5");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::signal(SIGTERM, SIG_DFL);  // not the test framework's handler: the default action after ours
    TraceWriter w(path, SmallTrace::metadata(DType::f16));
    w.write_tokens(SmallTrace::tokens(), SmallTrace::ids());
    ::raise(SIGTERM);
    ::_exit(0);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  CHECK(WIFSIGNALED(status));
  CHECK(WTERMSIG(status) == SIGTERM);
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));
  CHECK_FALSE(std::filesystem::exists(path));
}
