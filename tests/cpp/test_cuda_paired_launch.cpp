// KvCodec::encode_pair / decode_pair on CUDA (kv_codec.h): a layer's values after its keys with
// Execution::after_independent_kernel (unless VIDKV_CUDA_PAIRED_LAUNCH=off; the expected counts of late-waiting
// launches follow the switch: 0 with it off), so that the values' first kernel may do its work while the keys' last
// one finishes and wait for it at its end (dependent_launch.cuh, GridOrder). [cuda]: many layers' pairs enqueued back to
// back without a synchronisation, each followed at once by kernels that read what the pair wrote (a decode, the next
// pair), give the bytes and values of the same calls made one after the other; kivi-2's uniform values take the late
// wait (counted), and so does ternary's fast decode (vidkv-k1.5-v1.58's values) unless VIDKV_CUDA_TERNARY_LATE_WAIT=off;
// the other kernels ignore it. [cpu]: the pair on the cpu is the two calls.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "cuda_test_support.h"
#include "decode_attention_test_support.h"
#include "fixture_quantizers.h"
#include "test_registry.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/kv_codec.h"
#ifdef VIDKV_WITH_CUDA
#include "vidkv/core/cuda/late_wait_count.h"
#include "vidkv/plugins/quantizers/ternary/ternary_cuda.h"
#endif

using namespace vidkv;
using namespace vidkv::test;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

// Late-waiting launches so far, of every plugin's kernels (0 in builds without CUDA, whose [cuda] cases skip first).
std::int64_t late_waits() {
#ifdef VIDKV_WITH_CUDA
  return dependent_launch::late_wait_launches();
#else
  return 0;
#endif
}

// Whether ternary's fast decode takes the promise in this process (unless VIDKV_CUDA_TERNARY_LATE_WAIT=off).
bool ternary_late_wait() {
#ifdef VIDKV_WITH_CUDA
  return ternary_cuda::decode_waits_late();
#else
  return false;
#endif
}

// Whether this process pairs (on cuda unless VIDKV_CUDA_PAIRED_LAUNCH=off).
bool paired() { return KvCodec::pairs_values(Execution::cuda()); }

// fp16 bits of `n` Gaussian values (every 9th 6x wider), a different draw per seed.
std::vector<std::uint8_t> random_half_bytes(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> x(n);
  for (std::size_t i = 0; i < n; ++i) x[i] = dist(rng) * (i % 9 == 4 ? 6.0f : 1.0f);
  return to_dtype_bytes(x, DType::f16);
}

}  // namespace

