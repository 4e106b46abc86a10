#include "vidkv/experiments/src/attention_bench.h"

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "vidkv/attention/decode_attention.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/cuda_bench.h"
#include "vidkv/experiments/src/presets.h"

#ifdef VIDKV_WITH_CUDA
#include <cuda_runtime.h>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/experiments/src/cuda_replay.h"
#endif

namespace vidkv {

#ifndef VIDKV_WITH_CUDA

AttentionBenchResult run_attention_bench(const AttentionBenchOptions&) {
  VIDKV_THROW(NotSupportedError, "vidkv bench --attention: this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
}

#else

namespace {

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "bench: cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s); }
};

double median_ms(cudaStream_t s, int warmup, int repeats, const DecodeAttention& attn, const TensorView& q, const TensorView& out) {
  cudaEvent_t start = nullptr, stop = nullptr;
  cuda_check(cudaEventCreate(&start), "bench: cudaEventCreate");
  cuda_check(cudaEventCreate(&stop), "bench: cudaEventCreate");
  for (int i = 0; i < warmup; ++i) attn.run(q, out);
  synchronize(s);
  std::vector<double> t;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    cuda_check(cudaEventRecord(start, s), "bench: cudaEventRecord");
    attn.run(q, out);
    cuda_check(cudaEventRecord(stop, s), "bench: cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop), "bench: cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, start, stop), "bench: cudaEventElapsedTime");
    t.push_back(ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// [heads, T, D] synthetic keys (4 outlier channels per head, x8) and values, N(0, 1).
void synthetic(std::int64_t heads, std::int64_t tokens, std::int64_t d, std::vector<float>& k, std::vector<float>& v) {
  std::mt19937_64 rng(42);
  std::normal_distribution<float> n(0.0f, 1.0f);
  k.resize(static_cast<std::size_t>(heads * tokens * d));
  v.resize(k.size());
  for (std::size_t i = 0; i < k.size(); ++i) {
    const std::int64_t c = static_cast<std::int64_t>(i) % d;
    k[i] = n(rng) * ((c % 32 == 5) ? 8.0f : 1.0f);
    v[i] = n(rng);
  }
}

}  // namespace

AttentionBenchResult run_attention_bench(const AttentionBenchOptions& o) {
  const std::string unavailable = cuda_backend_unavailable();
  VIDKV_REQUIRE(unavailable.empty(), NotSupportedError, "vidkv bench --attention: ", unavailable);
  AttentionBenchResult result;
  result.device = cuda_device_description(0);
  result.kv_heads = o.kv_heads;
  result.query_heads_per_kv = o.query_heads_per_kv;
  result.head_dim = o.head_dim;
  result.repeats = o.repeats;
  result.query_tokens = o.query_tokens;
  result.copy_gbps = device_copy_bandwidth_gbps(std::size_t{1} << 30, o.repeats);
  Stream stream;
  const Execution ex = Execution::cuda(stream.s);
  const std::int64_t qh = static_cast<std::int64_t>(o.kv_heads) * o.query_heads_per_kv, d = o.head_dim;
  for (const std::int64_t batch : o.batches) {
    const PluginRegistry registry = builtin_plugin_registry();  // the presets' plugins are all built in
    for (const std::int64_t tokens : o.tokens) {
      std::vector<float> k, v;
      synthetic(o.kv_heads, tokens, d, k, v);
      // Queries, fp16.
      const std::int64_t nq = o.query_tokens;
      std::vector<std::uint16_t> qhost(static_cast<std::size_t>(batch * nq * qh * d));
      std::mt19937_64 rng(7);
      std::normal_distribution<float> n(0.0f, 1.0f);
      for (auto& x : qhost) x = float_to_half_bits(n(rng));
      DeviceBuffer dq(qhost.size() * 2, stream.s), dout(qhost.size() * 2, stream.s);
      copy_to_device(dq.data(), qhost.data(), qhost.size() * 2, stream.s);
      const std::vector<std::int64_t> qshape = nq == 1 ? std::vector<std::int64_t>{batch, qh, d} : std::vector<std::int64_t>{batch, nq, qh, d};
      const TensorView qv{dq.data(), DType::f16, Device::cuda, qshape};
      const TensorView ov{dout.data(), DType::f16, Device::cuda, qshape};
      for (const std::string& preset : o.presets) {
        AttentionBenchRow row;
        row.preset = preset;
        row.batch = batch;
        row.tokens = tokens;
        const ConfigNode doc = load_preset(preset, ConfigNode::scalar(preset));
        const KvCodec codec(registry.make_quantizer(doc.at("codec").at("key")),
                            registry.make_quantizer(doc.at("codec").at("value")));
        const LifecycleParams lc = parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle");
        std::string why;
        if (!decode_attention_supports(codec.key(), d, KvSide::key, &why) || !decode_attention_supports(codec.value(), d, KvSide::value, &why)) {
          row.skipped = why;
          result.rows.push_back(row);
          continue;
        }
        std::vector<std::unique_ptr<LayerCache>> caches;
        std::vector<const LayerCache*> ptrs;
        for (std::int64_t b = 0; b < batch; ++b) {
          caches.push_back(std::make_unique<LayerCache>(codec, lc, o.kv_heads, d, TokenContext{}, DType::f16, ex));
          caches.back()->append(k.data(), v.data(), tokens);
          ptrs.push_back(caches.back().get());
        }
        // Above 8 query heads per KV head, tables with a row per query head group: one run reads the cache once per
        // group (DecodeAttention::cache_bytes counts each read).
        const std::int64_t groups = DecodeAttention::table_head_groups(qv, o.kv_heads, batch * nq);
        const DecodeAttention attn(ptrs, ex, 0, DecodeAttention::FastKernel::tensor_cores, true, nq, groups);
        row.splits = attn.splits();
        row.tensor_cores = attn.tensor_cores();
        row.fragment = attn.fragment();
        row.general_only = attn.fast_tiles() == 0;
        row.ms = median_ms(stream.s, o.warmup, o.repeats, attn, qv, ov);
        if (row.tensor_cores || row.fragment) {
          const DecodeAttention cuda_cores(ptrs, ex, 0, DecodeAttention::FastKernel::cuda_cores, true, nq, groups);
          row.cuda_core_ms = median_ms(stream.s, o.warmup, o.repeats, cuda_cores, qv, ov);
        }
        // cache MB: the bytes stored (once per query token); GB/s: every read of them, one per query head group
        // (in one run or in one run per group).
        row.cache_bytes = static_cast<double>(attn.cache_bytes()) / static_cast<double>(groups);
        const auto reads = static_cast<double>(DecodeAttention::query_head_groups(o.query_heads_per_kv).size());
        row.gbps = (row.cache_bytes * reads + static_cast<double>(qhost.size() * 2)) / (row.ms * 1e-3) / 1e9;
        result.rows.push_back(row);
      }
    }
  }
  return result;
}

#endif

std::vector<TorchSdpaTime> parse_torch_sdpa_json(const std::string& text, std::string* why) {
  std::vector<TorchSdpaTime> out;
  const std::size_t line = text.rfind("\n{");
  const std::string last = line == std::string::npos ? text : text.substr(line + 1);
  const nlohmann::json j = nlohmann::json::parse(last, nullptr, /*allow_exceptions=*/false);
  auto fail = [&](const std::string& reason) {
    if (why) *why = reason;
    return std::vector<TorchSdpaTime>{};
  };
  if (text.empty()) return fail("no output");
  if (j.is_discarded() || !j.is_object()) return fail("not a JSON object: " + last.substr(0, 200));
  if (j.contains("error")) return fail(j["error"].is_string() ? j["error"].get<std::string>() : j["error"].dump());
  if (!j.contains("torch_ms") || !j["torch_ms"].is_array()) return fail("no \"torch_ms\" array");
  const nlohmann::json& ms = j["torch_ms"];
  const nlohmann::json variants = j.contains("torch_variant") && j["torch_variant"].is_array() ? j["torch_variant"]
                                                                                             : nlohmann::json::array();
  for (std::size_t i = 0; i < ms.size(); ++i) {
    if (!ms[i].is_number()) return fail("\"torch_ms\"[" + std::to_string(i) + "] is not a number: " + ms[i].dump());
    TorchSdpaTime t;
    t.ms = ms[i].get<double>();
    if (i < variants.size() && variants[i].is_string()) t.variant = variants[i].get<std::string>();
    out.push_back(t);
  }
  return out;
}

std::string attention_bench_markdown(const AttentionBenchResult& r, const AttentionBenchOptions& o,
                                     const std::vector<TorchSdpaTime>& torch) {
  std::ostringstream out;
  out << "Decode attention on " << r.device << ": " << r.kv_heads << " KV heads x " << r.query_heads_per_kv
      << " query heads, head_dim " << r.head_dim << ", median of " << r.repeats << "; copy bandwidth "
      << static_cast<long long>(r.copy_gbps) << " GB/s (device to device, same run)\n";
  if (r.query_tokens > 1)
    out << r.query_tokens << " query tokens per sequence, causal (ours: the cache read once per query token; SDPA: "
        << "once, with a lower-right causal mask)\n";
  out << "\n";
  out << "| preset | batch | tokens | ours ms | splits | cache MB | fp16 MB | fp16 / cache bytes | GB/s | of copy | fp16 SDPA ms | "
         "speed-up | fast tiles on | cuda-core ms |\n";
  out << "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n";
  for (const AttentionBenchRow& row : r.rows) {
    if (!row.skipped.empty()) {
      out << "| " << row.preset << " | " << row.batch << " | " << row.tokens << " | skipped: " << row.skipped << " |||||||||||\n";
      continue;
    }
    TorchSdpaTime t;
    std::size_t i = 0;
    for (std::size_t bi = 0; bi < o.batches.size(); ++bi)
      for (std::size_t ti = 0; ti < o.tokens.size(); ++ti, ++i)
        if (o.batches[bi] == row.batch && o.tokens[ti] == row.tokens && i < torch.size()) t = torch[i];
    const double tms = t.ms;
    const double fp16_mb = 2.0 * static_cast<double>(row.batch * r.kv_heads * row.tokens * r.head_dim) * 2.0 / 1e6;
    char buf[512];
    std::snprintf(buf, sizeof buf, "| %s | %lld | %lld | %.4f | %d | %.1f | %.1f | %.2fx | %.0f | %.1f%% | ", row.preset.c_str(),
                  static_cast<long long>(row.batch), static_cast<long long>(row.tokens), row.ms, row.splits,
                  row.cache_bytes / 1e6, fp16_mb, fp16_mb * 1e6 / row.cache_bytes, row.gbps, 100.0 * row.gbps / r.copy_gbps);
    out << buf;
    if (tms > 0) {
      std::snprintf(buf, sizeof buf, "%.4f", tms);
      out << buf << (t.variant.empty() ? "" : " (" + t.variant + ")");
      std::snprintf(buf, sizeof buf, " | %.2fx | ", tms / row.ms);
      out << buf;
    } else {
      out << "not measured | | ";
    }
    if (row.general_only) {
      out << "none (general kernel only) | |\n";
    } else if (row.tensor_cores || row.fragment) {
      std::snprintf(buf, sizeof buf, "%s | %.4f |\n", row.fragment ? "fragment kernel" : "tensor cores", row.cuda_core_ms);
      out << buf;
    } else {
      out << "cuda cores | |\n";
    }
  }
  out << "\nGB/s: the cache's bytes (packed codes and metadata, the residual window at its storage dtype; read once per "
         "group of at most 8 query heads per KV head) and the queries per second of `ours ms`; of copy: that rate over "
         "the copy bandwidth above, which counts each byte "
         "copied once although a copy reads and writes it, so a kernel that only reads can pass 100% (its ceiling is "
         "the memory's read rate, up to about twice the copy figure); fp16 MB: the K/V that SDPA reads from an fp16 "
         "cache; speed-up: fp16 SDPA ms / ours ms; cuda-core ms: the same call with the fast tiles on the CUDA-core "
         "kernel instead, same run.\n";
  return out.str();
}

}  // namespace vidkv
