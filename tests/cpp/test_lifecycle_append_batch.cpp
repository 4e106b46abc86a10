// LayerCache::append_batch (core/cache_lifecycle.h), the live hook's decode step at batch > 1: one append per cache
// with the results of appending to each in turn. On cpu it is those appends; on cuda every cache's rows go into its
// store by one launch before the caches' encodes, and the caches must end byte for byte where appending one after
// the other leaves them. Bad views are refused before anything is appended, naming the cache's index.
//
// Setup: 3 caches of 2 KV heads x 64 channels, fp16 inputs, prefills of 70, 101 and 133 tokens (different window
// phases), then 150 decode steps of one token per cache: past R = 128, so kivi keys flush R-blocks, the paper
// lifecycle appends its R-blocks, and kivi values leave the window each step (value_block 1: encode and merge) or 32
// at a time (value_block 32).
#include <cstdint>
#include <memory>
#include <vector>

#include "catch.h"
#include "cuda_test_support.h"
#include "decode_attention_test_support.h"
#include "layer_cache_compare.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

constexpr std::int64_t kHeads = 2, kChannels = 64, kSteps = 150;
constexpr std::int64_t kPrefill[] = {70, 101, 133};

// The presets the live hook runs: KIVI's lifecycle (value_block 1, and 32 as kivi-2-fragment and a kivi-2 variant
// take it) and VidKV's paper lifecycle.
struct Case {
  const char* preset;
  int value_block;
};
constexpr Case kCases[] = {{"kivi-2", 1}, {"kivi-2-fragment", 32}, {"kivi-2", 32}, {"vidkv-k1.5-v1.58", 1}};
PresetCodec codec_of(const Case& c) {
  PresetCodec pc = preset_codec(c.preset);
  pc.lifecycle.value_block = c.value_block;
  return pc;
}

// Tokens [from, to) of an input as [heads, to - from, channels] fp16 bytes (the model's dtype).
struct Rows {
  std::vector<std::uint8_t> key, value;
};
Rows rows(const LayerInput& in, std::int64_t from, std::int64_t to) {
  return {to_dtype_bytes(token_rows(in, in.key, from, to), DType::f16), to_dtype_bytes(token_rows(in, in.value, from, to), DType::f16)};
}

// Runs the prefills and kSteps steps on caches of `ex` twice: appending to each cache in turn (`apart`) and through
// append_batch (`together`). Views of host bytes on cpu, of device copies on cuda.
void run_both(const PresetCodec& pc, const Execution& ex, std::vector<std::unique_ptr<LayerCache>>& apart,
              std::vector<std::unique_ptr<LayerCache>>& together) {
  std::vector<LayerInput> inputs;
  for (std::size_t b = 0; b < 3; ++b) inputs.push_back(synthetic_input(kHeads, kPrefill[b] + kSteps, kChannels, 70 + b));
  for (auto* set : {&apart, &together})
    for (std::size_t b = 0; b < 3; ++b)
      set->push_back(std::make_unique<LayerCache>(pc.codec, pc.lifecycle, kHeads, kChannels, TokenContext{}, DType::f16, ex,
                                                  ExactTokens::residual));
  const auto views = [&](std::vector<Rows>& host, std::vector<DeviceBuffer>& device, std::vector<TensorView>& keys,
                         std::vector<TensorView>& values, std::int64_t step) {
    for (std::size_t b = 0; b < 3; ++b) {
      const std::int64_t from = step < 0 ? 0 : kPrefill[b] + step, to = step < 0 ? kPrefill[b] : from + 1;
      host.push_back(rows(inputs[b], from, to));
      const BlockShape s{kHeads, to - from, kChannels};
      void *k = host.back().key.data(), *v = host.back().value.data();
      if (ex.on_cuda()) {
        device.push_back(upload(host.back().key));
        k = device.back().data();
        device.push_back(upload(host.back().value));
        v = device.back().data();
      }
      keys.push_back(view_of(k, DType::f16, ex.device, s));
      values.push_back(view_of(v, DType::f16, ex.device, s));
    }
  };
  for (std::int64_t step = -1; step < kSteps; ++step) {  // -1: the prefill
    std::vector<Rows> host;
    host.reserve(3);
    std::vector<DeviceBuffer> device;
    std::vector<TensorView> keys, values;
    views(host, device, keys, values, step);
    for (std::size_t b = 0; b < 3; ++b) apart[b]->append(keys[b], values[b], 0, keys[b].shape[1]);
    LayerCache::append_batch({together[0].get(), together[1].get(), together[2].get()}, keys, values);
  }
}

}  // namespace

