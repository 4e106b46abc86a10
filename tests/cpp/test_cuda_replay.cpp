// backend: cuda for trace replay against backend: cpu (issue 11):
//  - the LayerCache on cuda (core/cache_lifecycle.h) holds the CPU cache's bytes block for block and materializes
//    the same reconstruction, for the three lifecycles, decode steps included, with fp32, fp16 and bf16 inputs;
//  - CudaLayerReplay (experiments/src/cuda_replay.h) on a synthetic layer with GQA query states gives
//    layer_metrics_all's metrics for every head and the layer, also when it rotates the layer as a rope: pre one;
//  - the bundled trace (traces/data/smollm2-135m-longdoc.h5) replayed by vidkv's runner with backend: cuda gives the
//    backend: cpu results: bits equal (exact tiers give identical reconstructions), the metrics (computed on the
//    device, cuda_metrics.h and cuda_attention.h) within the stated tolerance.
// The tolerances (metrics_agree, check_backend_rows) are derived in backend_rows_compare.h.
// Skipped, printed: no GPU; codecs with a plugin without CUDA or with an inexact tier.
#include <cmath>
#include <cstring>
#include <variant>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <string>
#include <unistd.h>
#include <vector>

#include "backend_rows_compare.h"
#include "catch.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/core/params.h"
#include "vidkv/core/rotary.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/cuda_replay.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/traces/synthetic_trace.h"

using namespace vidkv;
using namespace vidkv::test;
namespace fs = std::filesystem;

namespace {

void require_gpu() {
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
}

// "" when both quantizers run exactly on cuda for `shape`, else why not.
std::string cuda_exact(const KvCodec& codec, const BlockShape& shape) {
  for (const Quantizer* q : {&codec.key(), &codec.value()}) {
    std::string why;
    if (!q->supports(Device::cuda, shape, &why)) return why;
    const KernelTier t = q->tier(Device::cuda, shape);
    if (!t.exact) return "inexact tier " + t.name + " (FFT: compared within the sign FFT tolerance by test_cuda_sign and test_cuda_composites, and through the live cache by tests/python/test_live_cuda.py, not byte for byte here)";
  }
  return "";
}

struct NamedCodec {
  std::string name;
  ConfigNode key, value;
  LifecycleParams lifecycle;
};

std::vector<NamedCodec> codecs_and_lifecycles() {
  std::vector<NamedCodec> out;
  for (LifecycleType type : {LifecycleType::release, LifecycleType::paper, LifecycleType::kivi}) {
    LifecycleParams lc;
    lc.type = type;
    lc.group = 32;
    lc.residual = 48;
    lc.prefill_tokens = 70;  // 70 prefill tokens, then decode steps (two re-quantizations / appended blocks)
    out.push_back({"uniform 2-bit, lifecycle " + std::to_string(static_cast<int>(type)),
                   quantizer_block("uniform", {{"bits", "2"}, {"axis", "channel"}}),
                   quantizer_block("uniform", {{"bits", "2"}, {"axis", "token"}}), lc});
  }
  for (const auto& p : list_presets()) {
    const ConfigNode doc = load_preset(p.name, ConfigNode::scalar(p.name));
    LifecycleParams lc = parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle");
    lc.prefill_tokens = 150;
    out.push_back({"preset " + p.name, doc.at("codec").at("key"), doc.at("codec").at("value"), lc});
  }
  return out;
}

}  // namespace

