// `vidkv record`: runs a live model on a prompt (and a video) and writes a schema-v1 trace. Implemented by the
// Python module vidkv.record (experiments/python/vidkv/record.py), run inside this process by the embedded
// interpreter with the project's .venv (python_command.h).
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/python_command.h"

namespace vidkv::cli {

namespace {

int record_command(const Args& args) {
  return run_python_module("vidkv record", "vidkv.record", args, "torch, transformers, gguf and h5py (requirements-models.txt)");
}

}  // namespace

void add_record_commands(std::vector<Command>& out) {
  out.push_back({{"record"}, "vidkv record --model ID_OR_PATH [--gguf FILE] [--video FILE] --prompt TEXT -o TRACE.h5",
                 "record a KV-cache trace from a live transformers model",
                 "Runs the Python module vidkv.record inside vidkv (embedded Python) with the packages of the project's\n"
                 ".venv (scripts/setup.sh --models), or of the Python environment $VIDKV_PYTHON names (same version).\n"
                 "Options:\n"
                 "  --model ID_OR_PATH     a local folder of a saved transformers model (any decoder LLM,\n"
                 "                         LlavaOnevisionForConditionalGeneration, Qwen2_5_VLForConditionalGeneration),\n"
                 "                         or the label of --gguf; nothing is downloaded from a model hub\n"
                 "  --gguf FILE|smollm2    load a GGUF file (smollm2: the SmolLM2-135M-Instruct file setup fetched)\n"
                 "  --video FILE --frames N  video frames for a video-language model (default 8 frames)\n"
                 "  --prompt TEXT          the user message;  --question TEXT  its question span (modality 2)\n"
                 "  --document FILE --max-tokens N  paragraphs of FILE that fit N tokens precede the prompt\n"
                 "  --max-new-tokens N     greedy answer length (default 32);  --device cpu|cuda  --dtype float32|bfloat16\n"
                 "  -o TRACE.h5            written as TRACE.h5.partial, renamed when complete\n"
                 "Example:\n"
                 "  vidkv record --model HuggingFaceTB/SmolLM2-135M-Instruct --gguf smollm2 \\\n"
                 "      --prompt \"Question: What is the capital of France?\" --question \"What is the capital of France?\" -o fr.h5",
                 record_command});
}

}  // namespace vidkv::cli
