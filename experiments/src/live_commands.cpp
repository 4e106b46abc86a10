// `vidkv live`: end-to-end ablations on a live model through the VidKV transformers cache hook. Implemented by the
// Python module vidkv.live (experiments/python/vidkv/live.py), run inside this process by the embedded interpreter
// (python_command.h), which validates the experiment with the same planner as `vidkv run` (the _vidkv extension's
// plan()). The options declared here are the module's (tests/python/test_cli_matches_modules.py compares them).
#include <CLI/CLI.hpp>

#include <memory>

#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace vidkv::cli {

namespace {

Action define_live(CLI::App& app) {
  auto experiment = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  app.add_option("EXPERIMENT", *experiment, "the YAML experiment with a `model:` block (experiments/README.md)")->required();
  app.add_option("--set", *overrides, "override a value of the file (repeatable), e.g. --set model.max_new_tokens=16")
      ->type_name("dotted.path=value")
      ->allow_extra_args(false);
  app.add_option("--out", *out, "results folder (default: the experiment's output, made unique)")->type_name("DIR");
  return [experiment, overrides, out](const Args& raw) {
    return run_python_module("vidkv live", "vidkv.live", raw,
                             "torch and transformers (requirements-models.txt) and the _vidkv extension");
  };
}

}  // namespace

void add_live_commands(std::vector<Command>& out) {
  out.push_back({{"live"}, "end-to-end ablation on a live model (perplexity, next-token KL, greedy agreement)",
                 "Runs the Python module vidkv.live inside vidkv (embedded Python) with the packages of the project's\n"
                 ".venv (scripts/setup.sh --models), or of the Python environment $VIDKV_PYTHON names (same version).\n"
                 "The experiment names a `model:` block instead of `traces:` (schema: experiments/README.md); every run\n"
                 "of its sweep is compared with the full-precision cache. Results: the files of `vidkv run`\n"
                 "(config.yaml, provenance.json, results.csv, results.jsonl, summary.md) plus a generated_text column.\n"
                 "Example: vidkv live experiments/live/smollm2.yaml --set model.max_new_tokens=16",
                 define_live});
}

}  // namespace vidkv::cli
