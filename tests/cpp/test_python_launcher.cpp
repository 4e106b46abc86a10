// run_python_module, the launcher of `vidkv live`, `vidkv record` and `vidkv report`: the module runs inside this
// process in an embedded interpreter using the project's .venv; exit statuses follow `python -m`. The fixture module
// is tests/cpp/python/vidkv_launcher_fixture.py (on PYTHONPATH, which the launcher keeps after its own folders).
#ifdef VIDKV_EMBED_PYTHON
#include <Python.h>  // PY_VERSION: the embedded Python's version (first, as Python.h asks)
#endif

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/python_command.h"
#include "catch.h"

namespace fs = std::filesystem;
using vidkv::cli::run_python_module;

#ifdef VIDKV_EMBED_PYTHON

namespace {

const fs::path kSource = VIDKV_SOURCE_DIR;
const std::string kModule = "vidkv_launcher_fixture";

// Sets (or, with nullopt, unsets) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) ::setenv(name, value->c_str(), 1);
    else ::unsetenv(name);
  }
  ~ScopedEnv() {
    if (old_) ::setenv(name_, old_->c_str(), 1);
    else ::unsetenv(name_);
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Sends file descriptor 2 (where the embedded Python's sys.stderr writes) to a file for one scope.
class CaptureStderr {
 public:
  explicit CaptureStderr(fs::path file) : file_(std::move(file)) {
    std::fflush(stderr);
    saved_ = ::dup(2);
    const int fd = ::open(file_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    ::close(fd);
  }
  ~CaptureStderr() { restore(); }
  std::string text() {
    restore();
    std::ifstream in(file_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }
  CaptureStderr(const CaptureStderr&) = delete;
  CaptureStderr& operator=(const CaptureStderr&) = delete;

 private:
  void restore() {
    if (saved_ < 0) return;
    std::fflush(stderr);
    ::dup2(saved_, 2);
    ::close(saved_);
    saved_ = -1;
  }
  fs::path file_;
  int saved_ = -1;
};

fs::path temp_dir(const std::string& name) {
  const fs::path dir = fs::temp_directory_path() / ("vidkv-launcher-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::map<std::string, std::string> read_probe(const fs::path& file) {
  std::map<std::string, std::string> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

void require_venv() {
  if (!fs::exists(kSource / ".venv" / "bin" / "python"))
    VIDKV_SKIP("no .venv/bin/python: run scripts/setup.sh, which makes the project's Python environment");
}

int run_fixture(const std::vector<std::string>& args) {
  return run_python_module("vidkv test", kModule, args, "nothing special");
}

}  // namespace

TEST_CASE("python launcher: the module runs in this process, in the project's environment", "[python][launcher]") {
  require_venv();
  const fs::path dir = temp_dir("probe");
  ScopedEnv python("VIDKV_PYTHON", std::nullopt);
  ScopedEnv path("PYTHONPATH", (kSource / "tests" / "cpp" / "python").string());
  REQUIRE(run_fixture({"probe", (dir / "probe.txt").string(), "a", "b c"}) == 0);
  const auto probe = read_probe(dir / "probe.txt");
  REQUIRE(!probe.empty());
  CHECK(probe.at("name") == "__main__");
  CHECK(probe.at("pid") == std::to_string(::getpid()));  // no child process
  CHECK(fs::equivalent(probe.at("exe"), "/proc/self/exe"));
  // The environment is the project's virtual environment, as if its python ran.
  CHECK(probe.at("executable") == (kSource / ".venv" / "bin" / "python").string());
  CHECK(probe.at("prefix") == (kSource / ".venv").string());
  // sys.argv: the module's file, then the arguments untouched (no word splitting, no interpreter options).
  CHECK(probe.at("argv") == std::string("probe|") + (dir / "probe.txt").string() + "|a|b c");
  CHECK(fs::path(probe.at("argv0")).filename() == kModule + ".py");
  // sys.path: the project's packages first, then $PYTHONPATH.
  CHECK(probe.at("path0") == (kSource / "experiments" / "python").string());
  CHECK(probe.at("path1") == VIDKV_BINARY_DIR "/python");
  CHECK(probe.at("path2") == (kSource / "analysis").string());
  CHECK(probe.at("path3") == (kSource / "tests" / "cpp" / "python").string());
  fs::remove_all(dir);
}

TEST_CASE("python launcher: SystemExit is the exit status, an exception prints its traceback and gives 1",
          "[python][launcher]") {
  require_venv();
  const fs::path dir = temp_dir("exit");
  ScopedEnv python("VIDKV_PYTHON", std::nullopt);
  ScopedEnv path("PYTHONPATH", (kSource / "tests" / "cpp" / "python").string());
  CHECK(run_fixture({"return"}) == 0);
  CHECK(run_fixture({"exit-none"}) == 0);
  CHECK(run_fixture({"exit", "0"}) == 0);
  CHECK(run_fixture({"exit", "1"}) == 1);
  CHECK(run_fixture({"exit", "2"}) == 2);
  {
    CaptureStderr err(dir / "message.txt");
    CHECK(run_fixture({"exit-message", "vidkv test: error: a message"}) == 1);
    CHECK(err.text() == "vidkv test: error: a message\n");
  }
  {
    CaptureStderr err(dir / "raise.txt");
    CHECK(run_fixture({"raise"}) == 1);
    const std::string text = err.text();
    INFO(text);
    CHECK(text.find("Traceback (most recent call last):") != std::string::npos);
    CHECK(text.find("vidkv_launcher_fixture.py") != std::string::npos);
    CHECK(text.find("ValueError: fixture failure") != std::string::npos);
  }
  {  // A module that is not there: Python's own error, status 1.
    CaptureStderr err(dir / "missing.txt");
    CHECK(run_python_module("vidkv test", "vidkv_no_such_module", {}, "nothing") == 1);
    CHECK(err.text().find("No module named vidkv_no_such_module") != std::string::npos);
  }
  fs::remove_all(dir);
}

TEST_CASE("python launcher: Ctrl-C (SIGINT) ends the process by SIGINT after the traceback", "[python][launcher]") {
  require_venv();
  const fs::path dir = temp_dir("sigint");
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // As in `vidkv`, nobody handles SIGINT before Python (Catch2 does in this test program).
    std::signal(SIGINT, SIG_DFL);
    const int fd = ::open((dir / "stderr.txt").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 2);
    ::setenv("PYTHONPATH", (kSource / "tests" / "cpp" / "python").c_str(), 1);
    ::unsetenv("VIDKV_PYTHON");
    int status = 100;
    try {
      status = run_fixture({"interrupt"});
    } catch (...) {
      status = 101;
    }
    ::_exit(status);
  }
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  std::ifstream in(dir / "stderr.txt");
  std::stringstream err;
  err << in.rdbuf();
  INFO("exit status word " << status << ", stderr:\n" << err.str());
  CHECK(WIFSIGNALED(status));
  if (WIFSIGNALED(status)) CHECK(WTERMSIG(status) == SIGINT);
  CHECK(err.str().find("KeyboardInterrupt") != std::string::npos);
  CHECK(err.str().find("not interrupted") == std::string::npos);
  fs::remove_all(dir);
}

TEST_CASE("python launcher: a missing or mismatched environment is a clear error", "[python][launcher]") {
  const fs::path dir = temp_dir("env");
  {
    ScopedEnv python("VIDKV_PYTHON", (dir / "nowhere" / "python").string());
    try {
      run_fixture({"return"});
      FAIL("no error for a missing VIDKV_PYTHON");
    } catch (const vidkv::NotSupportedError& e) {
      CHECK(std::string(e.what()).find("vidkv test needs VIDKV_PYTHON (" + (dir / "nowhere" / "python").string() +
                                       ")") != std::string::npos);
    }
  }
  // A virtual environment of another Python version: its packages cannot load into the embedded interpreter.
  fs::create_directories(dir / "venv27" / "bin");
  std::ofstream(dir / "venv27" / "bin" / "python") << "";
  std::ofstream(dir / "venv27" / "pyvenv.cfg") << "home = /usr/bin\ninclude-system-site-packages = false\nversion = 2.7.18\n";
  {
    ScopedEnv python("VIDKV_PYTHON", (dir / "venv27" / "bin" / "python").string());
    try {
      run_fixture({"return"});
      FAIL("no error for a Python 2.7 environment");
    } catch (const vidkv::NotSupportedError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find("is a Python 2.7 environment (this vidkv embeds Python " PY_VERSION ")") != std::string::npos);
      CHECK(what.find("-DPython3_EXECUTABLE=" + (dir / "venv27" / "bin" / "python").string()) != std::string::npos);
    }
  }
  // An installation of the same major.minor but another patch release (e.g. Debian's 3.11.2 beside a pyenv 3.11.7
  // that vidkv was built with): its standard library is not the loaded libpython's. The fake python answers the
  // launcher's version query with release 99 of the embedded major.minor.
  const std::string minor = std::to_string(PY_MAJOR_VERSION) + "." + std::to_string(PY_MINOR_VERSION);
  fs::create_directories(dir / "other" / "bin");
  fs::create_directories(dir / "other" / "lib" / ("python" + minor));
  std::ofstream(dir / "other" / "lib" / ("python" + minor) / "os.py") << "";
  const fs::path fake = dir / "other" / "bin" / "python";
  std::ofstream(fake) << "#!/bin/sh\necho " << minor << ".99\n";
  fs::permissions(fake, fs::perms::owner_all);
  {
    ScopedEnv python("VIDKV_PYTHON", fake.string());
    try {
      run_fixture({"return"});
      FAIL("no error for another patch release");
    } catch (const vidkv::NotSupportedError& e) {
      const std::string what = e.what();
      INFO(what);
      CHECK(what.find("VIDKV_PYTHON (" + fake.string() + ") is Python " + minor + ".99, and this vidkv runs Python ") !=
            std::string::npos);
      CHECK(what.find("-DPython3_EXECUTABLE=" + fake.string()) != std::string::npos);
    }
  }
  fs::remove_all(dir);
}

#else  // VIDKV_ENABLE_PYTHON=OFF

TEST_CASE("python launcher: without Python the commands say how to run the module instead", "[python][launcher]") {
  try {
    run_python_module("vidkv report", "vidkv_analysis", {"report", "results/x"}, "numpy");
    FAIL("no error in a build without Python");
  } catch (const vidkv::NotSupportedError& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(what.find("built without Python (VIDKV_ENABLE_PYTHON=OFF)") != std::string::npos);
    CHECK(what.find("`python -m vidkv_analysis report results/x`") != std::string::npos);
  }
}

#endif