TEST_CASE("a LayerCache on cuda holds the CPU cache's bytes and materializes its reconstruction", "[cuda]") {
  require_gpu();
  // A synthetic layer with everything protectors read: token modalities, input embeddings, query states (and the
  // cache's own keys, which it exposes through ctx.keys).
  SyntheticTraceSpec spec;
  spec.layers = 1;
  spec.kv_heads = 2;
  spec.tokens = 260;
  spec.head_dim = 64;
  spec.frames = 4;
  const SyntheticTrace trace(spec);
  const TraceTokens tokens = trace.tokens();
  const LayerData layer = trace.layer(0);
  const BlockShape shape{spec.kv_heads, spec.tokens, spec.head_dim};
  int compared = 0;
  for (const NamedCodec& nc : codecs_and_lifecycles()) {
    const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
    const KvCodec cpu_codec(reg.make_quantizer(nc.key), reg.make_quantizer(nc.value));
    const KvCodec gpu_codec(test::builtin_registry().make_quantizer(nc.key), test::builtin_registry().make_quantizer(nc.value));
    const std::string why = cuda_exact(gpu_codec, shape);
    if (!why.empty()) {
      std::cout << "[cuda] skipped " << nc.name << ": " << why << "\n";
      continue;
    }
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      INFO(nc.name << ", input " << dtype_name(dtype));
      std::vector<float> k = layer.key, v = layer.value;
      for (auto* side : {&k, &v})
        for (auto& x : *side) x = round_to_dtype(x, dtype);
      TokenContext ctx;
      ctx.tokens = &tokens;
      ctx.queries = layer.queries ? &*layer.queries : nullptr;
      const ReplayedLayer want = replay_layer(cpu_codec, nc.lifecycle, k.data(), v.data(), shape, ctx, dtype);

      const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
      const std::size_t esize = static_cast<std::size_t>(dtype_size(dtype));
      std::vector<std::uint8_t> hk(k.size() * esize), hv(hk.size());
      for (std::size_t i = 0; i < k.size(); ++i) {
        store_from_float(hk.data(), dtype, i, k[i]);
        store_from_float(hv.data(), dtype, i, v[i]);
      }
      DeviceBuffer dk(hk.size()), dv(hv.size()), rk(k.size() * 4), rv(k.size() * 4);
      copy_to_device(dk.data(), hk.data(), hk.size());
      copy_to_device(dv.data(), hv.data(), hv.size());
      fill_device(rk.data(), 0xAB, rk.bytes());
      fill_device(rv.data(), 0xAB, rv.bytes());
      const ReplayedLayer got = replay_layer(gpu_codec, nc.lifecycle, TensorView{dk.data(), dtype, Device::cuda, dims},
                                             TensorView{dv.data(), dtype, Device::cuda, dims}, ctx,
                                             TensorView{rk.data(), DType::f32, Device::cuda, dims},
                                             TensorView{rv.data(), DType::f32, Device::cuda, dims}, Execution::cuda(), dtype);
      std::vector<float> gk(k.size()), gv(k.size());
      copy_to_host(gk.data(), rk.data(), rk.bytes());
      copy_to_host(gv.data(), rv.data(), rv.bytes());
      CHECK(std::memcmp(gk.data(), want.key.data(), gk.size() * 4) == 0);
      CHECK(std::memcmp(gv.data(), want.value.data(), gv.size() * 4) == 0);
      CHECK(got.key_layout.bytes() == want.key_layout.bytes());
      CHECK(got.value_layout.bytes() == want.value_layout.bytes());
      CHECK(got.requantizations == want.requantizations);

      // Block for block through the cache API, decode steps appended one token at a time.
      LayerCache c_cpu(cpu_codec, nc.lifecycle, shape.heads, shape.channels, ctx, dtype);
      LayerCache c_gpu(gpu_codec, nc.lifecycle, shape.heads, shape.channels, ctx, dtype, Execution::cuda());
      const TensorView hkv{hk.data(), dtype, Device::cpu, dims}, hvv{hv.data(), dtype, Device::cpu, dims};
      const TensorView dkv{dk.data(), dtype, Device::cuda, dims}, dvv{dv.data(), dtype, Device::cuda, dims};
      c_cpu.append(hkv, hvv, 0, 100);
      c_gpu.append(dkv, dvv, 0, 100);
      for (std::int64_t t = 100; t < shape.tokens; ++t) {
        c_cpu.append(hkv, hvv, t, t + 1);
        c_gpu.append(dkv, dvv, t, t + 1);
      }
      REQUIRE(c_gpu.key_block_count() == c_cpu.key_block_count());
      REQUIRE(c_gpu.value_block_count() == c_cpu.value_block_count());
      for (std::size_t i = 0; i < c_cpu.key_block_count(); ++i) CHECK(c_gpu.key_block_bytes(i) == c_cpu.key_block_bytes(i));
      for (std::size_t i = 0; i < c_cpu.value_block_count(); ++i) CHECK(c_gpu.value_block_bytes(i) == c_cpu.value_block_bytes(i));
      std::vector<float> mk, mv, ck, cv;
      c_cpu.materialize(ck, cv);
      c_gpu.materialize(mk, mv);
      CHECK(mk == ck);
      CHECK(mv == cv);

      // The live hook's storage (ExactTokens::residual): the same bytes, only the residual window held exactly.
      // semantic_attention reads ctx.keys, which this policy never exposes: it refuses (ConfigError), as live.
      try {
        LayerCache c_win(gpu_codec, nc.lifecycle, shape.heads, shape.channels, ctx, dtype, Execution::cuda(), ExactTokens::residual);
        c_win.append(dkv, dvv, 0, 100);
        for (std::int64_t t = 100; t < shape.tokens; ++t) c_win.append(dkv, dvv, t, t + 1);
        REQUIRE(c_win.key_block_count() == c_cpu.key_block_count());
        for (std::size_t i = 0; i < c_cpu.key_block_count(); ++i) CHECK(c_win.key_block_bytes(i) == c_cpu.key_block_bytes(i));
        for (std::size_t i = 0; i < c_cpu.value_block_count(); ++i) CHECK(c_win.value_block_bytes(i) == c_cpu.value_block_bytes(i));
        std::vector<float> wk, wv;
        c_win.materialize(wk, wv);
        CHECK(wk == ck);
        CHECK(wv == cv);
        const std::size_t row = static_cast<std::size_t>(shape.heads * shape.channels) * esize;
        // At most 2 window_rows() rows per side (R + 1; KIVI R + value_block): the window and the dead rows an append
        // moves it over (cache_lifecycle.h).
        CHECK(c_win.held_bytes().exact <= 4 * static_cast<std::size_t>(nc.lifecycle.window_rows()) * row);
      } catch (const ConfigError& e) {
        std::cout << "[cuda] " << nc.name << " with ExactTokens::residual refused: " << e.what() << "\n";
      }
      ++compared;
    }
  }
  std::cout << "[cuda] " << compared << " (codec, lifecycle, dtype) cases compared with the CPU cache\n";
  if (compared == 0) VIDKV_SKIP("no codec runs exactly on CUDA yet");
}