TEST_CASE("paired key / value calls on CUDA give the bytes and values of the calls one after the other", "[cuda]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const BlockShape shape{4, 2048, 128};
  const int layers = 12;
  const auto elements = static_cast<std::size_t>(shape.elements());
  const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
  const Execution ex = Execution::cuda();
  // kivi-2: uniform values on the token axis, late waits in both directions; kivi-2-fragment: its encode's first
  // kernel waits late, its decode starts with the fragment permutation (waits first); vidkv-k1.5-v1.58: ternary
  // values, whose encode ignores the promise (its first operation fills a scratch allocated in the call) and whose
  // fast channel-axis decode waits late unless VIDKV_CUDA_TERNARY_LATE_WAIT=off; vidkv-k1.5-v1.58-fragment: ternary
  // values in the fragment packing, whose decode starts with the permutation (no late wait either way).
  for (const char* name : {"kivi-2", "kivi-2-fragment", "vidkv-k1.5-v1.58", "vidkv-k1.5-v1.58-fragment"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const KvCodec& codec = preset.codec;
    const TokenContext ctx;
    const std::size_t key_bytes = codec.key().layout(shape, ctx).bytes(), value_bytes = codec.value().layout(shape, ctx).bytes();
    std::vector<DeviceBuffer> k, v;
    for (int l = 0; l < layers; ++l) {
      k.push_back(upload(random_half_bytes(elements, 100 + 2 * static_cast<std::uint64_t>(l))));
      v.push_back(upload(random_half_bytes(elements, 101 + 2 * static_cast<std::uint64_t>(l))));
    }
    auto half_view = [&](const DeviceBuffer& b) { return TensorView{b.data(), DType::f16, Device::cuda, dims}; };
    // Both ways into separate buffers: [0] one call after the other, [1] paired.
    std::vector<DeviceBuffer> kb[2], vb[2], kd[2], vd[2], vcopy;
    for (int way = 0; way < 2; ++way)
      for (int l = 0; l < layers; ++l) {
        kb[way].push_back(poisoned(key_bytes));
        vb[way].push_back(poisoned(value_bytes));
        kd[way].push_back(poisoned(elements * 2));
        vd[way].push_back(poisoned(elements * 2));
      }
    for (int l = 0; l < layers; ++l) vcopy.push_back(poisoned(value_bytes));
    synchronize();
    for (int l = 0; l < layers; ++l) {
      codec.key().encode_view(half_view(k[l]), ctx, kb[0][l].as<std::uint8_t>(), ex);
      codec.value().encode_view(half_view(v[l]), ctx, vb[0][l].as<std::uint8_t>(), ex);
      codec.key().decode_view(kb[0][l].as<const std::uint8_t>(), ctx, half_view(kd[0][l]), ex);
      codec.value().decode_view(vb[0][l].as<const std::uint8_t>(), ctx, half_view(vd[0][l]), ex);
    }
    const std::int64_t before = late_waits();
    // Paired, back to back: each layer's encode pair, then at once a copy of the values' bytes (an operation after the
    // late kernel that reads what it wrote) and the decode pair reading both sides' bytes.
    for (int l = 0; l < layers; ++l) {
      codec.encode_pair(half_view(k[l]), half_view(v[l]), ctx, kb[1][l].as<std::uint8_t>(), vb[1][l].as<std::uint8_t>(), ex);
      copy_device_to_device(vcopy[l].data(), vb[1][l].data(), value_bytes);
      codec.decode_pair(kb[1][l].as<const std::uint8_t>(), vb[1][l].as<const std::uint8_t>(), ctx, half_view(kd[1][l]),
                        half_view(vd[1][l]), ex);
    }
    synchronize();
    const std::int64_t late = late_waits() - before;
    const std::string value_tier = codec.value().tier(Device::cuda, shape).name;
    INFO("value tier " << value_tier << ", late-waiting launches " << late);
    const std::string n = name;
    const std::int64_t per_layer = !paired()                                       ? 0
                                   : n == "kivi-2"                                 ? 2
                                   : n == "kivi-2-fragment"                        ? 1
                                   : n == "vidkv-k1.5-v1.58" && ternary_late_wait() ? 1
                                                                                   : 0;
    CHECK(late == per_layer * layers);
    for (int l = 0; l < layers; ++l) {
      INFO("layer " << l);
      REQUIRE(first_difference(download(kb[0][l].data(), key_bytes), download(kb[1][l].data(), key_bytes)) == -1);
      const std::vector<std::uint8_t> values = download(vb[0][l].data(), value_bytes);
      REQUIRE(first_difference(values, download(vb[1][l].data(), value_bytes)) == -1);
      REQUIRE(first_difference(values, download(vcopy[l].data(), value_bytes)) == -1);
      REQUIRE(first_difference(download(kd[0][l].data(), elements * 2), download(kd[1][l].data(), elements * 2)) == -1);
      REQUIRE(first_difference(download(vd[0][l].data(), elements * 2), download(vd[1][l].data(), elements * 2)) == -1);
    }
    // And the values' bytes are the CPU reference's (uniform and ternary: bit-identical on every device).
    const std::vector<float> x = from_dtype_bytes(random_half_bytes(elements, 101), DType::f16);
    std::vector<std::uint8_t> want(value_bytes);
    codec.value().encode(x.data(), shape, ctx, want.data());
    CHECK(first_difference(want, download(vb[1][0].data(), value_bytes)) == -1);
  }
}

TEST_CASE("paired key / value calls on the cpu are the two calls", "[cpu]") {
  const PresetCodec preset = preset_codec("kivi-2", CpuImplementation::reference);
  const BlockShape shape{2, 64, 32};
  const TokenContext ctx;
  const auto elements = static_cast<std::size_t>(shape.elements());
  const std::vector<float> k = from_dtype_bytes(random_half_bytes(elements, 1), DType::f16),
                           v = from_dtype_bytes(random_half_bytes(elements, 2), DType::f16);
  const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
  auto view = [&](const std::vector<float>& x) { return TensorView{const_cast<float*>(x.data()), DType::f32, Device::cpu, dims}; };
  std::vector<std::uint8_t> kb(preset.codec.key().layout(shape, ctx).bytes()), vb(preset.codec.value().layout(shape, ctx).bytes());
  preset.codec.encode_pair(view(k), view(v), ctx, kb.data(), vb.data(), Execution::cpu());
  std::vector<std::uint8_t> kw(kb.size()), vw(vb.size());
  preset.codec.key().encode(k.data(), shape, ctx, kw.data());
  preset.codec.value().encode(v.data(), shape, ctx, vw.data());
  CHECK(kb == kw);
  CHECK(vb == vw);
  std::vector<float> kd(elements), vd(elements);
  preset.codec.decode_pair(kb.data(), vb.data(), ctx, TensorView{kd.data(), DType::f32, Device::cpu, dims},
                           TensorView{vd.data(), DType::f32, Device::cpu, dims}, Execution::cpu());
  std::vector<float> kwant(elements), vwant(elements);
  preset.codec.key().decode(kw.data(), shape, ctx, kwant.data());
  preset.codec.value().decode(vw.data(), shape, ctx, vwant.data());
  CHECK(kd == kwant);
  CHECK(vd == vwant);
}

TEST_CASE("a LayerCache on CUDA pairs its prefill's encodes and its materialize's decodes, with the cpu cache's values",
          "[cuda]") {
  // kivi-2 (keys uniform on the channel axis, values uniform on the token axis) under its lifecycle, 1000 tokens:
  // the prefill encodes keys [0, 896) and values [0, 872) as a pair (quantize_range_pair: one late-waiting values'
  // encode), then materialize decodes the keys' block, then the values' (one late-waiting fp16 decode; into fp32 the
  // values' decode kernel does not take the promise: no late wait). The fp16 views equal the cpu cache's fp32 values
  // rounded to fp16, the fp32 views those values.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const PresetCodec preset = preset_codec("kivi-2", CpuImplementation::reference);
  const LayerInput in = synthetic_input(4, 1000, 128, 5);
  LayerCache cpu(preset.codec, preset.lifecycle, in.heads, in.channels, TokenContext{}, DType::f16, Execution::cpu(),
                 ExactTokens::residual);
  cpu.append(in.key.data(), in.value.data(), in.tokens);
  std::vector<float> want_k, want_v;
  cpu.materialize(want_k, want_v);
  const std::int64_t before = late_waits();
  LayerCache gpu(preset.codec, preset.lifecycle, in.heads, in.channels, TokenContext{}, DType::f16, Execution::cuda(),
                 ExactTokens::residual);
  gpu.append(in.key.data(), in.value.data(), in.tokens);
  synchronize();
  CHECK(late_waits() - before == (paired() ? 1 : 0));
  const std::vector<std::int64_t> dims{in.heads, in.tokens, in.channels};
  const std::size_t n = want_k.size();
  for (const DType t : {DType::f16, DType::f32}) {
    INFO(dtype_name(t) << " views");
    DeviceBuffer k = poisoned(n * static_cast<std::size_t>(dtype_size(t))), v = poisoned(n * static_cast<std::size_t>(dtype_size(t)));
    const std::int64_t start = late_waits();
    gpu.materialize(TensorView{k.data(), t, Device::cuda, dims}, TensorView{v.data(), t, Device::cuda, dims});
    synchronize();
    CHECK(late_waits() - start == (paired() && t == DType::f16 ? 1 : 0));
    const std::vector<float> got_k = from_dtype_bytes(download(k.data(), k.bytes()), t);
    const std::vector<float> got_v = from_dtype_bytes(download(v.data(), v.bytes()), t);
    std::size_t differ = 0;
    for (std::size_t i = 0; i < n; ++i)
      differ += (got_k[i] != round_to_dtype(want_k[i], t)) + (got_v[i] != round_to_dtype(want_v[i], t));
    CHECK(differ == 0);
  }
}

TEST_CASE("a composite's children do not take a paired call's promise", "[cuda]") {
  // mixed_token values whose children are token-axis uniform (the kernels that honour the promise): the pair's values'
  // call carries it, mixed_token gives its children a fresh Execution, so no launch waits late.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const PluginRegistry& reg = builtin_registry(CpuImplementation::reference);
  auto uniform = [](const char* bits, const char* axis) {
    return map({{"type", scalar("uniform")}, {"bits", scalar(bits)}, {"group", scalar("32")}, {"axis", scalar(axis)}});
  };
  const ConfigNode key = uniform("2", "channel");
  const ConfigNode value = map({{"type", scalar("mixed_token")},
                                {"protector", map({{"type", scalar("random")}, {"fraction", scalar("0.25")}, {"candidates", scalar("all")}})},
                                {"protected", uniform("4", "token")},
                                {"rest", uniform("2", "token")}});
  const KvCodec codec(reg.make_quantizer(key), reg.make_quantizer(value));
  const BlockShape shape{4, 512, 128};
  const auto elements = static_cast<std::size_t>(shape.elements());
  const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
  DeviceBuffer k = upload(random_half_bytes(elements, 7)), v = upload(random_half_bytes(elements, 8));
  const TokenContext ctx;
  DeviceBuffer kb = poisoned(codec.key().layout(shape, ctx).bytes()), vb = poisoned(codec.value().layout(shape, ctx).bytes());
  const std::int64_t before = late_waits();
  codec.encode_pair(TensorView{k.data(), DType::f16, Device::cuda, dims}, TensorView{v.data(), DType::f16, Device::cuda, dims}, ctx,
                    kb.as<std::uint8_t>(), vb.as<std::uint8_t>(), Execution::cuda());
  synchronize();
  CHECK(late_waits() - before == 0);
  const std::vector<float> x = from_dtype_bytes(random_half_bytes(elements, 8), DType::f16);
  std::vector<std::uint8_t> want(codec.value().layout(shape, ctx).bytes());
  codec.value().encode(x.data(), shape, ctx, want.data());
  CHECK(first_difference(want, download(vb.data(), want.size())) == -1);
}
