// `vidkv validate-metrics`: runs the settings of a trace experiment both on the recorded trace (replay) and live on
// the trace's model and prompt, and prints the Spearman rank correlation of every trace metric with the live
// next-token KL. Implemented by the Python module vidkv.validate_metrics (experiments/python/vidkv/
// validate_metrics.py) in the embedded interpreter (python_command.h); the options declared here are the module's
// (tests/python/test_cli_matches_modules.py compares them).
#include <CLI/CLI.hpp>

#include <memory>

#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace vidkv::cli {

namespace {

Action define_validate(CLI::App& app) {
  auto experiment = std::make_shared<std::string>();
  auto overrides = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  auto model = std::make_shared<std::string>();
  auto gguf = std::make_shared<std::string>();
  auto jobs = std::make_shared<int>(1);
  auto device = std::make_shared<std::string>("cpu");
  auto dtype = std::make_shared<std::string>("float32");
  auto threads = std::make_shared<int>(2);
  app.add_option("EXPERIMENT", *experiment, "a `vidkv run` experiment over one recorded trace; its sweep lists the settings")
      ->required();
  app.add_option("--set", *overrides, "override a value of the file (repeatable)")
      ->type_name("dotted.path=value")
      ->allow_extra_args(false);
  app.add_option("--out", *out, "results folder (default: the experiment's output + '-validate')")->type_name("DIR");
  app.add_option("--model", *model, "local model folder, or the label of --gguf (default: the trace's model_id)");
  app.add_option("--gguf", *gguf, "GGUF file to load, or 'smollm2' (the file scripts/setup.sh --models fetches)");
  app.add_option("--jobs", *jobs, "replay cells in parallel");
  app.add_option("--device", *device, "cpu or cuda[:N]");
  app.add_option("--dtype", *dtype, "float32, float16 or bfloat16");
  app.add_option("--threads", *threads, "CPU threads of torch");
  // The action owns what the options write into (CLI11 keeps references to them).
  return [experiment, overrides, out, model, gguf, jobs, device, dtype, threads](const Args& raw) {
    return run_python_module("vidkv validate-metrics", "vidkv.validate_metrics", raw,
                             "torch and transformers (requirements-models.txt) and the _vidkv extension");
  };
}

}  // namespace

void add_validate_commands(std::vector<Command>& out) {
  out.push_back({{"validate-metrics"}, "rank correlation of every trace metric with the live model's next-token KL",
                 "Runs every setting of a trace experiment twice on the same tokens: replayed on its recorded trace\n"
                 "(vidkv run) and live on the trace's model, prefilling the trace's prompt and teacher-forcing its\n"
                 "generated tokens. Prints Spearman's rho of each trace metric with live next-token KL and the live and\n"
                 "replayed effective bits of each setting (docs/metric-validation.md). Needs scripts/setup.sh --models.\n"
                 "Example: vidkv validate-metrics experiments/validate/smollm2-longdoc.yaml --gguf smollm2",
                 define_validate});
}

}  // namespace vidkv::cli
