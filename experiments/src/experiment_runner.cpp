#include "vidkv/experiments/src/experiment_runner.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "vidkv_build_info.h"
#include "vidkv/core/bits_accounting.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"
#include "vidkv/core/logging.h"
#include "vidkv/core/rotary.h"
#include "vidkv/core/thread_pool.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/experiments/src/cuda_replay.h"
#include "vidkv/experiments/src/decode_step_metrics.h"
#include "vidkv/experiments/src/interrupt_note.h"
#include "vidkv/experiments/src/kernel_tiers.h"
#include "vidkv/experiments/src/layer_buffer_reuse.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/traces/trace_reader.h"

namespace fs = std::filesystem;

namespace vidkv {

namespace {

const char* kBuildInfo = VIDKV_BUILD_INFO;

std::string git_revision() {
#ifdef VIDKV_SOURCE_DIR
  const std::string cmd = std::string("git -C '") + VIDKV_SOURCE_DIR + "' describe --always --dirty --abbrev=12 2>/dev/null";
  if (FILE* p = ::popen(cmd.c_str(), "r")) {
    char buf[128] = {0};
    const bool ok = std::fgets(buf, sizeof buf, p) != nullptr;
    ::pclose(p);
    std::string s = ok ? buf : "";
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    if (!s.empty()) return s;
  }
#endif
  return "unknown";
}

// Fingerprint of what determines the results: the resolved runs and traces; --resume refuses a different plan.
// `tiers`: the inexact kernel tiers (kernel_tiers.h), "" when all are exact (so older folders still resume). Also
// the items it is made of, one line each ("seed<TAB>5", "run 'a' codec<TAB>{...}", ...), which plan.fingerprint
// stores after the hash so that a refused --resume can name what changed. The hash is of the same text as before
// the items were stored (folders written earlier still resume).
struct PlanFingerprint {
  std::string hash;
  std::vector<std::string> items;  // "name<TAB>value", neither holding a tab or a line break
};

PlanFingerprint plan_fingerprint(const ExperimentPlan& plan, const std::string& tiers) {
  PlanFingerprint f;
  auto item = [&](const std::string& name, const std::string& value) {
    std::string line = name + "\t" + value;
    for (std::size_t i = 0; i < line.size(); ++i)
      if (line[i] == '\n' || line[i] == '\r' || (line[i] == '\t' && i != name.size())) line[i] = ' ';
    f.items.push_back(line);
  };
  std::ostringstream s, metrics;
  s << plan.name << "|" << plan.seed << "|";
  for (const auto& m : plan.metrics) metrics << m << ",";
  s << metrics.str();
  item("experiment name", plan.name);
  item("seed", std::to_string(plan.seed));
  item("metrics", metrics.str());
  for (std::size_t i = 0; i < plan.traces.size(); ++i) {
    s << "|" << plan.traces[i];
    item("trace " + std::to_string(i + 1), plan.traces[i]);
  }
  for (std::size_t i = 0; i < plan.trace_identities.size(); ++i) {
    s << "|" << plan.trace_identities[i];  // contents, not only paths (docs/reliability.md)
    item("contents of trace " + (i < plan.traces.size() ? plan.traces[i] : std::to_string(i + 1)), plan.trace_identities[i]);
  }
  for (const auto& r : plan.runs) {
    s << "|" << r.name << ":" << r.codec.dump() << ":" << r.lifecycle_node.dump();
    item("run '" + r.name + "' codec", r.codec.dump());
    item("run '" + r.name + "' lifecycle", r.lifecycle_node.dump());
  }
  s << tiers;
  item("inexact kernel tiers", tiers.empty() ? "none" : tiers);
  const std::string text = s.str();
  std::uint64_t h = 1469598103934665603ull;  // FNV-1a 64
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
  f.hash = buf;
  return f;
}

// What differs between the items a folder's plan.fingerprint stored (`stored`) and this plan's: at most three, each
// as "NAME: VALUE (was: OLD)", "NAME: VALUE (new)" or "NAME: OLD (gone)"; "" when the folder stored none (written
// before 2026-12-04).
std::string plan_changes(const std::vector<std::string>& stored, const std::vector<std::string>& now) {
  if (stored.empty()) return "";
  auto name = [](const std::string& item) { return item.substr(0, item.find('\t')); };
  auto value = [](const std::string& item) {
    const std::size_t tab = item.find('\t');
    return tab == std::string::npos ? std::string() : item.substr(tab + 1);
  };
  std::vector<std::string> out;
  for (const auto& item : now) {
    if (std::find(stored.begin(), stored.end(), item) != stored.end()) continue;
    const auto old = std::find_if(stored.begin(), stored.end(), [&](const std::string& x) { return name(x) == name(item); });
    out.push_back(name(item) + ": " + value(item) + (old == stored.end() ? " (new)" : " (was: " + value(*old) + ")"));
  }
  for (const auto& item : stored)
    if (std::none_of(now.begin(), now.end(), [&](const std::string& x) { return name(x) == name(item); }))
      out.push_back(name(item) + ": " + value(item) + " (gone)");
  std::string text;
  for (std::size_t i = 0; i < out.size() && i < 3; ++i) text += (i ? "; " : "") + out[i];
  if (out.size() > 3) text += "; and " + std::to_string(out.size() - 3) + " more";
  return text;
}

std::string choose_dir(const ExperimentPlan& plan, const RunOptions& options) {
  if (!options.out_dir.empty()) return options.out_dir;
  const std::string base = plan.output_dir;
  if (options.resume) {
    // The latest existing folder of this experiment: base, base-2, base-3, ...
    std::string latest;
    if (fs::exists(base)) latest = base;
    for (int i = 2; fs::exists(base + "-" + std::to_string(i)); ++i) latest = base + "-" + std::to_string(i);
    if (latest.empty()) throw ConfigError("--resume: no results folder " + base + " to resume");
    return latest;
  }
  if (!fs::exists(base)) return base;
  for (int i = 2;; ++i) {
    const std::string d = base + "-" + std::to_string(i);
    if (!fs::exists(d)) return d;  // nothing is overwritten: a new folder per experiment run
  }
}

std::string trace_label(const std::string& path) { return fs::path(path).filename().string(); }

struct CellTask {
  std::size_t run_index = 0;
  std::size_t trace_index = 0;
  std::string file;  // cell file path
};

void add_metrics(ResultRow& row, const MetricValues& m, const std::vector<std::string>& wanted) {
  for (const auto& name : wanted) {
    auto it = m.find(name);
    if (it != m.end()) row.set(name, it->second);
  }
}

// The serial HDF5 library is not thread-safe: every call into a TraceReader (open, read, close) holds this lock.
std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

// Every quantizer maps finite input to finite output (scales and mins saturate to their dtype, uniform_format.h);
// a reconstruction holding inf or NaN is refused here, naming where, instead of reaching the tables as inf / nan.
void require_finite(const std::vector<float>& x, const BlockShape& shape, const char* side, const RunPlan& run,
                    const std::string& trace, std::int64_t layer) {
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isfinite(x[i])) continue;
    const auto j = static_cast<std::int64_t>(i);
    VIDKV_THROW(ValueError, "run '", run.name, "' on ", trace, ": layer ", layer, ", KV head ", j / shape.slab_elements(),
                ", token ", j / shape.channels % shape.tokens, ", channel ", j % shape.channels, ": the ", side,
                " reconstruction is ", x[i], " from finite input (the ", side,
                " quantizer cannot represent these values: try its scale_dtype: fp32)");
  }
}