TEST_CASE("CudaLayerReplay gives layer_metrics_all's metrics on a synthetic layer with GQA queries", "[cuda]") {
  require_gpu();
  SyntheticTraceSpec spec;
  spec.layers = 2;
  spec.kv_heads = 2;
  spec.tokens = 300;
  spec.head_dim = 64;
  spec.frames = 4;
  const SyntheticTrace trace(spec);
  const TraceTokens tokens = trace.tokens();
  const KvCodec codec(make("uniform", {{"bits", "2"}, {"axis", "channel"}}), make("uniform", {{"bits", "2"}, {"axis", "token"}}));
  const BlockShape shape{spec.kv_heads, spec.tokens, spec.head_dim};
  if (const std::string why = cuda_exact(codec, shape); !why.empty()) VIDKV_SKIP("uniform on cuda: " << why);
  LifecycleParams lc;
  lc.prefill_tokens = 260;
  CudaLayerReplay replay(codec, lc, shape, spec.layers, [&](int l) { return trace.layer(l); }, true, spec.dtype);
  for (int l = 0; l < spec.layers; ++l) {
    const LayerData d = replay.take(l);
    REQUIRE(d.queries);
    TokenContext ctx;
    ctx.layer = l;
    ctx.tokens = &tokens;
    ctx.queries = &*d.queries;
    ReplayedLayer got;
    const std::vector<MetricValues> dev = replay.replay(d, ctx, got);
    const ReplayedLayer want = replay_layer(codec, lc, d.key.data(), d.value.data(), shape, ctx, spec.dtype);
    const LayerTensors t{d.key.data(), d.value.data(), want.key.data(), want.value.data(), shape, &*d.queries};
    // The device metrics follow the scalar reference's order (double sums, logits and outputs in index order), so
    // they are compared with layer_metrics_reference at 1e-9; the CPU's GEMM path (layer_metrics_all) agrees with
    // that reference within the bound derived in test_metrics.cpp.
    CHECK(got.key_layout.bytes() == want.key_layout.bytes());
    REQUIRE(dev.size() == static_cast<std::size_t>(shape.heads + 1));
    for (std::size_t h = 0; h < dev.size(); ++h) {
      const MetricValues ref = layer_metrics_reference(t, h < static_cast<std::size_t>(shape.heads) ? static_cast<std::int64_t>(h) : -1);
      CHECK(dev[h].size() == ref.size());
      for (const auto& [name, value] : ref) {
        INFO("layer " << l << ", head " << h << ", " << name);
        REQUIRE(dev[h].count(name));
        CHECK(metrics_agree(name, value, dev[h].at(name)));
      }
    }
  }
}

