// `vidkv bench --backend cuda` (cuda_bench.h).
#include "vidkv/experiments/src/cuda_bench.h"

#include <algorithm>
#include <cstdio>
#include <sstream>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/cuda_replay.h"

#ifdef VIDKV_WITH_CUDA
#include <cuda_runtime.h>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/experiments/src/cpu_bench.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/traces/synthetic_trace.h"
#endif

namespace vidkv {

#ifndef VIDKV_WITH_CUDA

CudaBenchResult run_cuda_bench(const CudaBenchOptions&) {
  VIDKV_THROW(NotSupportedError, "vidkv bench --backend cuda: ", cuda_backend_unavailable(), "; use --backend cpu");
}
double device_copy_bandwidth_gbps(std::size_t, int) {
  VIDKV_THROW(NotSupportedError, "vidkv bench --backend cuda: ", cuda_backend_unavailable(), "; use --backend cpu");
}

#else

namespace {

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "bench: cudaStreamCreate"); }
  ~Stream() { cudaStreamDestroy(s); }
};

struct EventPair {
  cudaEvent_t start = nullptr, stop = nullptr;
  EventPair() {
    cuda_check(cudaEventCreate(&start), "bench: cudaEventCreate");
    cuda_check(cudaEventCreate(&stop), "bench: cudaEventCreate");
  }
  ~EventPair() {
    cudaEventDestroy(start);
    cudaEventDestroy(stop);
  }
};

