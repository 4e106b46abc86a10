// `vidkv trace ...` subcommands: info, validate, synth, bench-read (traces/SCHEMA.md describes the files).
#include <CLI/CLI.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/traces/patch_grid.h"
#include "vidkv/experiments/src/trace_read_options.h"
#include "vidkv/traces/synthetic_trace.h"
#include "vidkv/traces/trace_read_benchmark.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"

namespace vidkv::cli {

namespace {

// A command that reads one trace: its TRACE positional and the trace reader's policy flags (trace_read_options.h).
struct TraceFileArgs {
  std::string path;
  TraceReadFlags trace_read;
};

std::shared_ptr<TraceFileArgs> define_trace_file(CLI::App& app) {
  auto a = std::make_shared<TraceFileArgs>();
  app.add_option("TRACE", a->path, "the trace file (.h5)")->required();
  add_trace_read_options(app, a->trace_read);
  return a;
}

// Statistics of one [heads, tokens, dim] tensor.
struct TensorStats {
  double mean_abs = 0, max_abs = 0, std = 0;
  double channel_range_ratio = 0;  // largest / smallest (max - min over tokens) among all (head, channel)
};

TensorStats tensor_stats(const std::vector<float>& x, std::int64_t heads, std::int64_t tokens, std::int64_t dim) {
  TensorStats s;
  double sum = 0, sum2 = 0, sum_abs = 0;
  for (float v : x) {
    sum += v;
    sum2 += static_cast<double>(v) * v;
    sum_abs += std::fabs(v);
    s.max_abs = std::max(s.max_abs, static_cast<double>(std::fabs(v)));
  }
  const double n = static_cast<double>(x.size());
  s.mean_abs = sum_abs / n;
  s.std = std::sqrt(std::max(0.0, sum2 / n - (sum / n) * (sum / n)));
  double widest = 0, narrowest = std::numeric_limits<double>::infinity();
  std::vector<float> lo(static_cast<std::size_t>(dim)), hi(static_cast<std::size_t>(dim));
  for (std::int64_t h = 0; h < heads; ++h) {
    std::fill(lo.begin(), lo.end(), std::numeric_limits<float>::infinity());
    std::fill(hi.begin(), hi.end(), -std::numeric_limits<float>::infinity());
    for (std::int64_t t = 0; t < tokens; ++t) {
      const float* row = x.data() + (h * tokens + t) * dim;
      for (std::int64_t c = 0; c < dim; ++c) {
        lo[static_cast<std::size_t>(c)] = std::min(lo[static_cast<std::size_t>(c)], row[c]);
        hi[static_cast<std::size_t>(c)] = std::max(hi[static_cast<std::size_t>(c)], row[c]);
      }
    }
    for (std::int64_t c = 0; c < dim; ++c) {
      const double range = static_cast<double>(hi[static_cast<std::size_t>(c)]) - lo[static_cast<std::size_t>(c)];
      widest = std::max(widest, range);
      narrowest = std::min(narrowest, range);
    }
  }
  s.channel_range_ratio = narrowest > 0 ? widest / narrowest : std::numeric_limits<double>::infinity();
  return s;
}

int trace_info(const std::string& path) {
  // Every layer is read below: the whole file is checked first, in a child process (trace_validation.h).
  validate_trace(path);
  TraceReader reader(path);
  const TraceInfo& in = reader.info();
  std::cout << "trace: " << path << "\n";
  std::cout << "schema: vidkv.trace v" << in.schema_version << ", producer '" << in.producer << "', created "
            << in.created_at << "\n";
  std::cout << "source: " << in.source << ", model " << in.model_id << " (family " << in.model_family << ")\n";
  std::cout << "model: " << in.num_layers << " layers, " << in.num_kv_heads << " KV heads, " << in.num_query_heads
            << " query heads, head_dim " << in.head_dim << ", hidden " << in.hidden_size << ", RoPE " << in.rope
            << (in.rotary ? " (" + in.rotary->str() + ")" : "") << ", dtype " << dtype_name(in.dtype) << "\n";
  const TraceTokens tokens = reader.tokens(/*with_embeddings=*/false);
  std::int64_t count[4] = {0, 0, 0, 0};
  int frames = -1;
  for (std::int64_t i = 0; i < tokens.size(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    ++count[static_cast<int>(tokens.modality[u])];
    frames = std::max(frames, tokens.frame[u]);
  }
  // Modality 0 is every text token before the question that is not visual: chat template, system message and
  // document / context text ("context text"); traces/patch_grid.h for the grid and its closing tokens.
  const PatchGrid grid = patch_grid(tokens);
  std::cout << "tokens: " << in.tokens << " (" << count[0] << " context text, " << count[1] << " visual, " << count[2]
            << " query, " << count[3] << " generated); " << frames + 1 << " frames of " << grid.rows << "x" << grid.columns
            << " patches" << (grid.extra ? " + " + std::to_string(grid.extra) + " closing token" : "") << "; token ids "
            << (in.has_token_ids ? "yes" : "no") << "; embeddings " << (in.has_embeddings ? "yes" : "no") << "\n";
  const auto positions = reader.query_positions();
  std::cout << "queries: " << in.queries << " recorded";
  if (!positions.empty()) std::cout << " (token indices " << positions.front() << ".." << positions.back() << ")";
  std::cout << "\n";
  std::cout << "provenance:" << (in.provenance.empty() ? " none" : "") << "\n";
  for (const auto& [name, value] : in.provenance) std::cout << "  " << name << ": " << value << "\n";
  std::cout << "per-layer statistics over all heads and tokens (range ratio = widest / narrowest per-channel max-min):\n";
  std::printf("  %5s | %9s %9s %9s %11s | %9s %9s %9s %11s\n", "layer", "K mean|x|", "K max|x|", "K std", "K rng ratio",
              "V mean|x|", "V max|x|", "V std", "V rng ratio");
  for (int l = 0; l < in.num_layers; ++l) {
    const LayerData d = reader.read_layer(l);
    const TensorStats k = tensor_stats(d.key, d.heads, d.tokens, d.dim);
    const TensorStats v = tensor_stats(d.value, d.heads, d.tokens, d.dim);
    std::printf("  %5d | %9.4f %9.4f %9.4f %11.2f | %9.4f %9.4f %9.4f %11.2f%s\n", l, k.mean_abs, k.max_abs, k.std,
                k.channel_range_ratio, v.mean_abs, v.max_abs, v.std, v.channel_range_ratio, d.queries ? "  +query" : "");
  }
  return 0;
}

int trace_validate(const std::string& path) {
  std::cout << validate_trace(path).summary() << "\n";
  return 0;
}

struct SynthArgs {
  SyntheticTraceSpec spec;
  TraceWriterOptions options;
  std::string shape, grid, dtype = "fp16", output;
};

int trace_synth(SynthArgs& a) {
  parse_synthetic_shape(a.shape, a.spec);
  if (!a.grid.empty()) {
    int rows = 0, cols = 0;
    char tail = 0;
    if (std::sscanf(a.grid.c_str(), "%dx%d%c", &rows, &cols, &tail) != 2 || rows < 1 || cols < 1 || rows > 32767 ||
        cols > 32767)
      VIDKV_THROW(ConfigError, "option --grid: expected ROWSxCOLS in [1, 32767], got '", a.grid, "'");
    a.spec.patch_rows = rows;
    a.spec.patch_cols = cols;
  }
  a.spec.dtype = parse_dtype(a.dtype, "option --dtype");
  const SyntheticTrace trace(a.spec);
  trace.write(a.output, a.options);
  std::cout << "wrote " << a.output << ": " << trace.spec().str() << " (" << std::filesystem::file_size(a.output) << " bytes)\n";
  return 0;
}

Action define_synth(CLI::App& app) {
  auto a = std::make_shared<SynthArgs>();
  SyntheticTraceSpec& s = a->spec;
  constexpr int kMaxInt = std::numeric_limits<std::int32_t>::max();
  app.add_option("--shape", a->shape, "layers x KV heads x tokens x head_dim, e.g. 28x4x8192x128")
      ->type_name("LxHxTxD")
      ->required();
  app.add_option("--frames", s.frames, "video frames (0 = text only)")->check(CLI::Range(0, kMaxInt))->capture_default_str();
  app.add_option("--grid", a->grid, "patches per frame (default: the largest near-square grid that fits)")->type_name("RxC");
  app.add_option("--query-heads", s.query_heads, "query heads (default 7 x KV heads)")->check(CLI::Range(1, kMaxInt));
  app.add_option("--hidden", s.hidden, "embedding width (default query heads x head_dim)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{kMaxInt}));
  app.add_option("--system-tokens", s.system_tokens, "system-prompt tokens (default clamp(T/32, 1, 64) + what the grid leaves)")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{kMaxInt}));
  app.add_option("--query-tokens", s.query_tokens, "query-text tokens, each with recorded query states (default clamp(T/64, 1, 32))")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{kMaxInt}));
  app.add_option("--generated-tokens", s.generated_tokens, "generated tokens at the end")
      ->check(CLI::Range(std::int64_t{0}, std::int64_t{kMaxInt}))
      ->capture_default_str();
  app.add_option("--outlier-channels", s.outlier_channels, "outlier key channels per head (default head_dim / 32)")
      ->check(CLI::Range(0, kMaxInt));
  app.add_option("--seed", s.seed, "random seed")->capture_default_str();
  app.add_option("--dtype", a->dtype, "stored element type")->check(CLI::IsMember({"fp16", "bf16", "fp32"}))->capture_default_str();
  app.add_option("--deflate", a->options.deflate_level, "shuffle + deflate level 1..9 (0: raw chunks, fastest reads)")
      ->check(CLI::Range(0, 9))
      ->capture_default_str();
  app.add_option("-o,--output", a->output, "the trace to write")->type_name("FILE")->required();
  return [a](const Args&) { return trace_synth(*a); };
}

