// `vidkv bench --backend cpu`: replay throughput beside the machine's copy bandwidth (cpu_bench.h) and beside a
// PyTorch implementation of the same math run in the same process: in a Python build the embedded interpreter runs
// experiments/python/vidkv/bench.py (same options), which calls the same C++ bench through _vidkv and times torch on
// the same layers (--no-torch, or no Python: the C++ figures alone).
// `vidkv bench --backend cuda`: the same on the GPU (cuda_bench.h; torch on CUDA: experiments/python/vidkv/bench_cuda.py).
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <sstream>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/attention_bench.h"
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
  std::string tokens = "8192,32768,65536", clock = "wall", fft_tiers = "avx512,fftw-batched,fftw";
  int threads = 1, layers = 0, repeats = 3;
  bool no_torch = false, live = false, profile = false, fused = false, fused_only = false;
  int steps = 32, hidden = 3584, rounds = 3, prefill_chunk = 0;  // --live (read by experiments/python/vidkv/bench_live.py)
  std::string device = "cuda", sdpa = "flash,efficient,math";
  bool attention = false;
  std::string batches = "1,8";
  int query_tokens = 1;  // --attention
  // --attention: the synthetic geometry, AttentionBenchOptions' defaults unless given
  int kv_heads = AttentionBenchOptions{}.kv_heads, query_heads_per_kv = AttentionBenchOptions{}.query_heads_per_kv,
      head_dim = AttentionBenchOptions{}.head_dim;
  // Whether an option was given (its default differs between the backends, or it applies to one only).
  CLI::Option *shape_opt = nullptr, *tokens_opt = nullptr, *layers_opt = nullptr, *repeats_opt = nullptr,
              *threads_opt = nullptr, *implementation_opt = nullptr, *clock_opt = nullptr, *batches_opt = nullptr,
              *presets_opt = nullptr, *fft_tiers_opt = nullptr, *fused_only_opt = nullptr, *prefill_chunk_opt = nullptr,
              *backend_opt = nullptr, *query_tokens_opt = nullptr;
  std::vector<CLI::Option*> attention_geometry_opts;  // --kv-heads, --query-heads-per-kv, --head-dim
};

// Options given where they do not apply are usage errors (exit status 2, command_line.cpp), as unknown ones are.
[[noreturn]] void usage_error(const std::string& message) { throw CLI::ValidationError(message); }

void only_for(const CLI::Option* given, const char* option, const char* backend) {
  if (given && given->count() > 0) usage_error(std::string(option) + " applies to --backend " + backend + " only");
}

// A comma-separated list of positive counts for `option` (--tokens: token counts, --batches: batch sizes).
std::vector<std::int64_t> positive_counts(const std::string& value, const char* option, const char* what) {
  std::vector<std::int64_t> out;
  for (const auto& item : split_commas(value)) {
    char* end = nullptr;
    const long long n = std::strtoll(item.c_str(), &end, 10);
    if (*end || n < 1 || n > (1ll << 24)) usage_error(std::string(option) + ": expected positive " + what + ", got '" + item + "'");
    out.push_back(n);
  }
  if (out.empty()) usage_error(std::string(option) + ": expected a comma-separated list of " + what);
  return out;
}
std::vector<std::int64_t> token_counts(const std::string& value) { return positive_counts(value, "--tokens", "token counts"); }

// --fft-tiers: "none" or FFT tier names (core/cpu_fft_tier.h), comma-separated.
std::vector<CpuFftTier> fft_tier_list(const std::string& value) {
  std::vector<CpuFftTier> out;
  if (value == "none") return out;
  for (const auto& item : split_commas(value)) out.push_back(parse_cpu_fft_tier(item, "--fft-tiers"));
  if (out.empty()) VIDKV_THROW(ConfigError, "--fft-tiers: expected 'none' or a comma-separated list of avx512, fftw-batched, fftw");
  return out;
}

