// `vidkv report RESULTS_DIR`: plots and a markdown/HTML report, made by the Python analysis package
// (analysis/vidkv_analysis, which reads result and trace files only and never links this code), run inside this
// process by the embedded interpreter (python_command.h). The options declared here are those of
// `python -m vidkv_analysis report` (tests/python/test_cli_matches_modules.py compares them).
#include <CLI/CLI.hpp>

#include <filesystem>
#include <memory>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace fs = std::filesystem;

namespace vidkv::cli {

namespace {

struct ReportArgs {
  std::string results_dir, trace, out, layers, heads;
};

Action define_report(CLI::App& app) {
  auto a = std::make_shared<ReportArgs>();
  app.add_option("RESULTS_DIR", a->results_dir, "one experiment's results folder, or a folder of several (the paper set)")
      ->required();
  app.add_option("--trace", a->trace, "also draw the trace plots of this trace")->type_name("TRACE.h5");
  app.add_option("--out", a->out, "output folder (default: RESULTS_DIR itself)")->type_name("DIR");
  app.add_option("--layers", a->layers, "trace layers to plot, e.g. 0,5 (default: first and last)")->type_name("L,L,...");
  app.add_option("--heads", a->heads, "trace KV heads to plot, e.g. 0 (default: 0)")->type_name("H,H,...");
  return [a](const Args& raw) {
    if (!fs::is_directory(a->results_dir)) VIDKV_THROW(IoError, a->results_dir, ": no such results folder");
    std::vector<std::string> module_args = {"report"};
    module_args.insert(module_args.end(), raw.begin(), raw.end());
    return run_python_module("vidkv report", "vidkv_analysis", module_args, "numpy, h5py and matplotlib");
  };
}

}  // namespace

void add_report_commands(std::vector<Command>& out) {
  out.push_back({{"report"}, "plots and a markdown/HTML report of an experiment's results",
                 "Runs `vidkv_analysis report RESULTS_DIR` (analysis/) inside vidkv (embedded Python), as\n"
                 "`python -m` would, with the packages of the project's .venv (or of the environment $VIDKV_PYTHON names).\n"
                 "Writes report.md and a self-contained report.html (default: into RESULTS_DIR). See analysis/README.md.",
                 define_report});
}

}  // namespace vidkv::cli
