// The device-aware entry points of LayerCache and replay_layer (core/cache_lifecycle.h) on the host: views of
// fp32, fp16 and bf16 with token ranges give exactly what the fp32 pointer API gives on the same values (the CPU
// behaviour of the backend seam), materialize() into fp16 / bf16 views rounds the fp32 cache, and bad views are
// refused with ShapeError. The device side of the same API is compared with this one in test_cuda_replay.cpp.
#include <cstdint>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

KvCodec uniform_codec() {
  return KvCodec(make("uniform", {{"bits", "2"}, {"axis", "channel"}}), make("uniform", {{"bits", "2"}, {"axis", "token"}}));
}

LifecycleParams lifecycle(LifecycleType type) {
  LifecycleParams p;
  p.type = type;
  p.group = 32;
  p.residual = 40;
  p.prefill_tokens = 50;  // then 70 decode steps: paper appends blocks, release re-quantizes, kivi slides its window
  return p;
}

// [heads, tokens, channels] values in `dtype` (stored) and as the fp32 values they hold.
struct Input {
  std::vector<std::uint8_t> stored;
  std::vector<float> values;
};
Input input(const BlockShape& s, std::uint64_t seed, DType dtype) {
  Input in;
  in.values = gaussian(std::size_t(s.elements()), seed);
  in.stored.resize(in.values.size() * std::size_t(dtype_size(dtype)));
  for (std::size_t i = 0; i < in.values.size(); ++i) {
    in.values[i] = round_to_dtype(in.values[i], dtype);
    store_from_float(in.stored.data(), dtype, i, in.values[i]);
  }
  return in;
}

}  // namespace

TEST_CASE("LayerCache and replay_layer on host views equal the fp32 pointer API", "[lifecycle]") {
  const BlockShape shape{2, 120, 32};
  const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
  const KvCodec codec = uniform_codec();
  const TraceTokens tokens = TraceTokens::uniform(shape.tokens);
  TokenContext ctx;
  ctx.tokens = &tokens;
  for (LifecycleType type : {LifecycleType::release, LifecycleType::paper, LifecycleType::kivi}) {
    for (DType dtype : {DType::f32, DType::f16, DType::bf16}) {
      INFO("lifecycle " << static_cast<int>(type) << ", input " << dtype_name(dtype));
      const LifecycleParams lc = lifecycle(type);
      Input k = input(shape, 5, dtype), v = input(shape, 6, dtype);
      const ReplayedLayer want = replay_layer(codec, lc, k.values.data(), v.values.data(), shape, ctx, dtype);
      std::vector<float> gk(k.values.size()), gv(k.values.size());
      const ReplayedLayer got = replay_layer(codec, lc, TensorView{k.stored.data(), dtype, Device::cpu, dims},
                                             TensorView{v.stored.data(), dtype, Device::cpu, dims}, ctx,
                                             TensorView{gk.data(), DType::f32, Device::cpu, dims},
                                             TensorView{gv.data(), DType::f32, Device::cpu, dims}, Execution::cpu(), dtype);
      CHECK(gk == want.key);
      CHECK(gv == want.value);
      CHECK(got.key_layout.bytes() == want.key_layout.bytes());
      CHECK(got.value_layout.bytes() == want.value_layout.bytes());
      CHECK(got.requantizations == want.requantizations);

      // materialize into a view of the input's dtype: the fp32 cache rounded to nearest even.
      LayerCache cache(codec, lc, shape.heads, shape.channels, ctx, dtype);
      cache.append(TensorView{k.stored.data(), dtype, Device::cpu, dims}, TensorView{v.stored.data(), dtype, Device::cpu, dims}, 0,
                   shape.tokens);
      std::vector<float> fk, fv;
      cache.materialize(fk, fv);
      std::vector<std::uint8_t> tk(k.stored.size()), tv(k.stored.size());
      cache.materialize(TensorView{tk.data(), dtype, Device::cpu, dims}, TensorView{tv.data(), dtype, Device::cpu, dims});
      for (std::size_t i = 0; i < fk.size(); ++i) {
        CHECK(load_as_float(tk.data(), dtype, i) == round_to_dtype(fk[i], dtype));
        CHECK(load_as_float(tv.data(), dtype, i) == round_to_dtype(fv[i], dtype));
      }
    }
  }
}

TEST_CASE("LayerCache refuses views of another device, shape or token range", "[lifecycle]") {
  const KvCodec codec = uniform_codec();
  LayerCache cache(codec, lifecycle(LifecycleType::paper), 2, 32, TokenContext{}, DType::f32);
  std::vector<float> a(2 * 10 * 32), b(2 * 10 * 16);
  const TensorView ok{a.data(), DType::f32, Device::cpu, {2, 10, 32}};
  CHECK_THROWS_AS(cache.append(TensorView{a.data(), DType::f32, Device::cuda, {2, 10, 32}}, ok, 0, 10), ShapeError);
  CHECK_THROWS_AS(cache.append(TensorView{b.data(), DType::f32, Device::cpu, {2, 10, 16}}, ok, 0, 10), ShapeError);
  CHECK_THROWS_AS(cache.append(ok, ok, 5, 11), ShapeError);
  CHECK_THROWS_AS(cache.materialize(TensorView{a.data(), DType::f32, Device::cpu, {2, 10, 32}}, ok), ShapeError);  // holds 0 tokens
#ifndef VIDKV_WITH_CUDA
  CHECK_THROWS_AS(LayerCache(codec, lifecycle(LifecycleType::paper), 2, 32, TokenContext{}, DType::f32, Execution::cuda()), NotSupportedError);
#endif
}
