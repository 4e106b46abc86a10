// `vidkv bench --backend cpu`: replay throughput beside the machine's copy bandwidth (cpu_bench.h) and beside a
// PyTorch implementation of the same math run in the same process: in a Python build the embedded interpreter runs
// experiments/python/vidkv/bench.py, which calls the same C++ bench through _vidkv and times torch on the same
// layers (--no-torch, or no Python: the C++ figures alone).
// `vidkv bench --backend cuda`: the same on the GPU (cuda_bench.h; torch on CUDA: experiments/python/vidkv/bench_cuda.py).
#include <cstdlib>
#include <iostream>
#include <sstream>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/cpu_bench.h"
#include "vidkv/experiments/src/cuda_bench.h"
#include "vidkv/experiments/src/python_command.h"

namespace vidkv::cli {

namespace {

std::vector<std::string> split_commas(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  std::string item;
  while (std::getline(in, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int positive(const std::string& option, const std::string& value) {
  char* end = nullptr;
  const long n = std::strtol(value.c_str(), &end, 10);
  if (*end || n < 1 || n > 4096) VIDKV_THROW(ConfigError, option, ": expected a positive integer, got '", value, "'");
  return static_cast<int>(n);
}

std::vector<std::int64_t> token_counts(const std::string& value) {
  std::vector<std::int64_t> out;
  for (const auto& item : split_commas(value)) {
    char* end = nullptr;
    const long long n = std::strtoll(item.c_str(), &end, 10);
    if (*end || n < 1 || n > (1ll << 24)) VIDKV_THROW(ConfigError, "--tokens: expected positive token counts, got '", item, "'");
    out.push_back(n);
  }
  if (out.empty()) VIDKV_THROW(ConfigError, "--tokens: expected a comma-separated list of token counts");
  return out;
}

// --backend cuda (cuda_bench.h).
int cuda_bench_command(const Args& args_in) {
  Args args = args_in;
  CudaBenchOptions options;
  std::string value, backend;
  take_option(args, "--backend", backend);
  if (take_option(args, "--shape", value)) {
    const SyntheticTraceSpec spec = bench_trace_spec(value);
    options.layers = spec.layers;
    options.heads = spec.kv_heads;
    options.tokens = {spec.tokens};
    options.head_dim = spec.head_dim;
  }
  if (take_option(args, "--tokens", value)) options.tokens = token_counts(value);
  if (take_option(args, "--layers", value)) options.layers = positive("--layers", value);
  if (take_option(args, "--repeats", value)) options.repeats = positive("--repeats", value);
  if (take_option(args, "--presets", value)) options.presets = split_commas(value);
  const bool no_torch = take_flag(args, "--no-torch");
  reject_unknown_options(args, "vidkv bench --backend cuda");
  if (!args.empty()) VIDKV_THROW(ConfigError, "vidkv bench takes no positional arguments (got '", args[0], "')");
  if (!no_torch) {
    // PyTorch on CUDA in this process: experiments/python/vidkv/bench.py (--backend cuda) calls run_cuda_bench()
    // through _vidkv and times experiments/python/vidkv/bench_cuda.py on the same layer shapes.
    try {
      return run_python_module("vidkv bench", "vidkv.bench", args_in, "torch with CUDA (the PyTorch column)");
    } catch (const NotSupportedError& e) {
      std::cerr << "vidkv bench: no PyTorch column (" << e.what() << ")\n";
    }
  }
  std::cout << cuda_bench_markdown(run_cuda_bench(options));
  return 0;
}

int bench_command(const Args& args_in) {
  Args args = args_in;
  {
    Args probe = args_in;
    std::string b;
    if (take_option(probe, "--backend", b) && b == "cuda") return cuda_bench_command(args_in);
  }
  CpuBenchOptions options;
  std::string value, backend = "cpu";
  take_option(args, "--backend", backend);
  if (take_option(args, "--shape", value)) options.spec = bench_trace_spec(value);
  if (take_option(args, "--threads", value)) options.threads = positive("--threads", value);
  if (take_option(args, "--layers", value)) options.layers = positive("--layers", value);
  if (take_option(args, "--repeats", value)) options.repeats = positive("--repeats", value);
  if (take_option(args, "--presets", value)) options.presets = split_commas(value);
  if (take_option(args, "--implementation", value)) options.implementation = parse_cpu_implementation(value);
  const bool clock_given = take_option(args, "--clock", value);  // the PyTorch module takes no --clock: C++ only
  if (clock_given) {
    if (value != "wall" && value != "cpu") VIDKV_THROW(ConfigError, "--clock: expected wall or cpu, got '", value, "'");
    options.cpu_time = value == "cpu";
  }
  const bool no_torch = take_flag(args, "--no-torch") || clock_given;
  reject_unknown_options(args, "vidkv bench");
  if (!args.empty()) VIDKV_THROW(ConfigError, "vidkv bench takes no positional arguments (got '", args[0], "')");
  if (backend != "cpu") VIDKV_THROW(ConfigError, "vidkv bench: --backend must be cpu or cuda, got '", backend, "'");

  if (!no_torch) {
    // The PyTorch comparison runs in this process: the embedded interpreter runs experiments/python/vidkv/bench.py,
    // which calls the same run_cpu_bench() through _vidkv and times torch on the same layers. A build without
    // Python, or a machine without the project's environment, gets the C++ figures alone.
    try {
      return run_python_module("vidkv bench", "vidkv.bench", args_in, "torch (the PyTorch column)");
    } catch (const NotSupportedError& e) {
      std::cerr << "vidkv bench: no PyTorch column (" << e.what() << ")\n";
    }
  }
  const CpuBenchResult r = run_cpu_bench(options);
  std::cout << cpu_bench_markdown(r);
  return 0;
}

}  // namespace

void add_bench_commands(std::vector<Command>& out) {
  out.push_back({{"bench"},
                 "vidkv bench [--backend cpu|cuda] [--shape LxHxTxD] [--threads N] [--presets a,b] [--clock wall|cpu]",
                 "replay throughput (GB/s of fp16 K/V) beside copy bandwidth and a PyTorch implementation",
                 "Options:\n"
                 "  --backend cpu|cuda       the backend to measure (default cpu)\n"
                 "  --shape LxHxTxD          synthetic trace shape (default 28x4x8192x128, fp16, generated in memory)\n"
                 "  --threads N              worker threads over layers (default 1)\n"
                 "  --layers N               layers generated and timed (default max(2, threads))\n"
                 "  --repeats N              best of N (default 3)\n"
                 "  --presets a,b            presets to measure (default kivi-2,vidkv-k1.5-v1.58)\n"
                 "  --implementation NAME    optimized (default) or reference\n"
                 "  --clock wall|cpu         time by wall clock (default) or by the process's CPU time, for a machine\n"
                 "                           shared with other work (C++ figures only; the all-threads copy stays wall time)\n"
                 "  --no-torch               C++ figures only (default: also time a PyTorch implementation in this\n"
                 "                           process, through the embedded Python, when the environment has torch)\n\n"
                 "encode / decode: the preset's quantizers on whole layers; encode+metrics: what vidkv run does per layer,\n"
                 "with the key/value reconstruction errors only, and with every metric (attention over the recorded\n"
                 "queries included).\n"
                 "Ratios compare encode+decode with memcpy bandwidth measured in the same run. docs/performance.md.\n\n"
                 "--backend cuda: encode and decode on the GPU (fp16 device views -> packed device bytes -> fp16), timed\n"
                 "with CUDA events (median of --repeats, default 10), beside cudaMemcpy device-to-device bandwidth and a\n"
                 "PyTorch-on-CUDA implementation in the same process; replay: the preset's lifecycle on the device.\n"
                 "Options there: --tokens a,b,c (default 8192,32768,65536), --layers N (default 28), --shape LxHxTxD\n"
                 "(one token count), --repeats N, --presets a,b, --no-torch.",
                 bench_command});
}

}  // namespace vidkv::cli