// Seconds of one call of `pass` (work enqueued on `s`), timed with CUDA events: `warmup` untimed calls, then the
// median of `repeats`.
template <class Pass>
double median_seconds(cudaStream_t s, int warmup, int repeats, const Pass& pass) {
  EventPair ev;
  for (int i = 0; i < warmup; ++i) pass();
  synchronize(s);
  std::vector<double> t;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    cuda_check(cudaEventRecord(ev.start, s), "bench: cudaEventRecord");
    pass();
    cuda_check(cudaEventRecord(ev.stop, s), "bench: cudaEventRecord");
    cuda_check(cudaEventSynchronize(ev.stop), "bench: cudaEventSynchronize");
    float ms = 0;
    cuda_check(cudaEventElapsedTime(&ms, ev.start, ev.stop), "bench: cudaEventElapsedTime");
    t.push_back(ms * 1e-3);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

double device_copy_bandwidth_gbps(std::size_t bytes, int repeats) {
  Stream s;
  DeviceBuffer src(bytes, s.s), dst(bytes, s.s);
  fill_device(src.data(), 1, bytes, s.s);
  fill_device(dst.data(), 2, bytes, s.s);
  const double t = median_seconds(s.s, 2, repeats, [&] { copy_device_to_device(dst.data(), src.data(), bytes, s.s); });
  return static_cast<double>(bytes) / t / 1e9;
}

CudaBenchResult run_cuda_bench(const CudaBenchOptions& o) {
  const std::string unavailable = cuda_backend_unavailable();
  VIDKV_REQUIRE(unavailable.empty(), NotSupportedError, "vidkv bench --backend cuda: ", unavailable);
  VIDKV_REQUIRE(o.layers > 0 && o.heads > 0 && o.head_dim > 0 && o.distinct_layers > 0, ConfigError,
                "vidkv bench --backend cuda: layers, heads, head_dim and distinct layers must be positive");
  CudaBenchResult result;
  result.device = cuda_device_description(0);
  result.layers = o.layers;
  result.heads = o.heads;
  result.head_dim = o.head_dim;
  result.repeats = o.repeats;
  result.copy_gbps = device_copy_bandwidth_gbps(std::size_t{1} << 30, o.repeats);
  Stream stream;
  const Execution ex = Execution::cuda(stream.s);
  const PluginRegistry registry = builtin_plugin_registry();

  for (const std::int64_t tokens : o.tokens) {
    SyntheticTraceSpec spec = bench_trace_spec("");
    spec.layers = std::min(o.distinct_layers, o.layers);
    spec.kv_heads = o.heads;
    spec.tokens = tokens;
    spec.head_dim = o.head_dim;
    const SyntheticTrace trace(spec);
    const TraceTokens meta = trace.tokens();
    const BlockShape shape{o.heads, tokens, o.head_dim};
    const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
    const std::size_t side_bytes = static_cast<std::size_t>(shape.elements()) * 2;  // fp16
    // The layers' K and V in fp16 on the device: the distinct ones uploaded, the rest copied on the device.
    std::vector<DeviceBuffer> keys, values;
    for (int l = 0; l < o.layers; ++l) {
      keys.emplace_back(side_bytes, stream.s);
      values.emplace_back(side_bytes, stream.s);
      if (l < spec.layers) {
        const LayerData d = trace.layer(l);
        std::vector<std::uint16_t> k(d.key.size()), v(d.value.size());
        for (std::size_t i = 0; i < k.size(); ++i) {
          k[i] = float_to_half_bits(d.key[i]);
          v[i] = float_to_half_bits(d.value[i]);
        }
        copy_to_device(keys.back().data(), k.data(), side_bytes, stream.s);
        copy_to_device(values.back().data(), v.data(), side_bytes, stream.s);
        synchronize(stream.s);
      } else {
        copy_device_to_device(keys.back().data(), keys[static_cast<std::size_t>(l % spec.layers)].data(), side_bytes, stream.s);
        copy_device_to_device(values.back().data(), values[static_cast<std::size_t>(l % spec.layers)].data(), side_bytes, stream.s);
      }
    }
    std::vector<TokenContext> contexts(static_cast<std::size_t>(o.layers));
    for (int l = 0; l < o.layers; ++l) {
      contexts[static_cast<std::size_t>(l)].layer = l;
      contexts[static_cast<std::size_t>(l)].tokens = &meta;
      contexts[static_cast<std::size_t>(l)].seed = spec.seed;
    }
    const double bytes = 2.0 * static_cast<double>(side_bytes) * o.layers;

    for (const auto& name : o.presets) {
      CudaBenchRow row;
      row.preset = name;
      row.tokens = tokens;
      const ConfigNode doc = load_preset(name, ConfigNode::scalar(name));
      const KvCodec codec(registry.make_quantizer(doc.at("codec").at("key")), registry.make_quantizer(doc.at("codec").at("value")));
      for (const Quantizer* q : {&codec.key(), &codec.value()}) {
        const std::string why = cuda_quantizer_unsupported(*q, shape);
        if (!why.empty() && row.skipped.empty()) row.skipped = why;
      }
      if (!row.skipped.empty()) {
        result.rows.push_back(row);
        continue;
      }
      row.tiers = codec.key().tier(Device::cuda, shape).name + " / " + codec.value().tier(Device::cuda, shape).name;
      const std::size_t key_bytes = codec.key().layout(shape, contexts[0]).bytes();
      const std::size_t value_bytes = codec.value().layout(shape, contexts[0]).bytes();
      // Key and value bytes in separate allocations (256-byte aligned, as a cache holds them), so word-aligned
      // kernels are not pushed to their unaligned fallbacks by an odd key size.
      std::vector<DeviceBuffer> key_packed, value_packed, key_out, value_out;
      for (int l = 0; l < o.layers; ++l) {
        key_packed.emplace_back(key_bytes, stream.s);
        value_packed.emplace_back(value_bytes, stream.s);
        key_out.emplace_back(side_bytes, stream.s);
        value_out.emplace_back(side_bytes, stream.s);
      }
      auto view = [&](const DeviceBuffer& b) { return TensorView{b.data(), DType::f16, Device::cuda, dims}; };
      // Each layer's keys, then its values, as a pair (KvCodec::encode_pair: the values' first kernel may run
      // beside the end of the keys' last one; with VIDKV_CUDA_PAIRED_LAUNCH=off one after the other).
      auto encode = [&] {
        for (std::size_t l = 0; l < keys.size(); ++l)
          codec.encode_pair(view(keys[l]), view(values[l]), contexts[l], key_packed[l].as<std::uint8_t>(),
                            value_packed[l].as<std::uint8_t>(), ex);
      };
      auto decode = [&] {
        for (std::size_t l = 0; l < keys.size(); ++l)
          codec.decode_pair(key_packed[l].as<const std::uint8_t>(), value_packed[l].as<const std::uint8_t>(), contexts[l],
                            view(key_out[l]), view(value_out[l]), ex);
      };
      // What `vidkv run` does with backend: cuda per layer, without the metrics: the preset's lifecycle on a device
      // LayerCache (the whole layer as the prefill), materialized into the fp16 output buffers.
      const LifecycleParams lifecycle = parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle");
      auto replay = [&] {
        for (std::size_t l = 0; l < keys.size(); ++l)
          replay_layer(codec, lifecycle, view(keys[l]), view(values[l]), contexts[l], view(key_out[l]), view(value_out[l]), ex, DType::f16);
      };
      const double t_enc = median_seconds(stream.s, o.warmup, o.repeats, encode);
      const double t_dec = median_seconds(stream.s, o.warmup, o.repeats, decode);
      const double t_replay = median_seconds(stream.s, o.warmup, o.repeats, replay);
      row.encode_gbps = bytes / t_enc / 1e9;
      row.decode_gbps = bytes / t_dec / 1e9;
      row.encode_decode_gbps = bytes / (t_enc + t_dec) / 1e9;
      row.replay_gbps = bytes / t_replay / 1e9;
      result.rows.push_back(row);
    }
    synchronize(stream.s);
  }
  return result;
}

#endif

std::string cuda_bench_markdown(const CudaBenchResult& r, const std::vector<double>& torch_gbps) {
  std::ostringstream s;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "device %s; %d layers x %d KV heads x %d channels, fp16 K+V input; GB/s of fp16 input (CUDA events, "
                "median of %d)\ndevice-to-device copy (cudaMemcpyAsync, 1 GiB): %.1f GB/s of bytes copied (%.1f GB/s "
                "read + written); the ratios below use the first\n\n",
                r.device.c_str(), r.layers, r.heads, r.head_dim, r.repeats, r.copy_gbps, 2.0 * r.copy_gbps);
  s << buf;
  const bool torch = !torch_gbps.empty();
  s << "| preset | tokens | encode | decode | encode+decode | encode / copy | decode / copy | enc+dec / copy |"
    << (torch ? " torch enc+dec | ours / torch |" : "") << " replay | tiers (key / value) |\n";
  s << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" << (torch ? " ---: | ---: |" : "") << " ---: | --- |\n";
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    if (!row.skipped.empty()) {
      std::snprintf(buf, sizeof buf, "| %s | %lld | n/a | n/a | n/a | | | |%s | not run: %s |\n", row.preset.c_str(),
                    static_cast<long long>(row.tokens), torch ? " | |" : "", row.skipped.c_str());
      s << buf;
      continue;
    }
    std::snprintf(buf, sizeof buf, "| %s | %lld | %.1f | %.1f | %.1f | %.1f%% | %.1f%% | %.1f%% |", row.preset.c_str(),
                  static_cast<long long>(row.tokens), row.encode_gbps, row.decode_gbps, row.encode_decode_gbps,
                  100.0 * row.encode_gbps / r.copy_gbps, 100.0 * row.decode_gbps / r.copy_gbps,
                  100.0 * row.encode_decode_gbps / r.copy_gbps);
    s << buf;
    if (torch) {
      const double t = i < torch_gbps.size() ? torch_gbps[i] : 0.0;
      if (t > 0) {
        // From 1 GB/s 2 decimals, below 3 significant digits: a small positive figure never reads as 0.00.
        std::snprintf(buf, sizeof buf, t >= 1.0 ? " %.2f | %.1fx |" : " %.3g | %.1fx |", t, row.encode_decode_gbps / t);
      } else {
        std::snprintf(buf, sizeof buf, " n/a | n/a |");
      }
      s << buf;
    }
    std::snprintf(buf, sizeof buf, " %.1f |", row.replay_gbps);
    s << buf << " " << row.tiers << " |\n";
  }
  return s.str();
}

}  // namespace vidkv