// --backend cuda (cuda_bench.h): --tokens (or the one token count of --shape), --layers default 28, median of
// --repeats (default 10).
int cuda_bench_command(const BenchArgs& a, const Args& raw) {
  only_for(a.threads_opt, "--threads", "cpu");
  only_for(a.implementation_opt, "--implementation", "cpu");
  only_for(a.clock_opt, "--clock", "cpu");
  only_for(a.fft_tiers_opt, "--fft-tiers", "cpu");
  CudaBenchOptions options;
  if (a.shape_opt->count() > 0) {
    const SyntheticTraceSpec spec = bench_trace_spec(a.shape);
    options.layers = spec.layers;
    options.heads = spec.kv_heads;
    options.tokens = {spec.tokens};
    options.head_dim = spec.head_dim;
  }
  if (a.tokens_opt->count() > 0) options.tokens = token_counts(a.tokens);
  if (a.layers_opt->count() > 0) {
    if (a.layers < 1) VIDKV_THROW(ConfigError, "vidkv bench --backend cuda: --layers must be at least 1, got ", a.layers);
    options.layers = a.layers;
  }
  if (a.repeats_opt->count() > 0) options.repeats = a.repeats;
  options.presets = split_commas(a.presets);
  if (!a.no_torch) {
    // PyTorch on CUDA in this process: experiments/python/vidkv/bench.py (--backend cuda) calls run_cuda_bench()
    // through _vidkv and times experiments/python/vidkv/bench_cuda.py on the same layer shapes.
    try {
      return run_python_module("vidkv bench", "vidkv.bench", raw, "torch with CUDA (the PyTorch column)");
    } catch (const NotSupportedError& e) {
      std::cerr << "vidkv bench: no PyTorch column (" << e.what() << ")\n";
    }
  }
  std::cout << cuda_bench_markdown(run_cuda_bench(options));
  return 0;
}