bool wants_attention_metrics(const ExperimentPlan& plan) {
  for (const auto& m : plan.metrics)
    if (m.rfind("attn_", 0) == 0 || m.rfind("decode_attn_", 0) == 0) return true;
  return false;
}

// The run with its lifecycle resolved for one trace: without an explicit `prefill_tokens` (in the file, a preset or
// --set), the prefill is the trace's prompt (the tokens before the first generated one, modality 3) and every
// generated token is a decode step, the schedule `vidkv live` runs (algorithms.md section 5).
RunPlan run_for_trace(const RunPlan& run, const TraceTokens& tokens) {
  RunPlan out = run;
  if (!run.lifecycle_node.find("prefill_tokens"))
    out.lifecycle.prefill_tokens = static_cast<int>(trace_prompt_tokens(tokens));
  return out;
}

}  // namespace

void check_prefill_blocks(const ExperimentPlan& plan, const PluginRegistry& registry, const std::string& trace) {
  TraceInfo info;
  TraceTokens tokens;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    TraceReader reader(trace);
    info = reader.info();
    tokens = reader.tokens();
  }
  for (const RunPlan& planned : plan.runs) {
    const RunPlan run = run_for_trace(planned, tokens);
    if (run.lifecycle.prefill_tokens > info.tokens)  // replay_prefill takes the whole trace: say so, once per run
      VIDKV_WARN("run '", run.name, "' on ", trace, ": lifecycle.prefill_tokens = ", run.lifecycle.prefill_tokens,
                 " exceeds the trace's ", info.tokens, " tokens; the whole trace is the prefill (no decode steps)");
    const LifecycleParams::PrefillBlocks first = run.lifecycle.prefill_blocks(run.lifecycle.replay_prefill(info.tokens));
    // Where the prefill quantizes nothing on a side, the first block a decode step would (LayerCache::maybe_quantize:
    // R tokens; kivi values value_block), so that a codec that cannot take the trace's head_dim is refused here,
    // with the codec's line, and not at a decode step in the middle of the run.
    const std::int64_t r = run.lifecycle.residual;
    const std::int64_t decode_value = run.lifecycle.type == LifecycleType::kivi ? run.lifecycle.value_block : r;
    for (const auto& [side, n, decode_n] : {std::tuple<const char*, std::int64_t, std::int64_t>{"key", first.key, r},
                                            {"value", first.value, decode_value}}) {
      const std::int64_t block_tokens = n > 0 ? n : decode_n;
      const BlockShape shape{info.num_kv_heads, block_tokens, info.head_dim};
      const ConfigNode& block = run.codec.at(side);
      std::string why;
      if (!registry.make_quantizer(block)->supports(plan.backend, shape, &why))
        block.fail("run '" + run.name + "' on " + trace + ": the " + side + " quantizer (" + block.dump() +
                   ") refuses " + (n > 0 ? "the prefill's block" : "the first block a decode step quantizes") + " of " +
                   std::to_string(info.num_kv_heads) + " KV heads x " + std::to_string(block_tokens) + " tokens x " +
                   std::to_string(info.head_dim) + " channels: " + (why.empty() ? "no reason given" : why) +
                   "; nothing has been computed");
    }
  }
}

