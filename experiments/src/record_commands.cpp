// `vidkv record`: runs a live model on a prompt (and a video) and writes a schema-v1 trace. Implemented by the
// Python module vidkv.record (experiments/python/vidkv/record.py), run inside this process by the embedded
// interpreter with the project's .venv (python_command.h). The options declared here are the module's (same names,
// defaults and required ones; tests/python/test_cli_matches_modules.py compares them); the module reads them.
#include <CLI/CLI.hpp>

#include <memory>

#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace vidkv::cli {

namespace {

struct RecordArgs {
  std::string model, gguf, video, prompt, question, system, document, intro = "Here is a passage.", text_source, notes,
      device = "cpu", dtype = "float32", summary, output;
  int frames = 8, max_tokens = 512, max_new_tokens = 32, query_generated = 8, threads = 2;
};

Action define_record(CLI::App& app) {
  auto a = std::make_shared<RecordArgs>();
  app.add_option("--model", a->model,
                 "a local folder of a saved transformers model (any decoder LLM, LlavaOnevisionForConditionalGeneration,\n"
                 "Qwen2_5_VLForConditionalGeneration), or the label of --gguf; nothing is downloaded from a model hub")
      ->type_name("ID_OR_PATH")
      ->required();
  app.add_option("--gguf", a->gguf, "a GGUF file to load (smollm2: the SmolLM2-135M-Instruct file setup fetched)")
      ->type_name("FILE|smollm2");
  app.add_option("--video", a->video, "video file, for a video-language model")->type_name("FILE");
  app.add_option("--frames", a->frames, "frames sampled uniformly from --video")->capture_default_str();
  app.add_option("--prompt", a->prompt, "the user message")->type_name("TEXT")->required();
  app.add_option("--question", a->question, "the part of the prompt that is the question (modality 2, recorded queries)")
      ->type_name("TEXT");
  app.add_option("--system", a->system, "system message (default: the chat template's own)")->type_name("TEXT");
  app.add_option("--document", a->document, "text file; its whole paragraphs that fit --max-tokens precede the prompt")
      ->type_name("FILE");
  app.add_option("--intro", a->intro, "sentence before --document's text")->capture_default_str();
  app.add_option("--text-source", a->text_source, "provenance of --document, stored in the trace")->type_name("TEXT");
  app.add_option("--notes", a->notes, "extra text for the trace's notes attribute")->type_name("TEXT");
  app.add_option("--max-tokens", a->max_tokens, "with --document: bound on prompt + generated tokens")->capture_default_str();
  app.add_option("--max-new-tokens", a->max_new_tokens, "greedy answer length")->capture_default_str();
  app.add_option("--query-generated", a->query_generated, "record the queries of this many generated tokens")
      ->capture_default_str();
  app.add_option("--device", a->device, "cpu or cuda")->capture_default_str();
  app.add_option("--dtype", a->dtype, "the model's dtype: float32, bfloat16 or float16")->capture_default_str();
  app.add_option("--threads", a->threads, "torch CPU threads")->capture_default_str();
  app.add_option("--summary", a->summary, "also write the summary JSON here")->type_name("FILE");
  app.add_option("-o,--output", a->output, "the trace to write (HDF5, schema v1): TRACE.h5.partial, renamed when complete")
      ->type_name("TRACE.h5")
      ->required();
  return [a](const Args& raw) {
    return run_python_module("vidkv record", "vidkv.record", raw, "torch, transformers, gguf and h5py (requirements-models.txt)");
  };
}

}  // namespace

void add_record_commands(std::vector<Command>& out) {
  out.push_back({{"record"}, "record a KV-cache trace from a live transformers model",
                 "Runs the Python module vidkv.record inside vidkv (embedded Python) with the packages of the project's\n"
                 ".venv (scripts/setup.sh --models), or of the Python environment $VIDKV_PYTHON names (same version).\n"
                 "Example:\n"
                 "  vidkv record --model HuggingFaceTB/SmolLM2-135M-Instruct --gguf smollm2 \\\n"
                 "      --prompt \"Question: What is the capital of France?\" --question \"What is the capital of France?\" -o fr.h5",
                 define_record});
}

}  // namespace vidkv::cli