TEST_CASE("append_batch on cpu caches equals appending to each cache in turn", "[lifecycle]") {
  for (const Case& c : kCases) {
    INFO(c.preset << ", value_block " << c.value_block);
    const PresetCodec pc = codec_of(c);
    std::vector<std::unique_ptr<LayerCache>> apart, together;
    run_both(pc, Execution::cpu(), apart, together);
    for (std::size_t b = 0; b < 3; ++b) require_same_cache(*together[b], *apart[b]);
    CHECK(together[0]->tokens() == kPrefill[0] + kSteps);
  }
}

TEST_CASE("append_batch refuses a bad view by the cache's index before appending anything", "[lifecycle][errors]") {
  const PresetCodec pc = preset_codec("kivi-2");
  std::vector<std::unique_ptr<LayerCache>> caches;
  for (int b = 0; b < 3; ++b)
    caches.push_back(std::make_unique<LayerCache>(pc.codec, pc.lifecycle, kHeads, kChannels, TokenContext{}, DType::f16));
  std::vector<std::uint8_t> good(static_cast<std::size_t>(kHeads * kChannels) * 2), bad(static_cast<std::size_t>(kHeads * 32) * 2);
  const TensorView g = view_of(good.data(), DType::f16, Device::cpu, BlockShape{kHeads, 1, kChannels});
  const TensorView narrow = view_of(bad.data(), DType::f16, Device::cpu, BlockShape{kHeads, 1, 32});  // 32 channels
  const std::vector<LayerCache*> ptrs{caches[0].get(), caches[1].get(), caches[2].get()};
  CHECK_THROWS_AS(LayerCache::append_batch(ptrs, {g, g, narrow}, {g, g, g}), ShapeError);
  CHECK_THROWS_WITH(LayerCache::append_batch(ptrs, {g, g, narrow}, {g, g, g}), VIDKV_CONTAINS("cache 2: layer cache: key must be [2, tokens, 64]"));
  CHECK_THROWS_WITH(LayerCache::append_batch(ptrs, {g, g}, {g, g}), VIDKV_CONTAINS("3 caches, 2 key views, 2 value views"));
  for (const auto& c : caches) CHECK(c->tokens() == 0);  // nothing appended
}

TEST_CASE("append_batch on cuda caches (one launch for the batch's rows) ends byte for byte where appends in turn do", "[cuda][lifecycle]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  for (const Case& c : kCases) {
    INFO(c.preset << ", value_block " << c.value_block);
    const PresetCodec pc = codec_of(c);
    std::vector<std::unique_ptr<LayerCache>> apart, together;
    run_both(pc, Execution::cuda(), apart, together);
    for (std::size_t b = 0; b < 3; ++b) require_same_cache(*together[b], *apart[b]);  // counters, values, every block's bytes
  }
}

TEST_CASE("append_batch with a cache named twice appends its rows one after the other", "[lifecycle]") {
  // The one-launch path would give both rows the same store rows; a repeated cache takes the appends in turn.
  const PresetCodec pc = preset_codec("kivi-2");
  const LayerInput in = synthetic_input(kHeads, 202, kChannels, 77);
  for (const bool cuda : {false, true}) {
    if (cuda && cuda_device_count() == 0) continue;  // the cpu half runs everywhere
    INFO((cuda ? "cuda" : "cpu"));
    const Execution ex = cuda ? Execution::cuda() : Execution::cpu();
    LayerCache twice(pc.codec, pc.lifecycle, kHeads, kChannels, TokenContext{}, DType::f16, ex, ExactTokens::residual);
    LayerCache turns(pc.codec, pc.lifecycle, kHeads, kChannels, TokenContext{}, DType::f16, ex, ExactTokens::residual);
    std::vector<Rows> host{rows(in, 0, 200), rows(in, 200, 201), rows(in, 201, 202)};
    std::vector<DeviceBuffer> device;
    std::vector<TensorView> k, v;
    for (std::size_t i = 0; i < host.size(); ++i) {
      const BlockShape s{kHeads, i == 0 ? 200 : 1, kChannels};
      void *kd = host[i].key.data(), *vd = host[i].value.data();
      if (cuda) {
        device.push_back(upload(host[i].key));
        kd = device.back().data();
        device.push_back(upload(host[i].value));
        vd = device.back().data();
      }
      k.push_back(view_of(kd, DType::f16, ex.device, s));
      v.push_back(view_of(vd, DType::f16, ex.device, s));
    }
    twice.append(k[0], v[0], 0, 200);
    turns.append(k[0], v[0], 0, 200);
    LayerCache::append_batch({&twice, &twice}, {k[1], k[2]}, {v[1], v[2]});
    turns.append(k[1], v[1], 0, 1);
    turns.append(k[2], v[2], 0, 1);
    REQUIRE(twice.tokens() == 202);
    require_same_cache(twice, turns);
  }
}