int trace_bench_read(const std::string& path, bool check, int limit) {
  const double limit_mb = static_cast<double>(limit);
  const ReadBenchmark b = benchmark_streaming_read(path);
  std::cout << b.summary() << "\n";
  if (check && static_cast<double>(b.growth_bytes() - b.layer_bytes_fp32) > limit_mb * 1e6)
    VIDKV_THROW(Error, path, ": peak resident-memory growth ", static_cast<double>(b.growth_bytes()) / 1e6,
                " MB exceeds one layer (", static_cast<double>(b.layer_bytes_fp32) / 1e6, " MB) + ", limit_mb, " MB");
  return 0;
}

}  // namespace

void add_trace_commands(std::vector<Command>& out) {
  out.push_back({{"trace", "info"}, "model, tokens, frames, queries, provenance and per-layer K/V statistics",
                 "Prints the root attributes and /model of a trace, its tokens by modality (context text, visual, query,\n"
                 "generated), frames and patch grid, recorded queries, provenance attributes, then one line per layer\n"
                 "with statistics of K and V over all heads and tokens: mean |x|, max |x|, standard deviation, and the\n"
                 "per-channel range ratio (widest / narrowest max-min of a channel; large for keys with outlier\n"
                 "channels). Layers are read one at a time, after the whole file is checked as by vidkv trace validate.\n\n"
                 "example: vidkv trace info traces/data/synthetic-default.h5",
                 [](CLI::App& app) -> Action {
                   auto a = define_trace_file(app);
                   return [a](const Args&) {
                     apply_trace_read_options(a->trace_read);
                     return trace_info(a->path);
                   };
                 }});
  out.push_back({{"trace", "validate"}, "check a trace against the schema, layer by layer",
                 "Reads every dataset of the trace one layer at a time (constant memory) and checks it against\n"
                 "traces/SCHEMA.md: root attributes, /model, ranks and extents, element types, token metadata\n"
                 "consistency, query positions, and that no K/V/query/embedding value is NaN or Inf.\n"
                 "Exit 0 and one line 'ok: ...' with a summary, or exit 1 and one line 'vidkv: error: FILE: DATASET: ...'.\n"
                 "The file is read in a child process: a crash or a loop inside the HDF5 library on a corrupt file is\n"
                 "reported as an error naming the object (docs/reliability.md). Only regular files are read.\n\n"
                 "example: vidkv trace validate traces/data/synthetic-default.h5",
                 [](CLI::App& app) -> Action {
                   auto a = define_trace_file(app);
                   return [a](const Args&) {
                     apply_trace_read_options(a->trace_read);
                     return trace_validate(a->path);
                   };
                 }});
  out.push_back({{"trace", "synth"}, "write a deterministic synthetic trace with video-LLM structure",
                 "Writes a synthetic trace (traces/synthetic_trace.h): keys with a few large outlier channels and\n"
                 "RoPE-rotated pairs, values with varying channel ranges, system text, a visual span of frames x patch\n"
                 "grid, query text with recorded query states, and input embeddings that make a region of patches\n"
                 "relevant to the query. Same options, same bytes. The file appears only when complete.\n"
                 "example: vidkv trace synth --shape 28x4x8192x128 --frames 16 --seed 1 -o /tmp/big.h5",
                 define_synth});
  out.push_back({{"trace", "bench-read"}, "stream all layers and report time and peak resident memory versus one layer",
                 "Reads every layer of the trace one at a time (as experiments do) and prints the wall time and the\n"
                 "process's resident memory: baseline VmRSS after opening, peak VmHWM after the last layer (the peak is\n"
                 "reset to the baseline first via /proc/self/clear_refs), their difference, and one layer's K+V size as\n"
                 "fp32 (2 x kv_heads x T x head_dim x 4 bytes). Streaming is bounded when the growth stays near one\n"
                 "layer. With --max-growth-over-layer-mb N, exits 1 when growth exceeds one layer + N MB.\n\n"
                 "example: vidkv trace bench-read /tmp/big.h5 --max-growth-over-layer-mb 16",
                 [](CLI::App& app) -> Action {
                   auto path = std::make_shared<std::string>();
                   auto limit = std::make_shared<int>(0);
                   app.add_option("TRACE", *path, "the trace file (.h5)")->required();
                   CLI::Option* opt = app.add_option("--max-growth-over-layer-mb", *limit,
                                                     "exit 1 when peak memory growth exceeds one layer + N MB")
                                          ->type_name("N")
                                          ->check(CLI::Range(0, 1 << 20));
                   return [path, limit, opt](const Args&) { return trace_bench_read(*path, opt->count() > 0, *limit); };
                 }});
}

}  // namespace vidkv::cli
