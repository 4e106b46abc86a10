#include "vidkv/experiments/src/cpu_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <sstream>
#include <thread>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/params.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/core/thread_pool.h"
#include "vidkv/experiments/src/layer_buffer_reuse.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/experiments/src/presets.h"

namespace vidkv {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// User + system CPU time of the whole process (every thread), in seconds.
double process_cpu_seconds() {
  timespec t{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

// Runs fn(i) for i in [0, n) on `pool` (or inline without one) and returns the wall time (or, with cpu_time, the
// process's CPU time), best of `repeats`.
template <class Fn>
double best_time(ThreadPool* pool, std::int64_t n, int repeats, const Fn& fn, bool cpu_time = false) {
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = Clock::now();
    const double c0 = process_cpu_seconds();
    if (pool) {
      pool->parallel_for(n, fn);
    } else {
      for (std::int64_t i = 0; i < n; ++i) fn(i);
    }
    best = std::min(best, cpu_time ? process_cpu_seconds() - c0 : seconds_since(t0));
  }
  return best;
}

// The FFT tiers' table (cpu_bench.h).
std::string cpu_bench_fft_markdown(const CpuBenchResult& r) {
  std::ostringstream s;
  char buf[1024];
  // The avx512 tier falls back to FFTW's per-row plans where its transforms cannot run (a CPU without AVX-512
  // F/BW/DQ/VL, VIDKV_CPU_KERNELS=portable, other widths): its row then timed those, which the kernel tiers say
  // (no "+fft-avx512"), and it is no baseline for a ratio.
  auto avx512_ran = [](const CpuBenchFftRow& f) {
    return f.fft_tier == CpuFftTier::avx512 && (f.key_tier.find("+fft-avx512") != std::string::npos ||
                                                 f.value_tier.find("+fft-avx512") != std::string::npos);
  };
  auto avx512_row = [&](const std::string& preset) -> const CpuBenchFftRow* {
    for (const auto& f : r.fft_rows)
      if (f.preset == preset && f.fft_tier == CpuFftTier::avx512) return &f;
    return nullptr;
  };
  auto avx512_of = [&](const std::string& preset) -> const CpuBenchFftRow* {
    const CpuBenchFftRow* f = avx512_row(preset);
    return f != nullptr && avx512_ran(*f) ? f : nullptr;
  };
  s << "\nChannel FFT tiers (core/cpu_fft_tier.h), same layers, timed interleaved: every repeat runs each tier in turn; "
       "best of N each\n\n"
    << "| preset | FFT tier | kernel tiers that ran (key; value) | encode | decode | encode+decode | enc+dec / avx512 tier |\n"
    << "| --- | --- | --- | ---: | ---: | ---: | ---: |\n";
  for (const auto& f : r.fft_rows) {
    const CpuBenchFftRow* base = avx512_of(f.preset);
    std::string ratio = "n/a";
    if (base) {
      std::snprintf(buf, sizeof buf, "%.3f", f.encode_decode_gbps / base->encode_decode_gbps);
      ratio = buf;
    }
    const std::string tier = std::string(cpu_fft_tier_name(f.fft_tier)) +
                             (f.fft_tier == CpuFftTier::avx512 && !avx512_ran(f) ? " (not run here: FFTW per-row plans)" : "");
    std::snprintf(buf, sizeof buf, "| %s | %s | %s; %s | %.3g | %.3g | %.3g | %s |\n", f.preset.c_str(),
                  tier.c_str(), f.key_tier.c_str(), f.value_tier.c_str(), f.encode_gbps, f.decode_gbps,
                  f.encode_decode_gbps, ratio.c_str());
    s << buf;
  }
  s << "\n";
  for (const auto& f : r.fft_rows) {
    const CpuBenchFftRow* base = avx512_of(f.preset);
    if (f.fft_tier != CpuFftTier::fftw_batched) continue;
    if (!base && avx512_row(f.preset) != nullptr) {
      s << "FFTW batched / AVX-512, encode+decode of " << f.preset
        << ": no ratio in this run, the AVX-512 transforms did not run (a CPU without AVX-512 F/BW/DQ/VL, or "
           "VIDKV_CPU_KERNELS=portable): the avx512 row timed FFTW's per-row plans\n";
      continue;
    }
    if (!base) continue;
    std::snprintf(buf, sizeof buf, "FFTW batched / AVX-512, encode+decode of %s, this run: %.3f (%.3g / %.3g GB/s)\n",
                  f.preset.c_str(), f.encode_decode_gbps / base->encode_decode_gbps, f.encode_decode_gbps,
                  base->encode_decode_gbps);
    s << buf;
  }
  return s.str();
}

}  // namespace

SyntheticTraceSpec bench_trace_spec(const std::string& shape) {
  SyntheticTraceSpec spec;
  spec.layers = 28;
  spec.kv_heads = 4;
  spec.tokens = 8192;
  spec.head_dim = 128;
  spec.frames = 16;
  if (!shape.empty()) parse_synthetic_shape(shape, spec);
  return spec;
}

double copy_bandwidth_gbps(int threads, int repeats, bool cpu_time) {
  // 256 MiB per side: far beyond any last-level cache this code is likely to meet.
  const std::size_t bytes = std::size_t{256} << 20;
  std::unique_ptr<char[]> src(new char[bytes]), dst(new char[bytes]);
  std::memset(src.get(), 1, bytes);
  std::memset(dst.get(), 2, bytes);  // touch every page before timing
  threads = std::max(1, threads);
  const std::size_t chunk = bytes / static_cast<std::size_t>(threads);
  auto copy_part = [&](std::int64_t i) {
    const std::size_t begin = static_cast<std::size_t>(i) * chunk;
    const std::size_t n = i == threads - 1 ? bytes - begin : chunk;
    std::memcpy(dst.get() + begin, src.get() + begin, n);
  };
  std::unique_ptr<ThreadPool> pool;
  if (threads > 1) pool = std::make_unique<ThreadPool>(threads - 1);
  const double t = best_time(pool.get(), threads, repeats + 1, copy_part, cpu_time && threads == 1);
  return static_cast<double>(bytes) / t / 1e9;
}

CpuBenchResult run_cpu_bench(const CpuBenchOptions& options) {
  keep_freed_layer_buffers();  // as vidkv run does (experiment_runner.cpp)
  const SyntheticTraceSpec spec = options.spec.resolved();
  const SyntheticTrace trace(spec);
  CpuBenchResult result;
  result.shape = spec.str();
  result.threads = std::max(1, options.threads);
  result.cpu_time = options.cpu_time;
  result.hardware_threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  result.layers = options.layers > 0 ? options.layers : std::max(2, result.threads);
  result.layers = std::min(result.layers, spec.layers);
  const BlockShape shape{spec.kv_heads, spec.tokens, spec.head_dim};
  result.layer_fp16_bytes = 2 * shape.elements() * 2;
  const double bytes = static_cast<double>(result.layer_fp16_bytes) * result.layers;

  result.copy_gbps_one_thread = copy_bandwidth_gbps(1, options.repeats, options.cpu_time);
  result.copy_gbps_all_threads = copy_bandwidth_gbps(result.hardware_threads, options.repeats);

  const TraceTokens tokens = trace.tokens();
  // Each layer's K and V in HostTensors (64-byte aligned, huge pages for layer-sized blocks), the storage the
  // framework uses for large host tensors; the LayerData keeps the recorded queries for the metrics.
  std::vector<LayerData> layers;
  std::vector<HostTensor> keys, values;
  for (int l = 0; l < result.layers; ++l) {
    layers.push_back(trace.layer(l));
    LayerData& d = layers.back();
    for (auto* side : {&d.key, &d.value}) {
      HostTensor t({static_cast<std::int64_t>(side->size())}, DType::f32);
      std::copy(side->begin(), side->end(), t.data<float>());
      std::vector<float>().swap(*side);
      (side == &d.key ? keys : values).push_back(std::move(t));
    }
  }
  std::unique_ptr<ThreadPool> pool;
  if (result.threads > 1) pool = std::make_unique<ThreadPool>(result.threads - 1);
  const PluginRegistry registry = builtin_plugin_registry(options.implementation);

  for (const auto& name : options.presets) {
    const ConfigNode doc = load_preset(name, ConfigNode::scalar(name));
    const KvCodec codec(registry.make_quantizer(doc.at("codec").at("key")), registry.make_quantizer(doc.at("codec").at("value")));
    const LifecycleParams lifecycle = parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle");
    auto context = [&](int layer) {
      TokenContext ctx;
      ctx.layer = layer;
      ctx.tokens = &tokens;
      ctx.seed = spec.seed;
      return ctx;
    };
    const std::size_t key_bytes = codec.key().layout(shape, context(0)).bytes();
    const std::size_t value_bytes = codec.value().layout(shape, context(0)).bytes();
    std::vector<std::vector<std::uint8_t>> packed(layers.size());
    // Decoded layers in 64-byte aligned storage, as a tensor library hands them over (torch's CPU allocator aligns
    // to 64 bytes): the kernels write whole cache lines there, streaming them past the caches for large blocks.
    std::vector<HostTensor> decoded(layers.size());
    for (std::size_t l = 0; l < layers.size(); ++l) {
      packed[l].assign(key_bytes + value_bytes, 0);
      decoded[l] = HostTensor({2 * shape.elements()}, DType::f32);
      std::fill_n(decoded[l].data<float>(), 2 * shape.elements(), 0.0f);  // touch every page before timing
    }
    auto encode = [&](std::int64_t l) {
      const TokenContext ctx = context(static_cast<int>(l));
      const auto i = static_cast<std::size_t>(l);
      codec.key().encode(keys[i].data<float>(), shape, ctx, packed[i].data());
      codec.value().encode(values[i].data<float>(), shape, ctx, packed[i].data() + key_bytes);
    };
    auto decode = [&](std::int64_t l) {
      const TokenContext ctx = context(static_cast<int>(l));
      float* out = decoded[static_cast<std::size_t>(l)].data<float>();
      codec.key().decode(packed[static_cast<std::size_t>(l)].data(), shape, ctx, out);
      codec.value().decode(packed[static_cast<std::size_t>(l)].data() + key_bytes, shape, ctx, out + shape.elements());
    };
    MetricSelection selection = MetricSelection::all();
    auto encode_metrics = [&](std::int64_t l) {
      const TokenContext ctx = context(static_cast<int>(l));
      const auto i = static_cast<std::size_t>(l);
      const LayerData& d = layers[i];
      const float* key = keys[i].data<float>();
      const float* value = values[i].data<float>();
      ReplayedLayer out = replay_layer(codec, lifecycle, key, value, shape, ctx, spec.dtype);
      const LayerQueries* q = d.queries && d.queries->count > 0 ? &*d.queries : nullptr;
      LayerTensors t{key, value, out.key.data(), out.value.data(), shape, q};
      VIDKV_ASSERT(layer_metrics_all(t, selection).size() == static_cast<std::size_t>(shape.heads + 1), "metrics of every head");
    };
    const auto n = static_cast<std::int64_t>(layers.size());
    const bool cpu = options.cpu_time;
    const double t_enc = best_time(pool.get(), n, options.repeats, encode, cpu);
    const double t_dec = best_time(pool.get(), n, options.repeats, decode, cpu);
    selection = MetricSelection::for_metrics({"key_rel_error", "value_rel_error"});
    const double t_reconstruction = best_time(pool.get(), n, options.repeats, encode_metrics, cpu);
    selection = MetricSelection::all();
    const double t_all = best_time(pool.get(), n, options.repeats, encode_metrics, cpu);
    auto encode_metrics_reference = [&](std::int64_t l) {
      const TokenContext ctx = context(static_cast<int>(l));
      const auto i = static_cast<std::size_t>(l);
      const LayerData& d = layers[i];
      const float* key = keys[i].data<float>();
      const float* value = values[i].data<float>();
      ReplayedLayer out = replay_layer(codec, lifecycle, key, value, shape, ctx, spec.dtype);
      const LayerQueries* q = d.queries && d.queries->count > 0 ? &*d.queries : nullptr;
      LayerTensors t{key, value, out.key.data(), out.value.data(), shape, q};
      for (std::int64_t h = 0; h < shape.heads; ++h) VIDKV_ASSERT(!layer_metrics_reference(t, h).empty(), "metrics of head ", h);
    };
    const double t_reference = best_time(pool.get(), n, 1, encode_metrics_reference, cpu);
    if (options.implementation == CpuImplementation::optimized && !options.fft_tiers.empty()) {
      const std::vector<CpuFftTier>& tiers = options.fft_tiers;
      const std::size_t nt = tiers.size();
      std::vector<CpuBenchFftRow> fft(nt);
      for (std::size_t i = 0; i < nt; ++i) {
        const ScopedCpuFftTier scoped(tiers[i]);
        fft[i].preset = name;
        fft[i].fft_tier = tiers[i];
        fft[i].key_tier = codec.key().tier(Device::cpu, shape).name;
        fft[i].value_tier = codec.value().tier(Device::cpu, shape).name;
      }
      // Timed only when the tiers run different code for this preset (a preset without a sign FFT does not).
      bool differ = false;
      for (const auto& f : fft) differ = differ || f.key_tier != fft[0].key_tier || f.value_tier != fft[0].value_tier;
      if (differ) {
        for (const CpuFftTier t : tiers) {  // untimed: FFTW plans of every worker, first touch of the buffers
          const ScopedCpuFftTier scoped(t);
          best_time(pool.get(), n, 1, encode, cpu);
          best_time(pool.get(), n, 1, decode, cpu);
        }
        std::vector<double> t_fft_enc(nt, 1e300), t_fft_dec(nt, 1e300);
        for (int r = 0; r < options.repeats; ++r) {
          for (std::size_t k = 0; k < nt; ++k) {
            const std::size_t i = (k + static_cast<std::size_t>(r)) % nt;
            const ScopedCpuFftTier scoped(tiers[i]);
            t_fft_enc[i] = std::min(t_fft_enc[i], best_time(pool.get(), n, 1, encode, cpu));
            t_fft_dec[i] = std::min(t_fft_dec[i], best_time(pool.get(), n, 1, decode, cpu));
          }
        }
        for (std::size_t i = 0; i < nt; ++i) {
          fft[i].encode_gbps = bytes / t_fft_enc[i] / 1e9;
          fft[i].decode_gbps = bytes / t_fft_dec[i] / 1e9;
          fft[i].encode_decode_gbps = bytes / (t_fft_enc[i] + t_fft_dec[i]) / 1e9;
          result.fft_rows.push_back(fft[i]);
        }
      }
    }
    CpuBenchRow row;
    row.preset = name;
    row.encode_gbps = bytes / t_enc / 1e9;
    row.decode_gbps = bytes / t_dec / 1e9;
    row.encode_decode_gbps = bytes / (t_enc + t_dec) / 1e9;
    row.encode_reconstruction_metrics_gbps = bytes / t_reconstruction / 1e9;
    row.encode_metrics_gbps = bytes / t_all / 1e9;
    row.encode_metrics_reference_gbps = bytes / t_reference / 1e9;
    result.rows.push_back(row);
  }
  return result;
}

std::string cpu_bench_markdown(const CpuBenchResult& r, const std::vector<double>& torch_gbps) {
  std::ostringstream s;
  char buf[512];
  s << "shape " << r.shape << "; " << r.layers << " layer(s) timed, " << r.threads << " thread(s); GB/s of fp16 K+V input "
    << "(best of N" << (r.cpu_time ? ", per second of process CPU time" : "") << ")\n";
  std::snprintf(buf, sizeof buf, "streaming copy (memcpy): %.2f GB/s on 1 thread%s, %.2f GB/s on %d threads (wall time)\n\n",
                r.copy_gbps_one_thread, r.cpu_time ? " (CPU time)" : "", r.copy_gbps_all_threads, r.hardware_threads);
  s << buf;
  const bool torch = !torch_gbps.empty();
  s << "| preset | encode | decode | encode+decode | encode+metrics (reconstruction) | encode+metrics (all) | "
       "encode+metrics (all, scalar reference) | enc+metrics (all) / scalar reference | "
       "enc+dec / enc+metrics (reconstruction) | enc+dec / copy(1 thread) | enc+dec / copy(all) |"
    << (torch ? " torch enc+dec | ours / torch |" : "") << "\n";
  s << "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |" << (torch ? " ---: | ---: |" : "") << "\n";
  for (std::size_t i = 0; i < r.rows.size(); ++i) {
    const auto& row = r.rows[i];
    std::snprintf(buf, sizeof buf, "| %s | %.3g | %.3g | %.3g | %.3g | %.3g | %.3g | %.1fx | %.2fx | %.1f%% | %.1f%% |",
                  row.preset.c_str(), row.encode_gbps, row.decode_gbps, row.encode_decode_gbps,
                  row.encode_reconstruction_metrics_gbps, row.encode_metrics_gbps, row.encode_metrics_reference_gbps,
                  row.encode_metrics_gbps / row.encode_metrics_reference_gbps,
                  row.encode_decode_gbps / row.encode_reconstruction_metrics_gbps,
                  100.0 * row.encode_decode_gbps / r.copy_gbps_one_thread,
                  100.0 * row.encode_decode_gbps / r.copy_gbps_all_threads);
    s << buf;
    if (torch) {
      const double t = i < torch_gbps.size() ? torch_gbps[i] : 0.0;
      if (t > 0) {
        std::snprintf(buf, sizeof buf, " %.3g | %.1fx |", t, row.encode_decode_gbps / t);
      } else {
        std::snprintf(buf, sizeof buf, " n/a | n/a |");
      }
      s << buf;
    }
    s << "\n";
  }
  if (!r.fft_rows.empty()) s << cpu_bench_fft_markdown(r);
  return s.str();
}

}  // namespace vidkv
