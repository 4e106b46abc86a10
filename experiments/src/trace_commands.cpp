// `vidkv trace ...` subcommands: info, validate, synth, bench-read (traces/SCHEMA.md describes the files).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"
#include "vidkv/experiments/src/trace_read_options.h"
#include "vidkv/traces/synthetic_trace.h"
#include "vidkv/traces/trace_read_benchmark.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"

namespace vidkv::cli {

namespace {

std::string single_file(const Args& args_in, const std::string& command) {
  Args args = args_in;
  take_trace_read_options(args);
  reject_unknown_options(args, command);
  if (args.size() != 1) VIDKV_THROW(ConfigError, "usage: ", command, " TRACE.h5 (see ", command, " --help)");
  return args[0];
}

std::int64_t parse_integer(const std::string& text, const std::string& option, std::int64_t min, std::int64_t max) {
  std::size_t used = 0;
  long long v = 0;
  try {
    v = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || v < min || v > max)
    VIDKV_THROW(ConfigError, "option ", option, ": expected an integer in [", min, ", ", max, "], got '", text, "'");
  return v;
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

int trace_info(const Args& args) {
  const std::string path = single_file(args, "vidkv trace info");
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
            << ", dtype " << dtype_name(in.dtype) << "\n";
  const TraceTokens tokens = reader.tokens(/*with_embeddings=*/false);
  std::int64_t count[4] = {0, 0, 0, 0};
  int frames = -1, rows = 0, cols = 0;
  for (std::int64_t i = 0; i < tokens.size(); ++i) {
    const auto u = static_cast<std::size_t>(i);
    ++count[static_cast<int>(tokens.modality[u])];
    frames = std::max(frames, tokens.frame[u]);
    rows = std::max(rows, tokens.patch_row[u] + 1);
    cols = std::max(cols, tokens.patch_col[u] + 1);
  }
  std::cout << "tokens: " << in.tokens << " (" << count[0] << " system, " << count[1] << " visual, " << count[2] << " query, "
            << count[3] << " generated); " << frames + 1 << " frames of " << rows << "x" << cols << " patches; token ids "
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

int trace_validate(const Args& args) {
  const std::string path = single_file(args, "vidkv trace validate");
  std::cout << validate_trace(path).summary() << "\n";
  return 0;
}

int trace_synth(const Args& args_in) {
  Args args = args_in;
  SyntheticTraceSpec spec;
  std::string value, output;
  bool have_shape = false;
  if (take_option(args, "--shape", value)) {
    parse_synthetic_shape(value, spec);
    have_shape = true;
  }
  constexpr std::int64_t kMaxInt = std::numeric_limits<std::int32_t>::max();
  if (take_option(args, "--frames", value)) spec.frames = static_cast<int>(parse_integer(value, "--frames", 0, kMaxInt));
  if (take_option(args, "--grid", value)) {
    const auto x = value.find('x');
    if (x == std::string::npos) VIDKV_THROW(ConfigError, "option --grid: expected ROWSxCOLS, got '", value, "'");
    spec.patch_rows = static_cast<int>(parse_integer(value.substr(0, x), "--grid", 1, 32767));
    spec.patch_cols = static_cast<int>(parse_integer(value.substr(x + 1), "--grid", 1, 32767));
  }
  if (take_option(args, "--query-heads", value)) spec.query_heads = static_cast<int>(parse_integer(value, "--query-heads", 1, kMaxInt));
  if (take_option(args, "--hidden", value)) spec.hidden = parse_integer(value, "--hidden", 1, kMaxInt);
  if (take_option(args, "--system-tokens", value)) spec.system_tokens = parse_integer(value, "--system-tokens", 0, kMaxInt);
  if (take_option(args, "--query-tokens", value)) spec.query_tokens = parse_integer(value, "--query-tokens", 0, kMaxInt);
  if (take_option(args, "--generated-tokens", value))
    spec.generated_tokens = parse_integer(value, "--generated-tokens", 0, kMaxInt);
  if (take_option(args, "--outlier-channels", value))
    spec.outlier_channels = static_cast<int>(parse_integer(value, "--outlier-channels", 0, kMaxInt));
  if (take_option(args, "--seed", value))
    spec.seed = static_cast<std::uint64_t>(parse_integer(value, "--seed", 0, std::numeric_limits<std::int64_t>::max()));
  if (take_option(args, "--dtype", value)) spec.dtype = parse_dtype(value, "option --dtype");
  TraceWriterOptions options;
  if (take_option(args, "--deflate", value)) options.deflate_level = static_cast<int>(parse_integer(value, "--deflate", 0, 9));
  if (!take_option(args, "-o", output)) take_option(args, "--output", output);
  reject_unknown_options(args, "vidkv trace synth");
  if (!args.empty()) VIDKV_THROW(ConfigError, "vidkv trace synth: unexpected argument '", args[0], "'");
  if (!have_shape) VIDKV_THROW(ConfigError, "vidkv trace synth: --shape LAYERSxHEADSxTOKENSxDIM is required");
  if (output.empty()) VIDKV_THROW(ConfigError, "vidkv trace synth: -o FILE is required");
  const SyntheticTrace trace(spec);
  trace.write(output, options);
  std::cout << "wrote " << output << ": " << trace.spec().str() << " (" << std::filesystem::file_size(output) << " bytes)\n";
  return 0;
}

int trace_bench_read(const Args& args_in) {
  Args args = args_in;
  std::string limit_text;
  const bool check = take_option(args, "--max-growth-over-layer-mb", limit_text);
  const std::string path = single_file(args, "vidkv trace bench-read");
  const double limit_mb = check ? static_cast<double>(parse_integer(limit_text, "--max-growth-over-layer-mb", 0, 1 << 20)) : 0;
  const ReadBenchmark b = benchmark_streaming_read(path);
  std::cout << b.summary() << "\n";
  if (check && static_cast<double>(b.growth_bytes() - b.layer_bytes_fp32) > limit_mb * 1e6)
    VIDKV_THROW(Error, path, ": peak resident-memory growth ", static_cast<double>(b.growth_bytes()) / 1e6,
                " MB exceeds one layer (", static_cast<double>(b.layer_bytes_fp32) / 1e6, " MB) + ", limit_mb, " MB");
  return 0;
}

}  // namespace

void add_trace_commands(std::vector<Command>& out) {
  out.push_back({{"trace", "info"}, "vidkv trace info TRACE.h5 [--allow-external-data] [--allow-filter-plugins]", "model, tokens, frames, queries, provenance and per-layer K/V statistics",
                 "Prints the root attributes and /model of a trace, its tokens by modality (system, visual, query,\n"
                 "generated), frames and patch grid, recorded queries, provenance attributes, then one line per layer\n"
                 "with statistics of K and V over all heads and tokens: mean |x|, max |x|, standard deviation, and the\n"
                 "per-channel range ratio (widest / narrowest max-min of a channel; large for keys with outlier\n"
                 "channels). Layers are read one at a time, after the whole file is checked as by vidkv trace validate.\n\n"
                 "options:\n" + std::string(kTraceReadOptionsHelp) + "\n"
                 "example: vidkv trace info traces/data/synthetic-default.h5",
                 trace_info});
  out.push_back({{"trace", "validate"}, "vidkv trace validate TRACE.h5 [--allow-external-data] [--allow-filter-plugins]", "check a trace against the schema, layer by layer",
                 "Reads every dataset of the trace one layer at a time (constant memory) and checks it against\n"
                 "traces/SCHEMA.md: root attributes, /model, ranks and extents, element types, token metadata\n"
                 "consistency, query positions, and that no K/V/query/embedding value is NaN or Inf.\n"
                 "Exit 0 and one line 'ok: ...' with a summary, or exit 1 and one line 'vidkv: error: FILE: DATASET: ...'.\n"
                 "The file is read in a child process: a crash or a loop inside the HDF5 library on a corrupt file is\n"
                 "reported as an error naming the object (docs/reliability.md). Only regular files are read.\n\n"
                 "options:\n" + std::string(kTraceReadOptionsHelp) + "\n"
                 "example: vidkv trace validate traces/data/synthetic-default.h5",
                 trace_validate});
  out.push_back({{"trace", "synth"}, "vidkv trace synth --shape LxHxTxD [options] -o TRACE.h5",
                 "write a deterministic synthetic trace with video-LLM structure",
                 "Writes a synthetic trace (traces/synthetic_trace.h): keys with a few large outlier channels and\n"
                 "RoPE-rotated pairs, values with varying channel ranges, system text, a visual span of frames x patch\n"
                 "grid, query text with recorded query states, and input embeddings that make a region of patches\n"
                 "relevant to the query. Same options, same bytes. The file appears only when complete.\n\n"
                 "options:\n"
                 "  --shape LxHxTxD         layers x KV heads x tokens x head_dim (required), e.g. 28x4x8192x128\n"
                 "  --frames N              video frames (default 8; 0 = text only)\n"
                 "  --grid RxC              patches per frame (default: the largest near-square grid that fits)\n"
                 "  --query-heads N         query heads (default 7 x KV heads)\n"
                 "  --hidden N              embedding width (default query heads x head_dim)\n"
                 "  --system-tokens N       system-prompt tokens (default clamp(T/32, 1, 64) + what the grid leaves)\n"
                 "  --query-tokens N        query-text tokens, each with recorded query states (default clamp(T/64, 1, 32))\n"
                 "  --generated-tokens N    generated tokens at the end (default 0)\n"
                 "  --outlier-channels N    outlier key channels per head (default head_dim / 32)\n"
                 "  --seed S                random seed (default 0)\n"
                 "  --dtype fp16|bf16|fp32  stored element type (default fp16)\n"
                 "  --deflate L             shuffle + deflate level 1..9 (default 0: raw chunks, fastest reads)\n"
                 "  -o, --output FILE       the trace to write (required)\n\n"
                 "example: vidkv trace synth --shape 28x4x8192x128 --frames 16 --seed 1 -o /tmp/big.h5",
                 trace_synth});
  out.push_back({{"trace", "bench-read"}, "vidkv trace bench-read TRACE.h5 [--max-growth-over-layer-mb N]",
                 "stream all layers and report time and peak resident memory versus one layer",
                 "Reads every layer of the trace one at a time (as experiments do) and prints the wall time and the\n"
                 "process's resident memory: baseline VmRSS after opening, peak VmHWM after the last layer (the peak is\n"
                 "reset to the baseline first via /proc/self/clear_refs), their difference, and one layer's K+V size as\n"
                 "fp32 (2 x kv_heads x T x head_dim x 4 bytes). Streaming is bounded when the growth stays near one\n"
                 "layer. With --max-growth-over-layer-mb N, exits 1 when growth exceeds one layer + N MB.\n\n"
                 "example: vidkv trace bench-read /tmp/big.h5 --max-growth-over-layer-mb 16",
                 trace_bench_read});
}

}  // namespace vidkv::cli