TEST_CASE("CudaLayerReplay rotates a rope: pre layer as backend cpu does, then gives the reference's metrics",
          "[cuda][rotary]") {
  // The layer as a rope: pre trace's (positions 3 t + 1; theta 500000, linear x 4, interleaved pairing): the device
  // rotates the exact and reconstructed keys and the queries (cuda_rotary.h), bit-identical to the cpu's
  // apply_rotary_rows, so its metrics are layer_metrics_reference's on the tensors the cpu rotates
  // (experiment_runner.cpp) at the same 1e-9 as unrotated layers; on the unrotated tensors they are not.
  require_gpu();
  SyntheticTraceSpec spec;
  spec.layers = 2;
  spec.kv_heads = 2;
  spec.tokens = 300;
  spec.head_dim = 64;
  spec.frames = 4;
  const SyntheticTrace trace(spec);
  const TraceTokens tokens = trace.tokens();
  const KvCodec codec(make("uniform", {{"bits", "2"}, {"axis", "channel"}}), make("uniform", {{"bits", "2"}, {"axis", "token"}}));
  const BlockShape shape{spec.kv_heads, spec.tokens, spec.head_dim};
  if (const std::string why = cuda_exact(codec, shape); !why.empty()) VIDKV_SKIP("uniform on cuda: " << why);
  const RotaryParams rope{500000.0, RotaryScaling::linear, 4.0, RotaryPairing::interleaved};
  std::vector<std::int32_t> positions(static_cast<std::size_t>(spec.tokens));
  for (std::size_t t = 0; t < positions.size(); ++t) positions[t] = static_cast<std::int32_t>(3 * t + 1);
  LifecycleParams lc;
  lc.prefill_tokens = 260;
  CudaLayerReplay replay(codec, lc, shape, spec.layers, [&](int l) { return trace.layer(l); }, true, spec.dtype, &rope,
                         positions.data());
  for (int l = 0; l < spec.layers; ++l) {
    const LayerData d = replay.take(l);
    REQUIRE(d.queries);
    TokenContext ctx;
    ctx.layer = l;
    ctx.tokens = &tokens;
    ctx.queries = &*d.queries;
    ReplayedLayer got;
    const std::vector<MetricValues> dev = replay.replay(d, ctx, got);
    const ReplayedLayer want = replay_layer(codec, lc, d.key.data(), d.value.data(), shape, ctx, spec.dtype);
    std::vector<float> key = d.key, key_hat = want.key;
    apply_rotary_rows(key.data(), shape.heads, shape.tokens, shape.channels, positions.data(), rope);
    apply_rotary_rows(key_hat.data(), shape.heads, shape.tokens, shape.channels, positions.data(), rope);
    LayerQueries queries = *d.queries;
    std::vector<std::int32_t> query_positions;
    for (const std::int32_t i : queries.token_index) query_positions.push_back(positions[static_cast<std::size_t>(i)]);
    apply_rotary_rows(queries.data.data(), queries.heads, queries.count, queries.dim, query_positions.data(), rope);
    const LayerTensors rotated{key.data(), d.value.data(), key_hat.data(), want.value.data(), shape, &queries};
    const LayerTensors stored{d.key.data(), d.value.data(), want.key.data(), want.value.data(), shape, &*d.queries};
    REQUIRE(dev.size() == static_cast<std::size_t>(shape.heads + 1));
    for (std::size_t h = 0; h < dev.size(); ++h) {
      const std::int64_t head = h < static_cast<std::size_t>(shape.heads) ? static_cast<std::int64_t>(h) : -1;
      const MetricValues ref = layer_metrics_reference(rotated, head);
      CHECK(dev[h].size() == ref.size());
      for (const auto& [name, value] : ref) {
        INFO("layer " << l << ", head " << h << ", " << name);
        REQUIRE(dev[h].count(name));
        CHECK(metrics_agree(name, value, dev[h].at(name)));
      }
      // The rotation matters: the same metric on the keys and queries as stored is another number.
      REQUIRE(ref.count("attn_logit_rel_error"));
      CHECK_FALSE(metrics_agree("attn_logit_rel_error", layer_metrics_reference(stored, head).at("attn_logit_rel_error"),
                                dev[h].at("attn_logit_rel_error")));
    }
  }
}