namespace {

// "paper G=32 R=128" ("kivi G=32 R=128 B=32" with a value_block other than 1): the lifecycle a run used (results
// column `lifecycle`).
std::string lifecycle_label(const LifecycleParams& p) {
  const char* type = p.type == LifecycleType::release ? "release" : p.type == LifecycleType::kivi ? "kivi" : "paper";
  std::string s = std::string(type) + " G=" + std::to_string(p.group) + " R=" + std::to_string(p.residual);
  if (p.value_block != 1) s += " B=" + std::to_string(p.value_block);
  return s;
}

// Whether replay must rotate keys and queries before the attention metrics: a `rope: pre` trace with recorded
// queries and attention metrics asked for. Without rotary parameters in /model such a trace is refused (attention
// metrics on position-free keys would be silently wrong).
bool needs_rotary(const ExperimentPlan& plan, const TraceInfo& info, const std::string& trace) {
  if (info.rope != "pre" || info.queries == 0 || !wants_attention_metrics(plan)) return false;
  if (!info.rotary)
    VIDKV_THROW(ConfigError, trace, ": /model rope is 'pre' (keys and queries stored before the rotary embedding) and "
                "the trace does not state its rotary parameters, so attention metrics cannot apply positions: add /model "
                "attributes rope_theta (and rope_scaling, rope_scaling_factor, rope_pairing where they differ from none, "
                "1, half; traces/SCHEMA.md), or leave the attention metrics (attn_*) out of `metrics:`");
  return true;
}

// One line of provenance per trace: what the attention metrics saw.
std::string rotary_note(const ExperimentPlan& plan, const TraceInfo& info) {
  if (info.rope != "pre") return "rope: post (keys and queries stored after the rotary embedding, used as stored)";
  if (info.queries == 0 || !wants_attention_metrics(plan)) return "rope: pre (no attention metrics computed)";
  return "rope: pre; attention metrics on keys and queries rotated from /tokens/position (" + info.rotary->str() + ")";
}

// One layer's rows and the numbers the per-trace aggregate needs.
struct LayerOutcome {
  std::vector<ResultRow> rows;  // per-head rows, then the layer row
  MetricValues layer_metrics;
  StoredBits key_bits, value_bits;  // the layer's packed layouts (core/bits_accounting.h)
  double seconds = 0;
};

// The bits columns (core/bits_accounting.h) of a row.
void set_bits(MetricValues& m, const BitsAccount& a) {
  m["key_nominal_bits"] = a.key_nominal_bits;
  m["value_nominal_bits"] = a.value_nominal_bits;
  m["key_effective_bits"] = a.key_effective_bits;
  m["value_effective_bits"] = a.value_effective_bits;
  m["nominal_bits"] = a.nominal_bits;
  m["effective_bits"] = a.effective_bits;
  m["compression_ratio"] = a.compression_ratio;
}

// Layers are replayed in order; layer l + 1 is read from the trace (on another thread, under the HDF5 lock) while
// layer l is replayed and measured. `head_pool`: when given (fewer cells than --jobs), the metrics of each layer run
// over its KV heads in parallel on it; layer_metrics_all combines the heads in a fixed order, so results do not
// depend on it. Only the metric groups the plan asks for are computed.
std::vector<ResultRow> compute_cell(const ExperimentPlan& plan, const RunPlan& planned_run, const std::string& trace_path,
                                    const PluginRegistry& registry, ProgressReporter* progress, ThreadPool* head_pool) {
  const std::string label = trace_label(trace_path);
  if (plan.backend == Device::cuda) use_process_cuda_device();  // this worker thread: the process's GPU (an MPI rank's)
  std::unique_ptr<TraceReader> reader;
  TraceInfo info;
  TraceTokens tokens;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    reader = std::make_unique<TraceReader>(trace_path);
    info = reader->info();
    tokens = reader->tokens();
  }
  const RunPlan run = run_for_trace(planned_run, tokens);
  const bool decode_metrics = wants_decode_step_metrics(plan.metrics);
  const bool rotate = needs_rotary(plan, info, label);
  KvCodec codec(registry.make_quantizer(run.codec.at("key")), registry.make_quantizer(run.codec.at("value")));
  const MetricSelection selection = MetricSelection::for_metrics(plan.metrics);
  // The recorded query states are read from the trace only when an attention metric or the codec (a token
  // protector such as semantic_attention) uses them: reconstruction-only runs never touch /layers/NNN/query.
  const LayerParts parts{selection.attention() || decode_metrics || codec.key().reads_recorded_queries() ||
                         codec.value().reads_recorded_queries()};
  // backend: cuda (cuda_replay.h): the layers in order on the GPU, the next one read while the current one runs;
  // rope: pre keys and queries rotated on the device as the cpu rotates them below.
  std::unique_ptr<CudaLayerReplay> cuda = make_cuda_layer_replay(
      plan, run, codec, info,
      [&reader, parts](int l) {
        std::lock_guard<std::mutex> lock(hdf5_mutex());
        return reader->read_layer(l, parts);
      },
      rotate ? tokens.position.data() : nullptr);
  auto base_row = [&](std::int64_t layer, std::int64_t head) {
    ResultRow r;
    r.set("experiment", plan.name);
    r.set("run", run.name);
    r.set("trace", label);
    r.set("layer", static_cast<double>(layer));
    r.set("kv_head", static_cast<double>(head));
    r.set("lifecycle", lifecycle_label(run.lifecycle));
    r.set("prefill_tokens", static_cast<double>(run.lifecycle.prefill_tokens));
    return r;
  };

