// `vidkv bench --backend cpu`: replay throughput beside the machine's copy bandwidth (cpu_bench.h); with
// VIDKV_PYTHON naming a Python that has torch, the same figures come from `python -m vidkv.bench`, which runs the
// C++ bench and a PyTorch implementation of the same math in one process (experiments/python/vidkv/bench.py).
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <sstream>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/cpu_bench.h"

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

int bench_command(const Args& args_in) {
  Args args = args_in;
  CpuBenchOptions options;
  std::string value, backend = "cpu";
  take_option(args, "--backend", backend);
  if (take_option(args, "--shape", value)) options.spec = bench_trace_spec(value);
  if (take_option(args, "--threads", value)) options.threads = positive("--threads", value);
  if (take_option(args, "--layers", value)) options.layers = positive("--layers", value);
  if (take_option(args, "--repeats", value)) options.repeats = positive("--repeats", value);
  if (take_option(args, "--presets", value)) options.presets = split_commas(value);
  if (take_option(args, "--implementation", value)) options.implementation = parse_cpu_implementation(value);
  const bool no_torch = take_flag(args, "--no-torch");
  reject_unknown_options(args, "vidkv bench");
  if (!args.empty()) VIDKV_THROW(ConfigError, "vidkv bench takes no positional arguments (got '", args[0], "')");
  if (backend != "cpu")
    VIDKV_THROW(NotSupportedError, "vidkv bench: backend '", backend, "' is not available; this build benchmarks --backend cpu");

  const char* python = std::getenv("VIDKV_PYTHON");
  if (python && *python && !no_torch) {
    // Hand over to the Python driver: the C++ figures come from the same run_cpu_bench() through _vidkv, and
    // torch runs in that same process. exec replaces this process (nothing of ours keeps running).
    std::vector<std::string> argv_s = {python, "-m", "vidkv.bench"};
    for (const auto& a : args_in) argv_s.push_back(a);
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    // The package (experiments/python) and the extension (BUILD/python) of this build go first on the path.
    std::string path = std::string(VIDKV_SOURCE_DIR) + "/experiments/python:" + VIDKV_PYTHON_MODULE_DIR;
    if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += std::string(":") + old;
    ::setenv("PYTHONPATH", path.c_str(), 1);
    std::cerr << "vidkv bench: running " << python << " -m vidkv.bench (VIDKV_PYTHON) for the PyTorch comparison\n";
    ::execvp(python, argv.data());
    VIDKV_THROW(IoError, "vidkv bench: cannot run VIDKV_PYTHON=", python);
  }
  const CpuBenchResult r = run_cpu_bench(options);
  std::cout << cpu_bench_markdown(r);
  std::cout << "\nPyTorch column: set VIDKV_PYTHON to a Python with torch and the _vidkv module (a VIDKV_ENABLE_PYTHON "
               "build) on its path.\n";
  return 0;
}

}  // namespace

void add_bench_commands(std::vector<Command>& out) {
  out.push_back({{"bench"},
                 "vidkv bench [--backend cpu] [--shape LxHxTxD] [--threads N] [--presets a,b]",
                 "replay throughput (GB/s of fp16 K/V) beside copy bandwidth and a PyTorch implementation",
                 "Options:\n"
                 "  --backend cpu            the backend to measure (cpu only in this build)\n"
                 "  --shape LxHxTxD          synthetic trace shape (default 28x4x8192x128, fp16, generated in memory)\n"
                 "  --threads N              worker threads over layers (default 1)\n"
                 "  --layers N               layers generated and timed (default max(2, threads))\n"
                 "  --repeats N              best of N (default 3)\n"
                 "  --presets a,b            presets to measure (default kivi-2,vidkv-k1.5-v1.58)\n"
                 "  --implementation NAME    optimized (default) or reference\n"
                 "  --no-torch               do not hand over to VIDKV_PYTHON\n\n"
                 "encode / decode: the preset's quantizers on whole layers; encode+metrics: what vidkv run does per layer.\n"
                 "Ratios compare encode+decode with memcpy bandwidth measured in the same run. docs/performance.md.",
                 bench_command});
}

}  // namespace vidkv::cli