TEST_CASE("the bundled trace replayed with backend cuda gives the backend cpu results", "[cuda]") {
  require_gpu();
  const std::string trace = std::string(VIDKV_SOURCE_DIR) + "/traces/data/smollm2-135m-longdoc.h5";
  const fs::path dir = fs::temp_directory_path() / ("vidkv-cuda-replay-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  int compared = 0;
  for (const auto& p : list_presets()) {
    const ConfigNode doc = load_preset(p.name, ConfigNode::scalar(p.name));
    const KvCodec codec(test::builtin_registry().make_quantizer(doc.at("codec").at("key")),
                        test::builtin_registry().make_quantizer(doc.at("codec").at("value")));
    const std::string why = cuda_exact(codec, BlockShape{3, 1024, 64});
    if (!why.empty()) {
      std::cout << "[cuda] skipped preset " << p.name << ": " << why << "\n";
      continue;
    }
    INFO("preset " << p.name);
    std::vector<std::vector<ResultRow>> rows;
    for (const char* backend : {"cpu", "cuda"}) {
      const fs::path yaml = dir / (p.name + "-" + backend + ".yaml");
      std::ofstream(yaml) << "name: " << p.name << "-" << backend << "\ntraces: [\"" << trace << "\"]\nbackend: " << backend
                          << "\ncodec: {preset: " << p.name << "}\nmetrics: [all]\n";
      const ExperimentPlan plan = plan_experiment(yaml.string(), {}, test::builtin_registry());
      RunOptions options;
      options.out_dir = (dir / (p.name + "-" + backend)).string();
      options.progress = false;
      rows.push_back(run_experiment(plan, options, test::builtin_registry()).rows);
      if (std::string(backend) == "cuda") {  // provenance says where it ran and which kernels
        std::ifstream in(fs::path(options.out_dir) / "provenance.json");
        const std::string prov((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        CHECK(prov.find("\"backend\": \"cuda\"") != std::string::npos);
        CHECK(prov.find("\"metrics_device\"") != std::string::npos);
        CHECK(prov.find(":cuda") != std::string::npos);
      }
    }
    check_backend_rows(rows[0], rows[1]);
    // The bundled trace has generated tokens: both backends have the decode-step metrics (compared above), the
    // headline in the trace's aggregate row among them.
    bool headline = false;
    for (const ResultRow& r : rows[1]) headline = headline || r.get("decode_attn_out_depth_error") != nullptr;
    CHECK(headline);
    ++compared;
  }
  fs::remove_all(dir);
  if (compared == 0) VIDKV_SKIP("no preset runs exactly on CUDA yet");
}