  std::vector<LayerOutcome> outcomes(static_cast<std::size_t>(info.num_layers));
  auto replay = [&](std::int64_t layer, const LayerData& data, std::chrono::steady_clock::time_point t0) {
    const BlockShape shape{info.num_kv_heads, info.tokens, info.head_dim};
    TokenContext ctx;
    ctx.layer = static_cast<int>(layer);
    ctx.tokens = &tokens;
    ctx.seed = plan.seed;
    // The codec may use the recorded queries (token protectors such as semantic_attention); the metrics read them
    // only when an attention metric is asked for (layer_metrics_all).
    const LayerQueries* queries = data.queries && data.queries->count > 0 ? &*data.queries : nullptr;
    ctx.queries = queries;
    ReplayedLayer out;
    std::vector<MetricValues> all;  // heads 0..H-1, then the layer
    if (cuda) {
      // backend: cuda: the reconstruction stays on the device (out.key / out.value empty), so it cannot be scanned
      // here; instead its sums come back: the squared-error sum of a head is finite exactly when its reconstruction
      // is (finite input; float squares cannot overflow a double sum), and put_errors (metric_kernels.h) turns a
      // non-finite sum into NaN errors. A NaN key_mse / value_mse is therefore refused like require_finite does,
      // naming the layer and KV head (not the token and channel, which stay on the device). rope: pre traces are
      // rotated on the device like the cpu branch below (cuda_replay.h), sums included.
      all = cuda->replay(data, ctx, out);
      for (std::int64_t h = 0; h < shape.heads; ++h)
        for (const char* side : {"key", "value"}) {
          const MetricValues& m = all[static_cast<std::size_t>(h)];
          const auto it = m.find(std::string(side) + "_mse");
          if (it == m.end() || !std::isnan(it->second)) continue;
          VIDKV_THROW(ValueError, "run '", run.name, "' on ", label, ": layer ", layer, ", KV head ", h, ": the ", side,
                      " reconstruction on the GPU holds inf or NaN from finite input (the ", side,
                      " quantizer cannot represent these values: try its scale_dtype: fp32)");
        }
    } else {
      out = replay_layer(codec, run.lifecycle, data.key.data(), data.value.data(), shape, ctx, info.dtype);
      require_finite(out.key, shape, "key", run, label, layer);
      require_finite(out.value, shape, "value", run, label, layer);
      LayerTensors t{data.key.data(), data.value.data(), out.key.data(), out.value.data(), shape, queries};
      // rope: pre: attention metrics on keys (exact and reconstructed) and queries rotated to their positions
      // (core/rotary.h); reconstruction errors are unchanged by the rotation (orthogonal), up to rounding.
      std::vector<float> key_rot, key_hat_rot;
      LayerQueries queries_rot;
      if (rotate && queries) {
        key_rot = data.key;
        key_hat_rot = out.key;
        apply_rotary_rows(key_rot.data(), shape.heads, shape.tokens, shape.channels, tokens.position.data(), *info.rotary);
        apply_rotary_rows(key_hat_rot.data(), shape.heads, shape.tokens, shape.channels, tokens.position.data(),
                          *info.rotary);
        queries_rot = *queries;
        std::vector<std::int32_t> query_positions;
        for (const std::int32_t i : queries->token_index)
          query_positions.push_back(tokens.position[static_cast<std::size_t>(i)]);
        apply_rotary_rows(queries_rot.data.data(), queries->heads, queries->count, queries->dim, query_positions.data(),
                          *info.rotary);
        t = LayerTensors{key_rot.data(), data.value.data(), key_hat_rot.data(), out.value.data(), shape, &queries_rot};
      }
      all = layer_metrics_all(t, selection, head_pool);
    }
    // Decode-step metrics (decode_step_metrics.h): the layer only, on a second replay that snapshots the cache at
    // each decode-step query. A host replay on both backends (the codec's CPU tiers; with backend: cuda these are
    // the device's packed bytes wherever the tiers are exact, the FFT keys within their tolerance), so the headline
    // is there on the GPU too, computed at the CPU's speed.
    if (decode_metrics && queries) {
      DecodeRotary rot;
      if (rotate) rot = DecodeRotary{&*info.rotary, tokens.position.data()};
      for (const auto& [name, v] : decode_step_metrics(codec, run.lifecycle, data.key.data(), data.value.data(),
                                                       shape, ctx, info.dtype, *queries, rot))
        all.back()[name] = v;
    }
    LayerOutcome& o = outcomes[static_cast<std::size_t>(layer)];
    std::vector<ResultRow> head_rows;
    for (std::int64_t h = 0; h < shape.heads; ++h) {
      ResultRow r = base_row(layer, h);
      add_metrics(r, all[static_cast<std::size_t>(h)], plan.metrics);
      head_rows.push_back(std::move(r));
    }
    ResultRow lr = base_row(layer, -1);
    o.layer_metrics = std::move(all.back());
    add_metrics(lr, o.layer_metrics, plan.metrics);
    o.key_bits = StoredBits::of(out.key_layout);
    o.value_bits = StoredBits::of(out.value_layout);
    MetricValues bits;
    set_bits(bits, account_bits(o.key_bits, o.value_bits, info.dtype));
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    bits["seconds"] = secs;
    add_metrics(lr, bits, plan.metrics);
    for (auto& r : head_rows) {
      MetricValues hb = bits;
      hb.erase("seconds");
      add_metrics(r, hb, plan.metrics);
    }
    o.seconds = secs;
    for (auto& r : head_rows) o.rows.push_back(std::move(r));
    o.rows.push_back(std::move(lr));
    if (progress) progress->advance(1, run.name);
  };
  auto read = [&](std::int64_t layer) {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    return reader->read_layer(static_cast<int>(layer), parts);
  };
  // The read of the next layer runs while this one is replayed; a read error surfaces (with the reader's message)
  // when its layer's turn comes, after the layers before it are done. Every started read is waited for before
  // the reader is closed, also when a layer throws.
  std::future<LayerData> next;
  try {
    if (info.num_layers > 0 && !cuda) next = std::async(std::launch::async, read, std::int64_t{0});
    for (std::int64_t layer = 0; layer < info.num_layers; ++layer) {
      // `seconds` of a layer: from its turn (waiting for its read included) to its rows.
      const auto t0 = std::chrono::steady_clock::now();
      if (cuda) {  // the cuda replay reads ahead itself, into pinned buffers, on its copy stream
        replay(layer, cuda->take(static_cast<int>(layer)), t0);
        continue;
      }
      const LayerData data = next.get();
      if (layer + 1 < info.num_layers) next = std::async(std::launch::async, read, layer + 1);
      replay(layer, data, t0);
    }
  } catch (...) {
    if (next.valid()) next.wait();
    throw;
  }
  cuda.reset();
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    reader.reset();
  }

  std::vector<ResultRow> rows;
  std::map<std::string, double> sums;  // per-trace aggregate: means over layers
  std::map<std::string, int> counts;
  StoredBits key_bits, value_bits;
  double seconds = 0;
  for (auto& o : outcomes) {
    for (const auto& [name, value] : o.layer_metrics) {
      sums[name] += value;
      counts[name] += 1;
    }
    key_bits += o.key_bits;
    value_bits += o.value_bits;
    seconds += o.seconds;
    for (auto& r : o.rows) rows.push_back(std::move(r));
  }
  // Per-trace aggregate: error metrics are means over layers; bits are totals of stored bytes over elements.
  ResultRow agg = base_row(-1, -1);
  MetricValues am;
  for (const auto& [name, sum] : sums) am[name] = sum / counts[name];
  if (key_bits.elements > 0 && value_bits.elements > 0) set_bits(am, account_bits(key_bits, value_bits, info.dtype));
  am["seconds"] = seconds;
  // The headline (decode_step_metrics.h): decode-step attention-output errors pooled over layers by depth.
  std::vector<double> decode_errors;
  for (const auto& o : outcomes)
    if (const auto it = o.layer_metrics.find("decode_attn_out_rel_error"); it != o.layer_metrics.end())
      decode_errors.push_back(it->second);
  if (!decode_errors.empty() && decode_errors.size() == outcomes.size())
    am[kHeadlineMetric] = depth_weighted_mean(decode_errors);
  add_metrics(agg, am, plan.metrics);
  rows.push_back(std::move(agg));
  // Swept parameters as columns.
  for (auto& r : rows)
    for (const auto& [path, value] : run.params) r.set("param." + path, value);
  return rows;
}

