// `vidkv report RESULTS_DIR`: plots and a markdown/HTML report, made by the Python analysis package
// (analysis/vidkv_analysis, which reads result and trace files only and never links this code), run inside this
// process by the embedded interpreter (python_command.h).
#include <filesystem>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace fs = std::filesystem;

namespace vidkv::cli {

namespace {

int report_command(const Args& args_in) {
  Args args = args_in;
  std::string out, trace;
  take_option(args, "--out", out);
  take_option(args, "--trace", trace);
  reject_unknown_options(args, "vidkv report");
  if (args.size() != 1) VIDKV_THROW(ConfigError, "usage: vidkv report RESULTS_DIR [--trace TRACE.h5] [--out DIR]");
  if (!fs::is_directory(args[0])) VIDKV_THROW(IoError, args[0], ": no such results folder");
  std::vector<std::string> module_args = {"report", args[0]};
  if (!out.empty()) module_args.insert(module_args.end(), {"--out", out});
  if (!trace.empty()) module_args.insert(module_args.end(), {"--trace", trace});
  return run_python_module("vidkv report", "vidkv_analysis", module_args, "numpy, h5py and matplotlib");
}

}  // namespace

void add_report_commands(std::vector<Command>& out) {
  out.push_back({{"report"}, "vidkv report RESULTS_DIR [--trace TRACE.h5] [--out DIR]",
                 "plots and a markdown/HTML report of an experiment's results",
                 "Runs `vidkv_analysis report RESULTS_DIR` (analysis/) inside vidkv (embedded Python), as\n"
                 "`python -m` would, with the packages of the project's .venv (or of the environment $VIDKV_PYTHON names).\n"
                 "RESULTS_DIR is one experiment's folder or a folder of several (the paper set).\n"
                 "Writes report.md and a self-contained report.html (default: into RESULTS_DIR). See analysis/README.md.",
                 report_command});
}

}  // namespace vidkv::cli
