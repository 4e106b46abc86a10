// `vidkv bench --backend cpu`: replay throughput beside the machine's copy bandwidth (cpu_bench.h) and beside a
// PyTorch implementation of the same math run in the same process: in a Python build the embedded interpreter runs
<<<<<<< HEAD
// experiments/python/vidkv/bench.py, which calls the same C++ bench through _vidkv and times torch on the same
// layers (--no-torch, or no Python: the C++ figures alone).
// `vidkv bench --backend cuda`: the same on the GPU (cuda_bench.h; torch on CUDA: experiments/python/vidkv/bench_cuda.py).
#include <cstdlib>
=======
// experiments/python/vidkv/bench.py (same options), which calls the same C++ bench through _vidkv and times torch on
// the same layers (--no-torch, or no Python: the C++ figures alone).
#include <CLI/CLI.hpp>

>>>>>>> issue14-truth
#include <iostream>
#include <memory>
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

struct BenchArgs {
  std::string backend = "cpu", shape = "28x4x8192x128", presets = "kivi-2,vidkv-k1.5-v1.58", implementation = "optimized";
  int threads = 1, layers = 0, repeats = 3;
  bool no_torch = false;
};

<<<<<<< HEAD
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
=======
int bench_command(const BenchArgs& a, const Args& raw) {
  if (a.backend != "cpu")
    VIDKV_THROW(NotSupportedError, "vidkv bench: backend '", a.backend, "' is not available; this build benchmarks --backend cpu");
  CpuBenchOptions options;
  options.spec = bench_trace_spec(a.shape);
  options.threads = a.threads;
  options.layers = a.layers;
  options.repeats = a.repeats;
  options.presets = split_commas(a.presets);
  options.implementation = parse_cpu_implementation(a.implementation);
  if (!a.no_torch) {
>>>>>>> issue14-truth
    // The PyTorch comparison runs in this process: the embedded interpreter runs experiments/python/vidkv/bench.py,
    // which calls the same run_cpu_bench() through _vidkv and times torch on the same layers. A build without
    // Python, or a machine without the project's environment, gets the C++ figures alone.
    try {
      return run_python_module("vidkv bench", "vidkv.bench", raw, "torch (the PyTorch column)");
    } catch (const NotSupportedError& e) {
      std::cerr << "vidkv bench: no PyTorch column (" << e.what() << ")\n";
    }
  }
  const CpuBenchResult r = run_cpu_bench(options);
  std::cout << cpu_bench_markdown(r);
  return 0;
}

Action define_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  app.add_option("--backend", a->backend, "the backend to measure (cpu only in this build)")->capture_default_str();
  app.add_option("--shape", a->shape, "synthetic trace shape, fp16, generated in memory")
      ->type_name("LxHxTxD")
      ->capture_default_str();
  app.add_option("--threads", a->threads, "worker threads over layers")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--layers", a->layers, "layers generated and timed (0: max(2, threads))")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  app.add_option("--repeats", a->repeats, "best of N")->check(CLI::Range(1, 4096))->capture_default_str();
  app.add_option("--presets", a->presets, "presets to measure, comma-separated")->type_name("a,b")->capture_default_str();
  app.add_option("--implementation", a->implementation, "optimized or reference")
      ->check(CLI::IsMember({"optimized", "reference"}))
      ->capture_default_str();
  app.add_flag("--no-torch", a->no_torch,
               "C++ figures only (default: also time a PyTorch implementation in this process, through the embedded\n"
               "Python, when the environment has torch)");
  return [a](const Args& raw) { return bench_command(*a, raw); };
}

}  // namespace

void add_bench_commands(std::vector<Command>& out) {
<<<<<<< HEAD
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
                 "PyTorch-on-CUDA implementation in the same process. Options there: --tokens a,b,c (default\n"
                 "8192,32768,65536), --layers N (default 28), --shape LxHxTxD (one token count), --repeats N, --presets\n"
                 "a,b, --no-torch.",
                 bench_command});
=======
  out.push_back({{"bench"}, "replay throughput (GB/s of fp16 K/V) beside copy bandwidth and a PyTorch implementation",
                 "encode / decode: the preset's quantizers on whole layers; encode+metrics: what vidkv run does per layer.\n"
                 "Ratios compare encode+decode with memcpy bandwidth measured in the same run. docs/performance.md.",
                 define_bench});
>>>>>>> issue14-truth
}

}  // namespace vidkv::cli