// PyTorch's fp16 SDPA latencies for the attention bench: experiments/python/vidkv/bench_attention.py run by
// $VIDKV_PYTHON, else the source tree's .venv/bin/python, else python3; the JSON line it prints last read back (the
// fastest variant's ms and name per shape). Empty (and a line on stderr saying why) when that python has no torch
// with CUDA or the script fails.
std::vector<TorchSdpaTime> torch_attention_ms(const AttentionBenchOptions& o) {
  namespace fs = std::filesystem;
  std::string python = "python3";
  if (const char* env = std::getenv("VIDKV_PYTHON"); env && *env) {
    python = env;
  } else if (fs::exists(fs::path(VIDKV_SOURCE_DIR) / ".venv" / "bin" / "python")) {
    python = (fs::path(VIDKV_SOURCE_DIR) / ".venv" / "bin" / "python").string();
  }
  auto join = [](const std::vector<std::int64_t>& v) {
    std::string s;
    for (auto x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
  };
  const std::string cmd = "'" + python + "' '" + (fs::path(VIDKV_SOURCE_DIR) / "experiments" / "python" / "vidkv" / "bench_attention.py").string() +
                          "' --batches " + join(o.batches) + " --tokens " + join(o.tokens) + " --kv-heads " +
                          std::to_string(o.kv_heads) + " --query-heads-per-kv " + std::to_string(o.query_heads_per_kv) +
                          " --head-dim " + std::to_string(o.head_dim) + " --repeats " + std::to_string(o.repeats) +
                          " --query-tokens " + std::to_string(o.query_tokens);
  std::string text;
  if (FILE* f = popen(cmd.c_str(), "r")) {
    char buf[4096];
    while (std::fgets(buf, sizeof buf, f)) text += buf;
    pclose(f);
  }
  std::string why;
  std::vector<TorchSdpaTime> out = parse_torch_sdpa_json(text, &why);
  if (out.empty()) std::cerr << "vidkv bench --attention: no PyTorch column (" << python << ": " << why << ")\n";
  return out;
}

// --attention (attention_bench.h): fused decode attention vs PyTorch fp16 SDPA.
int attention_bench_command(const BenchArgs& a) {
  only_for(a.threads_opt, "--threads", "cpu");
  only_for(a.implementation_opt, "--implementation", "cpu");
  only_for(a.clock_opt, "--clock", "cpu");
  only_for(a.fft_tiers_opt, "--fft-tiers", "cpu");
  only_for(a.shape_opt, "--shape", "cpu and cuda (not --attention)");
  if (a.backend_opt->count() > 0 && a.backend != "cuda") usage_error("--attention runs on the GPU: --backend cuda or none");
  AttentionBenchOptions o;
  if (a.tokens_opt->count() > 0) o.tokens = token_counts(a.tokens);
  o.batches = positive_counts(a.batches, "--batches", "batch sizes");
  if (a.repeats_opt->count() > 0) o.repeats = a.repeats;
  if (a.presets_opt->count() > 0) o.presets = split_commas(a.presets);
  o.query_tokens = a.query_tokens;
  o.kv_heads = a.kv_heads;
  o.query_heads_per_kv = a.query_heads_per_kv;
  o.head_dim = a.head_dim;
  const AttentionBenchResult r = run_attention_bench(o);
  const std::vector<TorchSdpaTime> torch = a.no_torch ? std::vector<TorchSdpaTime>{} : torch_attention_ms(o);
  std::cout << attention_bench_markdown(r, o, torch);
  return 0;
}

int bench_command(const BenchArgs& a, const Args& raw) {
  for (const auto& [given, name] : {std::pair{a.fused_only_opt, "--fused-only"}, std::pair{a.prefill_chunk_opt, "--prefill-chunk"}})
    if (!a.live && given->count() > 0) usage_error(std::string(name) + " applies to --live only");
  if (a.attention) return attention_bench_command(a);
  if (a.query_tokens_opt->count() > 0) usage_error("--query-tokens applies to --attention only");
  for (const CLI::Option* opt : a.attention_geometry_opts)
    if (opt->count() > 0) usage_error(opt->get_name() + " applies to --attention only");
  if (a.batches_opt->count() > 0 && !a.live)
    usage_error("--batches applies to --attention and --live only");
  // --live: the live cache in a random-weight 7B-geometry model against fp16 DynamicCache, in Python
  // (experiments/python/vidkv/bench_live.py parses the rest of the options).
  if (a.live) only_for(a.fft_tiers_opt, "--fft-tiers", "cpu (not --live)");
  if (a.live) return run_python_module("vidkv bench", "vidkv.bench_live", raw, "torch and transformers (vidkv bench --live)");
  if (a.backend == "cuda") return cuda_bench_command(a, raw);
  if (a.tokens_opt->count() > 0)
    usage_error("--tokens applies to --backend cuda, --attention and --live only");
  CpuBenchOptions options;
  options.spec = bench_trace_spec(a.shape);
  options.threads = a.threads;
  options.layers = a.layers;
  options.repeats = a.repeats;
  options.presets = split_commas(a.presets);
  options.implementation = parse_cpu_implementation(a.implementation);
  options.cpu_time = a.clock == "cpu";
  options.fft_tiers = fft_tier_list(a.fft_tiers);
  // --clock given: the C++ figures alone (the PyTorch column is timed by wall clock only).
  const bool no_torch = a.no_torch || a.clock_opt->count() > 0;
  if (!no_torch) {
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
  a->backend_opt = app.add_option("--backend", a->backend, "the backend to measure (--attention: always the GPU)")
                       ->check(CLI::IsMember({"cpu", "cuda"}))
                       ->capture_default_str();
  a->shape_opt = app.add_option("--shape", a->shape,
                                "synthetic trace shape, fp16, generated in memory (cuda: one token count, default\n"
                                "28x4xTx128 with T from --tokens)")
                     ->type_name("LxHxTxD")
                     ->capture_default_str();
  a->tokens_opt = app.add_option("--tokens", a->tokens, "--backend cuda, --attention and --live: the token counts measured, comma-separated\n"
                                "(the default shown is --backend cuda's; --attention: 8192,16384,32768,65536,131072)")
                      ->type_name("a,b,c")
                      ->capture_default_str();
  a->threads_opt =
      app.add_option("--threads", a->threads, "cpu only: worker threads over layers")->check(CLI::Range(1, 4096))->capture_default_str();
  a->layers_opt = app.add_option("--layers", a->layers, "layers generated and timed (cpu 0: max(2, threads); cuda default 28)")
                      ->check(CLI::Range(0, 4096))
                      ->capture_default_str();
  a->repeats_opt = app.add_option("--repeats", a->repeats, "best of N (cuda: median of N, default 10; --attention: median of N, default 20)")
                       ->check(CLI::Range(1, 4096))
                       ->capture_default_str();
  a->presets_opt = app.add_option("--presets", a->presets, "presets to measure, comma-separated (--attention default:\n"
                                  "fp16,kivi-2,vidkv-k1.5-v1.58)")
                       ->type_name("a,b")
                       ->capture_default_str();
  a->implementation_opt = app.add_option("--implementation", a->implementation, "cpu only: optimized or reference")
                              ->check(CLI::IsMember({"optimized", "reference"}))
                              ->capture_default_str();
  a->clock_opt = app.add_option("--clock", a->clock,
                                "cpu only: time by wall clock or by the process's CPU time, for a machine shared with\n"
                                "other work (C++ figures only; the all-threads copy stays wall time)")
                     ->check(CLI::IsMember({"wall", "cpu"}))
                     ->capture_default_str();
  a->fft_tiers_opt = app.add_option("--fft-tiers", a->fft_tiers,
                                    "cpu only: channel FFT tiers (avx512, fftw-batched, fftw; or none) timed against\n"
                                    "each other in this run, interleaved per repeat, for the presets with a sign FFT")
                         ->type_name("a,b")
                         ->check([](const std::string& v) {
                           try {
                             fft_tier_list(v);
                             return std::string();
                           } catch (const Error& e) {
                             return std::string(e.what());
                           }
                         })
                         ->capture_default_str();
  app.add_flag("--attention", a->attention,
               "fused decode attention from the packed cache on the GPU (attention/decode_attention.h) against\n"
               "PyTorch fp16 scaled_dot_product_attention (the fastest way of calling it, named in the table: q\n"
               "[B, 28, 1, D] with enable_gqa under torch's own backend choice, flash, cuDNN or efficient, or q as\n"
               "7 query rows per KV head), 4 KV heads with 7 query heads each (28), head_dim 128 unless --kv-heads,\n"
               "--query-heads-per-kv, --head-dim say otherwise (--tokens default 8192,16384,32768,65536,131072;\n"
               "--batches; --presets; --repeats default 20)");
  a->attention_geometry_opts = {
      app.add_option("--kv-heads", a->kv_heads, "--attention only: KV heads of the synthetic caches")
          ->check(CLI::Range(1, 256))
          ->capture_default_str(),
      app.add_option("--query-heads-per-kv", a->query_heads_per_kv,
                     "--attention only: query heads per KV head (GQA; above 8 the kernels take groups of at most 8\n"
                     "as rows of one run, each reading the cache: docs/decode-attention.md)")
          ->check(CLI::Range(1, 128))
          ->capture_default_str(),
      app.add_option("--head-dim", a->head_dim,
                     "--attention only: head_dim (at most 256; the fragment presets need a multiple of 64)")
          ->check(CLI::Range(1, 256))
          ->capture_default_str()};
  a->query_tokens_opt = app.add_option("--query-tokens", a->query_tokens,
                                       "--attention only: query tokens per sequence, the caches' last N tokens attending\n"
                                       "causally (assisted decoding's candidates; our kernels read the cache once per\n"
                                       "query token, SDPA reads it once with a lower-right causal mask)")
                            ->check(CLI::Range(1, 8))
                            ->capture_default_str();
  a->batches_opt = app.add_option("--batches", a->batches,
                                  "--attention and --live: batch sizes, comma-separated (default 1,8; --live: 1)")
                       ->type_name("a,b")
                       ->capture_default_str();
  app.add_flag("--live", a->live,
               "the live cache instead: ms per decode step and device bytes of VidKVCache vs fp16 DynamicCache in a\n"
               "random-weight model with a 7B VideoLLM's KV geometry (GPU; options --tokens, --batches, --presets, --steps,\n"
               "--rounds, --prefill-chunk, --layers, --hidden, --device: python -m vidkv.bench_live --help)");
  app.add_option("--steps", a->steps, "--live only: decode steps of each cache's memory run, and per round of the timing")
      ->check(CLI::Range(2, 100000));
  app.add_option("--rounds", a->rounds,
                 "--live only: timed steps per cache = rounds x steps, all caches held at once and their steps "
                 "interleaved one by one")
      ->check(CLI::Range(1, 1000));
  app.add_option("--hidden", a->hidden, "--live only: hidden size (multiple of 128)");
  app.add_option("--device", a->device, "--live only: cuda or cpu");
  app.add_option("--sdpa", a->sdpa, "--live only: torch SDPA backends enabled (default flash,efficient,math)");
  app.add_flag("--fused", a->fused, "--live only: also VidKVCache(attention='fused') for every preset");
  a->fused_only_opt = app.add_flag("--fused-only", a->fused_only, "--live only, with --fused: no materialising VidKVCache runs");
  a->prefill_chunk_opt = app.add_option("--prefill-chunk", a->prefill_chunk,
                                        "--live only: prefill in passes of at most this many tokens per sequence (0: one pass;\n"
                                        "long prompts at batch > 1 need it for the activations' memory; VidKVCache takes the\n"
                                        "passes after the first as appends under its lifecycle's decode-time rules: see\n"
                                        "python -m vidkv.bench_live --help)")
      ->check(CLI::Range(0, 1 << 24));
  app.add_flag("--profile", a->profile, "--live only: torch.profiler's top ops of one decode step per run");
  app.add_flag("--no-torch", a->no_torch,
               "C++ figures only (default: also time a PyTorch implementation in this process, through the embedded\n"
               "Python, when the environment has torch)");
  return [a](const Args& raw) { return bench_command(*a, raw); };
}

}  // namespace

void add_bench_commands(std::vector<Command>& out) {
  out.push_back({{"bench"}, "replay throughput (GB/s of fp16 K/V) beside copy bandwidth and a PyTorch implementation",
                 "encode / decode: the preset's quantizers on whole layers; encode+metrics: what vidkv run does per layer,\n"
                 "with the key/value reconstruction errors only, and with every metric (attention over the recorded\n"
                 "queries included), and every metric once more through the scalar reference (one pass; the work of\n"
                 "the metrics before issue 15).\n"
                 "Ratios compare encode+metrics (all) with its scalar reference, encode+decode with encode+metrics\n"
                 "(reconstruction) and with memcpy bandwidth, all measured in the same run. docs/performance.md.\n"
                 "For presets with a sign FFT (vidkv-k1.5-*), encode and decode once more with each channel FFT tier\n"
                 "(--fft-tiers: the hand-written AVX-512 FFT, FFTW's batched plans, FFTW's per-row plans), interleaved\n"
                 "per repeat, and their encode+decode over the AVX-512 tier's in the same run.\n\n"
                 "--backend cuda: encode and decode on the GPU (fp16 device views -> packed device bytes -> fp16), timed\n"
                 "with CUDA events (median of --repeats, default 10), beside cudaMemcpy device-to-device bandwidth and a\n"
                 "PyTorch-on-CUDA implementation in the same process; replay: the preset's lifecycle on the device.\n"
                 "Options there: --tokens a,b,c (default 8192,32768,65536), --layers N (default 28), --shape LxHxTxD\n"
                 "(one token count), --repeats N, --presets a,b, --no-torch.\n\n"
                 "--attention: fused decode attention straight from the packed cache (docs/decode-attention.md): latency\n"
                 "for batches 1 and 8 (--batches), 8k..128k tokens (--tokens), beside PyTorch fp16 SDPA (a python\n"
                 "process: $VIDKV_PYTHON, .venv/bin/python or python3) and the bytes read as a fraction of copy bandwidth;\n"
                 "which kernel took the fast tiles, and where it was the tensor-core or the fragment one the CUDA-core\n"
                 "kernel's latency in the same run (VIDKV_CUDA_FRAGMENT_ATTENTION=off: the tensor-core kernel instead of\n"
                 "the fragment one, for an A / B run).",
                 define_bench});
}

}  // namespace vidkv::cli