// DIR/cells.json: what `vidkv merge` needs to assemble the folder without the plan or the traces -- the cell files
// in plan order and the columns of the result files -- and each cell's run, trace and estimated cost.
void write_cells_manifest(const fs::path& dir, const ExperimentPlan& plan, const std::string& fingerprint,
                          const std::vector<CellTask>& tasks, const std::vector<double>& costs) {
  nlohmann::ordered_json m;
  m["format"] = "vidkv.cells v1";
  m["experiment"] = plan.name;
  m["plan_fingerprint"] = fingerprint;
  std::vector<std::string> leading = kKeyColumns;
  for (const auto& name : plan.metrics) leading.push_back(name);
  m["leading_columns"] = leading;
  m["summary_columns"] = summary_columns(plan);
  m["cells"] = nlohmann::ordered_json::array();
  for (std::size_t i = 0; i < tasks.size(); ++i)
    m["cells"].push_back({{"file", fs::path(tasks[i].file).filename().string()},
                          {"run", plan.runs[tasks[i].run_index].name},
                          {"trace", plan.traces[tasks[i].trace_index]},
                          {"cost", costs[i]}});
  write_file_atomic((dir / "cells.json").string(), m.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// DIR/shards/shard-I-of-N.json: what one shard (an MPI rank, a job-array task) did, for the record.
void write_shard_record(const fs::path& dir, const RunOptions& options, std::size_t owned, const ExperimentOutcome& outcome) {
  nlohmann::ordered_json r;
  r["shard"] = options.shard.str();
  r["host"] = host_name();
  r["pid"] = static_cast<long long>(::getpid());
  r["command_line"] = options.command_line;
  r["cells_owned"] = owned;
  r["cells_computed"] = outcome.cells_computed;
  r["cells_resumed"] = outcome.cells_resumed;
  char name[64];
  std::snprintf(name, sizeof name, "shard-%04d-of-%04d.json", options.shard.index, options.shard.count);
  fs::create_directories(dir / "shards");
  write_file_atomic((dir / "shards" / name).string(), r.dump(2) + "\n");
}

// Reads the cell files in the order given and writes the three result files (the only writer of them).
void assemble_results(const std::string& dir, const std::vector<std::string>& files, const std::vector<std::string>& leading,
                      const std::vector<std::string>& summary_cols, ExperimentOutcome& outcome) {
  for (const auto& file : files) {
    auto rows = read_cell_file(file);
    const std::string missing = incomplete_cell(rows);
    if (!missing.empty())
      VIDKV_THROW(IoError, file, ": not a whole result cell (", missing, "); it was damaged after it was written. ",
                  "Delete it and run the experiment again with --resume (the shard that owns it, for a sharded run): "
                  "that cell is computed again, the others are kept; the result files were not written");
    for (auto& r : rows) {
      const ResultValue* layer = r.get("layer");
      const ResultValue* head = r.get("kv_head");
      if (layer && head && std::get<double>(*layer) == -1 && std::get<double>(*head) == -1) outcome.summary.push_back(r);
      outcome.rows.push_back(std::move(r));
    }
  }
  write_result_files(dir, outcome.rows, result_columns(outcome.rows, leading), outcome.summary, summary_cols);
}

}  // namespace

std::vector<std::string> summary_columns(const ExperimentPlan& plan) {
  std::vector<std::string> cols = {"run", "lifecycle"};
  if (plan.traces.size() > 1) cols.push_back("trace");
  // The headline metric first (the trace metric that best ranks settings like the live model, decode_step_metrics.h).
  const bool headline = std::find(plan.metrics.begin(), plan.metrics.end(), kHeadlineMetric) != plan.metrics.end();
  if (headline) cols.push_back(kHeadlineMetric);
  for (const auto& m : plan.metrics)
    if (!headline || m != kHeadlineMetric) cols.push_back(m);
  return cols;
}

bool plan_reads_recorded_queries(const ExperimentPlan& plan, const PluginRegistry& registry) {
  if (MetricSelection::for_metrics(plan.metrics).attention() || wants_decode_step_metrics(plan.metrics)) return true;
  for (const RunPlan& run : plan.runs)
    for (const char* side : {"key", "value"})
      if (registry.make_quantizer(run.codec.at(side))->reads_recorded_queries()) return true;
  return false;
}

ExperimentOutcome run_experiment(const ExperimentPlan& plan, const RunOptions& options, const PluginRegistry& registry) {
  keep_freed_layer_buffers();
  ExperimentOutcome outcome;
  outcome.dir = choose_dir(plan, options);
  const fs::path dir = outcome.dir;
  const fs::path cells_dir = dir / "cells";
  // Kernel tiers at the first trace's KV shape (provenance; inexact ones enter the fingerprint).
  std::vector<RunTiers> tiers;
  BlockShape tier_shape;
  if (!plan.traces.empty()) {
    const TraceInfo first = TraceReader(plan.traces.front()).info();
    tier_shape = BlockShape{first.num_kv_heads, first.tokens, first.head_dim};
    tiers = run_kernel_tiers(plan, registry, tier_shape);
  }
  std::string tier_print = inexact_tier_fingerprint(plan, tiers);
  if (plan.backend == Device::cuda && wants_decode_step_metrics(plan.metrics) && !plan.traces.empty()) {
    // With backend: cuda the decode-step metrics come from a host replay through the CPU tiers (since 2026-12-03;
    // before, their cells were empty): a folder of before does not resume into this one, and an inexact CPU tier
    // (the FFT keys') enters as on the cpu.
    tier_print += "|decode_step_metrics_on_host" +
                  inexact_tier_fingerprint(plan, run_kernel_tiers(plan, registry, tier_shape, Device::cpu));
  }
  const PlanFingerprint print = plan_fingerprint(plan, tier_print);
  const std::string& fingerprint = print.hash;
  const fs::path fp_file = dir / "plan.fingerprint";
  if (fs::exists(fp_file)) {
    std::ifstream in(fp_file);
    std::string existing, line;
    std::getline(in, existing);
    std::vector<std::string> stored;
    while (std::getline(in, line))
      if (!line.empty()) stored.push_back(line);
    if (existing != fingerprint) {
      const std::string changes = plan_changes(stored, print.items);
      throw ConfigError(outcome.dir + ": holds results of a different plan (" +
                        (changes.empty() ? std::string("config, traces or --set changed") : "changed: " + changes) + "); " +
                        (options.out_dir.empty() ? "run without --resume to start a new folder"
                                                 : "give this plan a new --out folder (or delete " + outcome.dir +
                                                       " to start it afresh there)"));
    }
  } else if (options.resume && fs::exists(dir / "results.csv") && !fs::exists(cells_dir)) {
    throw ConfigError(outcome.dir + ": not a resumable VidKV results folder");
  }
  fs::create_directories(cells_dir);
  {
    std::string text = fingerprint + "\n";
    for (const auto& item : print.items) text += item + "\n";
    write_file_atomic(fp_file.string(), text);
  }
  write_file_atomic((dir / "config.yaml").string(), "# resolved experiment (defaults <- preset <- file <- --set)\n" +
                                                        plan.resolved.dump_yaml());
  {
    nlohmann::ordered_json prov;
    prov["experiment"] = plan.name;
    prov["source_file"] = plan.source_file;
    prov["git_revision"] = git_revision();
    prov["build"] = kBuildInfo;
    prov["backend"] = device_name(plan.backend);
    prov["cpu_implementation"] = cpu_implementation_name(registry.implementation());
    if (plan.backend == Device::cuda) prov["metrics_device"] = kCudaMetricsDevice;
    prov["tier_shape"] = tier_shape.str();
    prov["seed"] = plan.seed;
    prov["command_line"] = options.command_line;
    prov["overrides"] = options.overrides;
    prov["plan_fingerprint"] = fingerprint;
    prov["runs"] = nlohmann::ordered_json::array();
    for (std::size_t i = 0; i < plan.runs.size(); ++i) {
      const auto& r = plan.runs[i];
      nlohmann::ordered_json run{{"name", r.name}, {"codec", r.codec.dump()}, {"lifecycle", r.lifecycle_node.dump()}};
      if (i < tiers.size()) run["tiers"] = nlohmann::ordered_json::parse(tiers_json(tiers[i]));
      prov["runs"].push_back(std::move(run));
    }
    prov["traces"] = plan.traces;
    prov["rotary"] = nlohmann::ordered_json::object();
    for (const auto& t : plan.traces) {
      const TraceInfo info = TraceReader(t).info();
      // needs_rotary throws here, before anything is computed, for a rope: pre trace without rotary parameters;
      // both backends rotate the others (backend: cuda on the device, cuda_replay.h).
      needs_rotary(plan, info, t);
      prov["rotary"][t] = rotary_note(plan, info);
    }
    write_file_atomic((dir / "provenance.json").string(),
                      prov.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  }

  std::vector<CellTask> tasks;
  for (std::size_t r = 0; r < plan.runs.size(); ++r)
    for (std::size_t t = 0; t < plan.traces.size(); ++t) {
      char name[64];
      std::snprintf(name, sizeof name, "run%04zu-trace%04zu.tsv", r, t);
      tasks.push_back({r, t, (cells_dir / name).string()});
    }

  // Layers per trace (for the progress bar) and the sizes the cells' costs scale with, from the trace headers only.
  std::vector<std::int64_t> layers(plan.traces.size(), 0);
  std::vector<TraceSize> sizes(plan.traces.size());
  std::int64_t total_units = 0;
  for (std::size_t t = 0; t < plan.traces.size(); ++t) {
    const TraceInfo info = TraceReader(plan.traces[t]).info();
    layers[t] = info.num_layers;
    sizes[t] = TraceSize{info.num_layers, info.num_kv_heads, info.tokens, info.head_dim};
  }
  const std::vector<double> costs = cell_costs(plan, sizes);
  write_cells_manifest(dir, plan, fingerprint, tasks, costs);
  // This process's cells: all of them, or its shard's (cell_partition.h).
  const std::vector<int> owner = partition_cells(costs, options.shard.count);
  std::vector<std::size_t> todo;
  std::size_t owned = 0;
  // A shard never writes results.csv (vidkv merge does): a folder that has one holds a finished experiment.
  if (!options.shard.whole() && !options.resume && fs::exists(fs::path(outcome.dir) / "results.csv"))
    VIDKV_THROW(ConfigError, outcome.dir, ": shard ", options.shard.str(), ": this folder holds a finished experiment's ",
                "results (results.csv); give the shards a new --out");
  for (std::size_t i = 0; i < tasks.size(); ++i) {
    if (owner[i] != options.shard.index) continue;
    ++owned;
    if (fs::exists(tasks[i].file)) {
      if (!options.shard.whole() && !options.resume)
        VIDKV_THROW(ConfigError, outcome.dir, ": shard ", options.shard.str(), " finds its cell ", tasks[i].file,
                    " already stored (an earlier run of this shard); add --resume to continue it, or give a new --out");
      // A cell file is written whole (write_file_atomic), so one that does not read back as a whole cell was damaged
      // since: it is computed again (and replaced), not taken into the results.
      std::string damage;
      try {
        damage = incomplete_cell(read_cell_file(tasks[i].file));
      } catch (const IoError& e) {
        damage = e.what();
      }
      if (damage.empty()) {
        ++outcome.cells_resumed;
        continue;
      }
      VIDKV_WARN("resuming ", outcome.dir, ": ", tasks[i].file, " is not a whole result cell (", damage,
                 "); computing it again");
    }
    todo.push_back(i);
    total_units += layers[tasks[i].trace_index];
  }
  if (outcome.cells_resumed)
    VIDKV_INFO("resuming ", outcome.dir, ": ", outcome.cells_resumed, " of ", owned, " cells",
               options.shard.whole() ? "" : " of shard " + options.shard.str(), " already done");

  // Ctrl-C or SIGTERM while cells are computed: say where the finished ones are and how to continue.
  const InterruptNote interrupt_note("\nvidkv run: interrupted; the " + std::string(options.shard.whole() ? "" : "shard's ") +
                                     "cells finished so far are kept in " + (dir / "cells").string() +
                                     ": run the command again with --resume to compute the rest\n");
  std::unique_ptr<ProgressReporter> progress;
  if (options.progress && total_units > 0)
    progress = std::make_unique<ProgressReporter>(
        plan.name + (options.shard.whole() ? "" : " shard " + options.shard.str()) + " (" + std::to_string(todo.size()) +
            " cells)",
        total_units);
  std::mutex count_mutex;
  // --jobs workers: over cells when there are at least as many cells as jobs, otherwise over the KV heads of each
  // layer's metrics, cell by cell (one pool; never both, so no task waits on a nested parallel_for).
  std::unique_ptr<ThreadPool> pool;
  if (options.jobs > 1) pool = std::make_unique<ThreadPool>(options.jobs - 1);  // the caller is the jobs-th worker
  const bool over_cells = pool && static_cast<std::int64_t>(todo.size()) >= options.jobs;
  ThreadPool* head_pool = pool && !over_cells ? pool.get() : nullptr;
  auto run_cell = [&](std::int64_t k) {
    const CellTask& task = tasks[todo[static_cast<std::size_t>(k)]];
    const RunPlan& run = plan.runs[task.run_index];
    const std::string& trace = plan.traces[task.trace_index];
    std::vector<ResultRow> rows;
    try {
      rows = compute_cell(plan, run, trace, registry, progress.get(), head_pool);
    } catch (const Error& e) {
      throw Error(std::string("run '") + run.name + "' on " + trace + ": " + e.what());
    }
    write_cell_file(task.file, rows);
    std::lock_guard<std::mutex> lock(count_mutex);
    ++outcome.cells_computed;
  };
  try {
    if (over_cells) {
      pool->parallel_for(static_cast<std::int64_t>(todo.size()), run_cell);
    } else {
      for (std::size_t k = 0; k < todo.size(); ++k) run_cell(static_cast<std::int64_t>(k));
    }
  } catch (const Error& e) {
    // Nothing computed is lost: finished cells stay in cells/, and --resume continues from them.
    throw Error(std::string(e.what()) + " [" + std::to_string(outcome.cells_computed + outcome.cells_resumed) + " of " +
                std::to_string(owned) + " cells" + (options.shard.whole() ? "" : " of shard " + options.shard.str()) +
                " are kept in " + (dir / "cells").string() +
                "; remove the cause named above (a bad input, a full disk), then run again with --resume; a cause in "
                "the experiment's own settings (a parameter the plugin refuses) makes a new plan when fixed, which "
                "--resume refuses in this folder: run that into a new --out folder]");
  }
  if (progress) progress->finish();

  if (!options.shard.whole()) write_shard_record(dir, options, owned, outcome);
  if (!options.assemble) return outcome;
  std::vector<std::string> files;
  for (const auto& task : tasks) files.push_back(task.file);
  std::vector<std::string> leading = kKeyColumns;
  for (const auto& m : plan.metrics) leading.push_back(m);
  assemble_results(dir.string(), files, leading, summary_columns(plan), outcome);
  return outcome;
}

ExperimentOutcome merge_results(const std::string& dir_text) {
  const fs::path dir = dir_text;
  const fs::path manifest = dir / "cells.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) VIDKV_THROW(ConfigError, dir_text, ": no such results folder");
  if (!fs::exists(manifest, ec))
    VIDKV_THROW(ConfigError, dir_text, ": not a results folder of vidkv run (it has no cells.json; folders written "
                "before vidkv merge existed are assembled by vidkv run --resume)");
  nlohmann::json m;
  try {
    std::ifstream in(manifest);
    m = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    VIDKV_THROW(IoError, manifest.string(), ": not valid JSON: ", e.what());
  }
  ExperimentOutcome outcome;
  outcome.dir = dir_text;
  std::vector<std::string> files, leading, summary_cols, missing;
  std::vector<double> costs;
  std::vector<std::size_t> missing_cells;
  try {
    if (m.at("format").get<std::string>() != "vidkv.cells v1")
      VIDKV_THROW(IoError, manifest.string(), ": format '", m.at("format").get<std::string>(), "', expected vidkv.cells v1");
    leading = m.at("leading_columns").get<std::vector<std::string>>();
    summary_cols = m.at("summary_columns").get<std::vector<std::string>>();
    for (const auto& c : m.at("cells")) {
      const std::string name = c.at("file").get<std::string>();
      if (name.empty() || name.find('/') != std::string::npos || name.front() == '.')
        VIDKV_THROW(IoError, manifest.string(), ": cell file name '", name, "' is not a plain file name");
      const fs::path file = dir / "cells" / name;
      files.push_back(file.string());
      costs.push_back(c.at("cost").get<double>());
      if (!fs::exists(file, ec)) {
        missing_cells.push_back(files.size() - 1);
        missing.push_back(name + " (run '" + c.at("run").get<std::string>() + "' on " + c.at("trace").get<std::string>());
      }
    }
  } catch (const nlohmann::json::exception& e) {
    VIDKV_THROW(IoError, manifest.string(), ": ", e.what());
  }
  if (!missing.empty()) {
    // The shard that owns each missing cell, when the shard records of the folder agree on one N.
    std::set<int> counts;
    for (const auto& e : fs::directory_iterator(dir / "shards", ec)) {
      int i = 0, n = 0;
      if (std::sscanf(e.path().filename().c_str(), "shard-%d-of-%d.", &i, &n) == 2 && n > 0) counts.insert(n);
    }
    const std::vector<int> owner = counts.size() == 1 ? partition_cells(costs, *counts.begin()) : std::vector<int>{};
    for (std::size_t k = 0; k < missing.size(); ++k)
      missing[k] += owner.empty() ? ")"
                                  : ", shard " + std::to_string(owner[missing_cells[k]]) + "/" +
                                        std::to_string(*counts.begin()) + ")";
    std::string list;
    for (std::size_t i = 0; i < missing.size() && i < 8; ++i) list += (i ? ", " : "") + missing[i];
    if (missing.size() > 8) list += ", ...";
    VIDKV_THROW(IoError, dir_text, ": ", missing.size(), " of ", files.size(), " cells are not stored yet: ", list,
                ". A shard has not finished: run the shards that own them again with --resume (shards/ records "
                "which shards ran), then vidkv merge again; nothing was written");
  }
  outcome.cells_resumed = static_cast<int>(files.size());
  assemble_results(dir_text, files, leading, summary_cols, outcome);
  return outcome;
}

}  // namespace vidkv
