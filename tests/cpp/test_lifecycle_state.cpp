// LayerCache copies, crop and state()/restore() (cache_lifecycle.h, cache_lifecycle_state.cpp): the live hook's
// beam search, crop and pickle. Property tests with the fixture codec (half_step, 1 byte per element; 2 heads, 3
// channels, G = 4, R = 8, fp16 residual): whatever is copied, cropped or restored must continue exactly like the
// cache it came from, byte for byte (same blocks, same materialized values), under both ExactTokens policies.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "catch.h"
#include "fixture_quantizers.h"
#include "layer_cache_compare.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

constexpr std::int64_t kHeads = 2, kChannels = 3;

KvCodec half_step_codec() {
  static const PluginRegistry r = vidkv::test::fixture_registry();
  return KvCodec(r.make_quantizer(map({{"type", scalar("half_step")}})),
                 r.make_quantizer(map({{"type", scalar("half_step")}})));
}

// [heads, end - begin, channels] inputs of tokens [begin, end): distinct, non-integer values (0.3 steps).
std::vector<float> inputs(std::int64_t begin, std::int64_t end, float sign) {
  std::vector<float> out;
  for (std::int64_t h = 0; h < kHeads; ++h)
    for (std::int64_t t = begin; t < end; ++t)
      for (std::int64_t c = 0; c < kChannels; ++c) out.push_back(sign * (0.3f * static_cast<float>(t) + 7.0f * h + 0.1f * c));
  return out;
}

void append(LayerCache& cache, std::int64_t n) {
  const std::int64_t t = cache.tokens();
  cache.append(inputs(t, t + n, 1.0f).data(), inputs(t, t + n, -1.0f).data(), n);
}

LifecycleParams lifecycle(LifecycleType type) {
  LifecycleParams p;
  p.type = type;
  p.group = 4;
  p.residual = 8;
  p.residual_dtype = ResidualDType::f16;
  return p;
}

}  // namespace

TEST_CASE("LayerCache copy, restore and residual crop continue like the original", "[lifecycle][state]") {
  const KvCodec c = half_step_codec();
  for (const LifecycleType type : {LifecycleType::paper, LifecycleType::release, LifecycleType::kivi})
    for (const ExactTokens exact : {ExactTokens::all, ExactTokens::residual}) {
      CAPTURE(static_cast<int>(type), static_cast<int>(exact));
      TraceTokens meta = TraceTokens::uniform(64);
      TokenContext ctx;
      ctx.tokens = &meta;
      LayerCache original(c, lifecycle(type), kHeads, kChannels, ctx, DType::f16, Execution::cpu(), exact);
      append(original, 13);  // prefill 13
      for (int i = 0; i < 6; ++i) append(original, 1);  // T = 19

      LayerCache copy(original, c, ctx);
      LayerCache restored(c, lifecycle(type), kHeads, kChannels, ctx, DType::f16, Execution::cpu(), exact);
      const LayerCache::State s = original.state();
      // The rows the cache reads: every token under ::all; under ::residual the side's unquantized tokens only (the
      // store's dead rows of encoded tokens are not exported).
      CHECK(s.key_first == (exact == ExactTokens::all ? 0 : original.key_quantized()));
      CHECK(s.value_first == (exact == ExactTokens::all ? 0 : original.value_quantized()));
      CHECK(s.value_rows.size() == static_cast<std::size_t>(kHeads * (s.tokens - s.value_first) * kChannels));
      restored.restore(s);
      test::require_same_cache(copy, original);
      test::require_same_cache(restored, original);
      for (int i = 0; i < 11; ++i) {  // T = 30: crosses at least one R-block / requantization in every lifecycle
        append(original, 1);
        append(copy, 1);
        append(restored, 1);
      }
      test::require_same_cache(copy, original);
      test::require_same_cache(restored, original);

      // Exact crop: drop the last residual tokens, append them again: identical to never having cropped.
      const std::int64_t quantized = std::max(original.key_quantized(), original.value_quantized());
      REQUIRE(quantized < original.tokens());
      LayerCache cropped(original, c, ctx);
      cropped.crop(quantized);
      CHECK(cropped.tokens() == quantized);
      for (std::int64_t t = quantized; t < original.tokens(); ++t) append(cropped, 1);
      test::require_same_cache(cropped, original);
      if (quantized > 0) CHECK_THROWS_AS(cropped.crop(quantized - 1), ValueError);  // would cut a packed block
      CHECK_THROWS_AS(cropped.crop(cropped.tokens() + 1), ValueError);
    }
}

TEST_CASE("LayerCache restore refuses a state of another shape or codec", "[lifecycle][state]") {
  const KvCodec c = half_step_codec();
  LayerCache original(c, lifecycle(LifecycleType::paper), kHeads, kChannels, TokenContext{}, DType::f16);
  append(original, 13);
  LayerCache::State s = original.state();
  LayerCache wider(c, lifecycle(LifecycleType::paper), kHeads, kChannels + 1, TokenContext{}, DType::f16);
  CHECK_THROWS_AS(wider.restore(s), ShapeError);  // rows of another channel count
  s.key_blocks[0].bytes.pop_back();
  LayerCache same(c, lifecycle(LifecycleType::paper), kHeads, kChannels, TokenContext{}, DType::f16);
  CHECK_THROWS_AS(same.restore(s), ShapeError);  // a block whose byte count the codec does not lay out
  LayerCache full(c, lifecycle(LifecycleType::paper), kHeads, kChannels, TokenContext{}, DType::f16);
  append(full, 2);
  CHECK_THROWS_AS(full.restore(original.state()), ValueError);
}
