// `vidkv report RESULTS_DIR`: plots and a markdown/HTML report, made by the Python analysis package
// (analysis/vidkv_analysis, which reads result and trace files only and never links this code).
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"

namespace fs = std::filesystem;

namespace vidkv::cli {

namespace {

std::string source_dir() {
#ifdef VIDKV_SOURCE_DIR
  return VIDKV_SOURCE_DIR;
#else
  return fs::current_path().string();
#endif
}

int report_command(const Args& args_in) {
  Args args = args_in;
  std::string out, trace;
  take_option(args, "--out", out);
  take_option(args, "--trace", trace);
  reject_unknown_options(args, "vidkv report");
  if (args.size() != 1) VIDKV_THROW(ConfigError, "usage: vidkv report RESULTS_DIR [--trace TRACE.h5] [--out DIR]");
  if (!fs::is_directory(args[0])) VIDKV_THROW(IoError, args[0], ": no such results folder");
  const fs::path src = source_dir();
  std::string python = (src / ".venv" / "bin" / "python").string();
  if (const char* env = std::getenv("VIDKV_PYTHON"); env && *env) python = env;
  if (!fs::exists(python))
    VIDKV_THROW(NotSupportedError, "vidkv report needs the project's Python environment (", python,
                "): run scripts/setup.sh, or set VIDKV_PYTHON to a python with numpy, h5py and matplotlib");
  std::vector<std::string> argv = {python, "-m", "vidkv_analysis", "report", args[0]};
  if (!out.empty()) argv.insert(argv.end(), {"--out", out});
  if (!trace.empty()) argv.insert(argv.end(), {"--trace", trace});
  const std::string pythonpath = (src / "analysis").string();
  const pid_t pid = ::fork();
  if (pid < 0) VIDKV_THROW(Error, "vidkv report: cannot start ", python);
  if (pid == 0) {
    const char* old = std::getenv("PYTHONPATH");
    const std::string path = old && *old ? pythonpath + ":" + old : pythonpath;
    ::setenv("PYTHONPATH", path.c_str(), 1);
    std::vector<char*> cargv;
    for (auto& a : argv) cargv.push_back(a.data());
    cargv.push_back(nullptr);
    ::execv(python.c_str(), cargv.data());
    std::perror("vidkv report: exec");
    ::_exit(127);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    VIDKV_THROW(Error, "vidkv report: the analysis package failed (exit ", WIFEXITED(status) ? WEXITSTATUS(status) : -1, ")");
  return 0;
}

}  // namespace

void add_report_commands(std::vector<Command>& out) {
  out.push_back({{"report"}, "vidkv report RESULTS_DIR [--trace TRACE.h5] [--out DIR]",
                 "plots and a markdown/HTML report of an experiment's results",
                 "Runs `python -m vidkv_analysis report RESULTS_DIR` with the project's .venv (or $VIDKV_PYTHON) and\n"
                 "PYTHONPATH=analysis. RESULTS_DIR is one experiment's folder or a folder of several (the paper set).\n"
                 "Writes report.md and a self-contained report.html (default: into RESULTS_DIR). See analysis/README.md.",
                 report_command});
}

}  // namespace vidkv::cli
