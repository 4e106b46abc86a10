#include "vidkv/experiments/src/python_command.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include "vidkv/core/error.h"

namespace fs = std::filesystem;

namespace vidkv::cli {

namespace {

fs::path source_dir() {
#ifdef VIDKV_SOURCE_DIR
  return VIDKV_SOURCE_DIR;
#else
  return fs::current_path();
#endif
}

fs::path extension_dir() {
#ifdef VIDKV_PYTHON_MODULE_DIR
  return VIDKV_PYTHON_MODULE_DIR;
#else
  return source_dir() / "build" / "python";
#endif
}

}  // namespace

int run_python_module(const std::string& command, const std::string& module, const std::vector<std::string>& args,
                      const std::string& needs) {
  std::string python = (source_dir() / ".venv" / "bin" / "python").string();
  if (const char* env = std::getenv("VIDKV_PYTHON"); env && *env) python = env;
  if (!fs::exists(python))
    VIDKV_THROW(NotSupportedError, command, " needs the project's Python environment (", python,
                "): run scripts/setup.sh --models, or set VIDKV_PYTHON to a python with ", needs);
  std::vector<std::string> argv = {python, "-m", module};
  argv.insert(argv.end(), args.begin(), args.end());
  const std::string pythonpath = (source_dir() / "experiments" / "python").string() + ":" + extension_dir().string() +
                                 ":" + (source_dir() / "analysis").string();
  const pid_t pid = ::fork();
  if (pid < 0) VIDKV_THROW(Error, command, ": cannot start ", python);
  if (pid == 0) {
    const char* old = std::getenv("PYTHONPATH");
    const std::string path = old && *old ? pythonpath + ":" + old : pythonpath;
    ::setenv("PYTHONPATH", path.c_str(), 1);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(python.c_str(), cargv.data());
    std::perror((command + ": exec").c_str());
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status)) VIDKV_THROW(Error, command, ": ", module, " was killed (signal ", WTERMSIG(status), ")");
  return WEXITSTATUS(status);
}

}  // namespace vidkv::cli
