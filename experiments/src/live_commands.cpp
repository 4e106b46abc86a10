// `vidkv live`: end-to-end ablations on a live model through the VidKV transformers cache hook. Implemented by the
// Python module vidkv.live (experiments/python/vidkv/live.py), run inside this process by the embedded interpreter
// (python_command.h), which validates the experiment with the same
// planner as `vidkv run` (the _vidkv extension's plan()).
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace vidkv::cli {

namespace {

int live_command(const Args& args) {
  return run_python_module("vidkv live", "vidkv.live", args, "torch and transformers (requirements-models.txt) and the _vidkv extension");
}

}  // namespace

void add_live_commands(std::vector<Command>& out) {
  out.push_back({{"live"}, "vidkv live EXPERIMENT.yaml [--set k=v]... [--out DIR]",
                 "end-to-end ablation on a live model (perplexity, next-token KL, greedy agreement)",
                 "Runs the Python module vidkv.live inside vidkv (embedded Python) with the packages of the project's\n"
                 ".venv (scripts/setup.sh --models), or of the Python environment $VIDKV_PYTHON names (same version).\n"
                 "The experiment names a `model:` block instead of `traces:` (schema: experiments/README.md); every run\n"
                 "of its sweep is compared with the full-precision cache. Results: the files of `vidkv run`\n"
                 "(config.yaml, provenance.json, results.csv, results.jsonl, summary.md) plus a generated_text column.\n"
                 "Example: vidkv live experiments/live/smollm2.yaml --set model.max_new_tokens=16",
                 live_command});
}

}  // namespace vidkv::cli
