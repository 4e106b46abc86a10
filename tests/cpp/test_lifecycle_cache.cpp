// Cache lifecycles release, paper and kivi (algorithms.md 5) with the test-fixture codec: which tokens are
// quantized after a prefill of N and d decode steps, requantization counts, exact layout bytes, and LayerCache
// prefill + decode == replay_layer.
//
// Setup: 2 heads, 3 channels (|codes| <= 2 * 52.2 fits int8), G = 4, R = 8, half_step (1 byte per element) for K and V; residual fp16 (2 bytes).
// Key inputs t + 20 h + 0.2: a quantized token decodes to t + 20 h exactly (2x + 0.4 rounds down), a
// full-precision one to fp16(t + 20 h + 0.2), which differs, so the materialized cache tells them apart.
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "catch.h"
#include "layer_cache_compare.h"
#include "fixture_quantizers.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

const PluginRegistry& registry() {
  static const PluginRegistry r = vidkv::test::fixture_registry();
  return r;
}

KvCodec codec(const ConfigNode& key, const ConfigNode& value) {
  return KvCodec(registry().make_quantizer(key), registry().make_quantizer(value));
}
KvCodec half_step_codec() {
  return codec(map({{"type", scalar("half_step")}}), map({{"type", scalar("half_step")}}));
}

constexpr std::int64_t kHeads = 2, kChannels = 3;

float key_at(std::int64_t h, std::int64_t t, std::int64_t) { return static_cast<float>(t + 20 * h) + 0.2f; }
float value_at(std::int64_t h, std::int64_t t, std::int64_t c) { return -key_at(h, t, c) - static_cast<float>(c); }

// [heads, end - begin, channels] inputs of tokens [begin, end).
std::vector<float> inputs(std::int64_t begin, std::int64_t end, bool value) {
  std::vector<float> out;
  for (std::int64_t h = 0; h < kHeads; ++h)
    for (std::int64_t t = begin; t < end; ++t)
      for (std::int64_t c = 0; c < kChannels; ++c) out.push_back(value ? value_at(h, t, c) : key_at(h, t, c));
  return out;
}

// Number of leading tokens of a materialized side that decode as quantized; -1 if the cache is not
// "quantized prefix, then full-precision (fp16) suffix".
std::int64_t quantized_prefix(const std::vector<float>& m, std::int64_t tokens, bool value) {
  std::int64_t q = 0;
  bool in_residual = false;
  for (std::int64_t t = 0; t < tokens; ++t) {
    bool quant = true, full = true;
    for (std::int64_t h = 0; h < kHeads; ++h)
      for (std::int64_t c = 0; c < kChannels; ++c) {
        const float x = value ? value_at(h, t, c) : key_at(h, t, c);
        const float got = m[static_cast<std::size_t>((h * tokens + t) * kChannels + c)];
        quant = quant && got == std::nearbyint(2.0f * x) / 2.0f;
        full = full && got == round_to_dtype(x, DType::f16);
      }
    if (quant && !in_residual) {
      ++q;
    } else if (full) {
      in_residual = true;
    } else {
      return -1;
    }
  }
  return q;
}

struct State {
  std::int64_t key_quantized, value_quantized;
  std::size_t key_bytes, value_bytes;
  int requantizations;
};

State state_of(const LayerCache& cache) {
  std::vector<float> k, v;
  cache.materialize(k, v);
  return {quantized_prefix(k, cache.tokens(), false), quantized_prefix(v, cache.tokens(), true), cache.key_layout().bytes(),
          cache.value_layout().bytes(), cache.requantizations()};
}

LifecycleParams lifecycle(LifecycleType type) {
  LifecycleParams p;
  p.type = type;
  p.group = 4;
  p.residual = 8;
  return p;
}

void decode_steps(LayerCache& cache, int steps) {
  for (int i = 0; i < steps; ++i) {
    const std::int64_t t = cache.tokens();
    cache.append(inputs(t, t + 1, false).data(), inputs(t, t + 1, true).data(), 1);
  }
}

std::vector<std::string> section_names(const PackedLayout& l) {
  std::vector<std::string> out;
  for (const auto& s : l.sections()) out.push_back(s.name);
  return out;
}

}  // namespace

TEST_CASE("paper lifecycle: prefill N - N mod G, then append-only R-blocks", "[lifecycle][paper]") {
  const KvCodec c = half_step_codec();
  LayerCache cache(c, lifecycle(LifecycleType::paper), kHeads, kChannels, TokenContext{}, DType::f16);
  cache.append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
  // N = 10: [0, 8) quantized, 2 residual. Bytes: 8 * 2 * 3 * 1 + 2 * 2 * 3 * 2 = 48 + 24 = 72.
  State s = state_of(cache);
  CHECK(s.key_quantized == 8);
  CHECK(s.value_quantized == 8);
  CHECK(s.key_bytes == 72);
  CHECK(s.value_bytes == 72);
  decode_steps(cache, 5);  // T = 15, residual 7 < R: 48 + 7 * 6 * 2 = 132
  s = state_of(cache);
  CHECK(s.key_quantized == 8);
  CHECK(s.key_bytes == 132);
  decode_steps(cache, 1);  // T = 16, residual reaches 8: [8, 16) appended, no residual: 96
  s = state_of(cache);
  CHECK(s.key_quantized == 16);
  CHECK(s.value_quantized == 16);
  CHECK(s.key_bytes == 96);
  decode_steps(cache, 9);  // T = 25: [16, 24) appended at T = 24, token 24 residual: 144 + 12 = 156
  s = state_of(cache);
  CHECK(s.key_quantized == 24);
  CHECK(s.key_bytes == 156);
  CHECK(s.value_bytes == 156);
  CHECK(s.requantizations == 0);
  CHECK(section_names(cache.key_layout()) ==
        std::vector<std::string>{"block[0,8).codes", "block[8,16).codes", "block[16,24).codes", "residual.values"});
  CHECK(cache.key_layout().bytes_of(SectionKind::residual) == 12);
  CHECK(cache.key_layout().elements() == 25 * 6);
  CHECK(std::fabs(cache.key_layout().nominal_bits() - (24 * 8 + 1 * 16) / 25.0) < 1e-12);
}

TEST_CASE("release lifecycle: re-quantize the whole cache when the residual reaches R", "[lifecycle][release]") {
  const KvCodec c = half_step_codec();
  LayerCache cache(c, lifecycle(LifecycleType::release), kHeads, kChannels, TokenContext{}, DType::f16);
  cache.append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
  State s = state_of(cache);
  CHECK(s.key_quantized == 8);
  CHECK(s.key_bytes == 72);
  CHECK(s.requantizations == 0);
  decode_steps(cache, 6);  // T = 16: residual 8 -> everything re-encoded as one block [0, 16)
  s = state_of(cache);
  CHECK(s.key_quantized == 16);
  CHECK(s.value_quantized == 16);
  CHECK(s.key_bytes == 96);
  CHECK(s.requantizations == 1);
  CHECK(section_names(cache.key_layout()) == std::vector<std::string>{"block[0,16).codes"});
  decode_steps(cache, 9);  // T = 25: again at T = 24, one block [0, 24) + 1 residual token
  s = state_of(cache);
  CHECK(s.key_quantized == 24);
  CHECK(s.key_bytes == 156);
  CHECK(s.requantizations == 2);
  CHECK(section_names(cache.key_layout()) == std::vector<std::string>{"block[0,24).codes", "residual.values"});
}

TEST_CASE("release lifecycle re-encodes from the dequantized cache with fresh statistics", "[lifecycle][release]") {
  // Values through mean_sign (per-head mean |x| of the whole block): after the re-quantization at T = 16 the old
  // tokens share one new scale with the new ones, unlike the paper lifecycle where block [0, 8) keeps its own.
  const KvCodec c = codec(map({{"type", scalar("half_step")}}), map({{"type", scalar("mean_sign")}}));
  LayerCache release(c, lifecycle(LifecycleType::release), kHeads, kChannels, TokenContext{}, DType::f16);
  LayerCache paper(c, lifecycle(LifecycleType::paper), kHeads, kChannels, TokenContext{}, DType::f16);
  for (LayerCache* cache : {&release, &paper}) {
    cache->append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
    decode_steps(*cache, 6);
  }
  std::vector<float> k, vr, vp;
  release.materialize(k, vr);
  paper.materialize(k, vp);
  // Head 0, token 0 magnitude: paper = block [0, 8) scale; release = scale of the re-encoded 16 tokens, whose
  // first 8 are the dequantized values (all equal magnitude s0) and the next 8 the fp16 residual.
  // Block [0, 8) head 0: |v| = t + 0.2 + c over t < 8, c < 3: mean = 3.5 + 0.2 + 1 = 4.7.
  CHECK(std::fabs(std::fabs(vp[0]) - 4.7f) < 1e-5f);
  CHECK(std::fabs(vr[0]) != std::fabs(vp[0]));
  CHECK(std::fabs(vr[0]) == std::fabs(vr[static_cast<std::size_t>(15 * kChannels)]));  // token 0 and token 15 share it
}

TEST_CASE("kivi lifecycle: key R-blocks, value FIFO window of R tokens quantized one by one", "[lifecycle][kivi]") {
  const KvCodec c = half_step_codec();
  LayerCache cache(c, lifecycle(LifecycleType::kivi), kHeads, kChannels, TokenContext{}, DType::f16);
  cache.append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
  // Keys: N - N mod R = 8 quantized; values: N - R = 2 quantized, window [2, 10).
  State s = state_of(cache);
  CHECK(s.key_quantized == 8);
  CHECK(s.value_quantized == 2);
  CHECK(s.key_bytes == 48 + 24);
  CHECK(s.value_bytes == 12 + 8 * 12);
  decode_steps(cache, 1);  // T = 11: value token 2 leaves the window
  s = state_of(cache);
  CHECK(s.key_quantized == 8);
  CHECK(s.value_quantized == 3);
  decode_steps(cache, 5);  // T = 16: keys [8, 16); values [0, 8)
  s = state_of(cache);
  CHECK(s.key_quantized == 16);
  CHECK(s.value_quantized == 8);
  CHECK(s.key_bytes == 96);
  CHECK(s.value_bytes == 48 + 96);
  CHECK(section_names(cache.value_layout()) ==
        std::vector<std::string>{"block[0,2).codes", "block[2,3).codes", "block[3,4).codes", "block[4,5).codes",
                                 "block[5,6).codes", "block[6,7).codes", "block[7,8).codes", "residual.values"});
  // A long prefill: N = 20 -> keys [0, 16), values [0, 12).
  LayerCache big(c, lifecycle(LifecycleType::kivi), kHeads, kChannels, TokenContext{}, DType::f16);
  big.append(inputs(0, 20, false).data(), inputs(0, 20, true).data(), 20);
  s = state_of(big);
  CHECK(s.key_quantized == 16);
  CHECK(s.value_quantized == 12);
}

TEST_CASE("residual_dtype fp32 keeps residual tokens exact and counts 4 bytes each", "[lifecycle]") {
  const KvCodec c = half_step_codec();
  LifecycleParams p = lifecycle(LifecycleType::paper);
  p.residual_dtype = ResidualDType::f32;
  LayerCache cache(c, p, kHeads, kChannels, TokenContext{}, DType::f16);
  cache.append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
  CHECK(cache.key_layout().bytes() == 48 + 2 * 6 * 4);
  std::vector<float> k, v;
  cache.materialize(k, v);
  CHECK(k[9 * kChannels] == key_at(0, 9, 0));
}

TEST_CASE("prefill + decode through LayerCache equals replay_layer", "[lifecycle][replay]") {
  const BlockShape shape{kHeads, 30, kChannels};
  const std::vector<float> key = inputs(0, 30, false), value = inputs(0, 30, true);
  const KvCodec c = codec(map({{"type", scalar("mean_sign")}}), map({{"type", scalar("mean_sign")}}));
  for (LifecycleType type : {LifecycleType::release, LifecycleType::paper, LifecycleType::kivi}) {
    INFO("lifecycle " << static_cast<int>(type));
    LifecycleParams p = lifecycle(type);
    p.prefill_tokens = 10;
    const ReplayedLayer r = replay_layer(c, p, key.data(), value.data(), shape, TokenContext{}, DType::f16);
    LayerCache cache(c, p, kHeads, kChannels, TokenContext{}, DType::f16);
    cache.append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
    decode_steps(cache, 20);
    std::vector<float> k, v;
    cache.materialize(k, v);
    CHECK(r.key == k);
    CHECK(r.value == v);
    CHECK(r.key_layout.str() == cache.key_layout().str());
    CHECK(r.value_layout.str() == cache.value_layout().str());
    CHECK(r.requantizations == cache.requantizations());
    CHECK(r.requantizations == (type == LifecycleType::release ? 2 : 0));  // at T = 16 and T = 24
  }
  // The whole trace as one prefill (prefill_tokens -1): paper quantizes [0, 28), 2 tokens residual.
  const ReplayedLayer whole = replay_layer(c, lifecycle(LifecycleType::paper), key.data(), value.data(), shape, TokenContext{}, DType::f16);
  CHECK(whole.key_layout.bytes_of(SectionKind::residual) == 2 * 6 * 2);
  CHECK(whole.key_layout.sections().size() == 3);  // block[0,28).scales, block[0,28).codes, residual.values
}

TEST_CASE("protectors see the layer's full-precision keys through ctx.keys while the cache encodes", "[lifecycle][semantic_attention]") {
  // Values through mixed_token with semantic_attention (count 1) over 6 tokens: 0 system, 1..4 visual, 5 query.
  // One KV head, 2 query heads, head_dim 3; the query at token 5 is [0, 0, 0] for head 0 and [1, 0, 0] for head 1.
  // Keys t + 0.2 in channel 0: head 1 attends most to the largest key among tokens 0..5, i.e. token 5 (query)
  // and among the visual candidates token 4; head 0 is uniform. So token 4 is protected (mask bit 4).
  TraceTokens tt = TraceTokens::uniform(6, Modality::visual);
  tt.modality[0] = Modality::system_text;
  tt.modality[5] = Modality::query_text;
  LayerQueries qs;
  qs.heads = 2;
  qs.count = 1;
  qs.dim = 3;
  qs.data = {0, 0, 0, 1, 0, 0};
  qs.token_index = {5};
  TokenContext ctx;
  ctx.tokens = &tt;
  ctx.queries = &qs;
  const KvCodec c = codec(map({{"type", scalar("half_step")}}),
                          map({{"type", scalar("mixed_token")},
                               {"protector", map({{"type", scalar("semantic_attention")}, {"count", scalar("1")}})},
                               {"protected", map({{"type", scalar("half_step")}})},
                               {"rest", map({{"type", scalar("mean_sign")}})}}));
  LifecycleParams p = lifecycle(LifecycleType::paper);
  p.group = 2;
  std::vector<float> key, value;
  for (std::int64_t t = 0; t < 6; ++t)
    for (std::int64_t ch = 0; ch < 3; ++ch) {
      key.push_back(ch == 0 ? static_cast<float>(t) + 0.2f : 0.0f);
      value.push_back(static_cast<float>(t) + 0.5f * static_cast<float>(ch));
    }
  LayerCache cache(c, p, 1, 3, ctx, DType::f16);
  cache.append(key.data(), value.data(), 6);
  std::vector<float> k, v;
  cache.materialize(k, v);
  // Token 4 protected: its values [4, 4.5, 5] come back exactly; token 3 goes through mean_sign.
  CHECK(v[12] == 4.0f);
  CHECK(v[13] == 4.5f);
  CHECK(v[14] == 5.0f);
  CHECK(v[9] != 3.0f);
}

// half_step that records, per encode, how many tokens of keys ctx.keys showed (0: none), and says whether it reads
// them (Quantizer::reads_context_keys).
class KeysProbe : public vidkv::test::HalfStepQuantizer {
 public:
  explicit KeysProbe(bool reads) : HalfStepQuantizer(Params{}), reads_(reads) {}
  bool reads_context_keys() const override { return reads_; }
  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override {
    seen.push_back(ctx.keys.data != nullptr ? ctx.keys.tokens : 0);
    HalfStepQuantizer::encode(in, shape, ctx, out);
  }
  mutable std::vector<std::int64_t> seen;

 private:
  bool reads_;
};

TEST_CASE("the cache shows ctx.keys only to a codec whose plugins read them", "[lifecycle]") {
  // Paper lifecycle (every token kept exact), G = 4, R = 8: the prefill of 10 tokens encodes one block per side, the
  // append of 6 more another. When the value quantizer reads the keys, both sides' encodes see every cached token
  // (10, then 16); when neither quantizer reads them, no encode sees any: the cache does not copy them.
  for (const bool reads : {true, false}) {
    INFO("value quantizer reads ctx.keys: " << reads);
    auto key_q = std::make_unique<KeysProbe>(false);
    auto value_q = std::make_unique<KeysProbe>(reads);
    const KeysProbe& kp = *key_q;
    const KeysProbe& vp = *value_q;
    const KvCodec c(std::move(key_q), std::move(value_q));
    LayerCache cache(c, lifecycle(LifecycleType::paper), kHeads, kChannels, TokenContext{}, DType::f16);
    cache.append(inputs(0, 10, false).data(), inputs(0, 10, true).data(), 10);
    cache.append(inputs(10, 16, false).data(), inputs(10, 16, true).data(), 6);
    REQUIRE(!vp.seen.empty());
    REQUIRE(kp.seen.size() == vp.seen.size());
    for (std::size_t i = 0; i < vp.seen.size(); ++i) {
      CHECK(kp.seen[i] == (reads ? vp.seen[i] : 0));  // keys shown to the codec's encodes, both sides, or to none
      CHECK((vp.seen[i] > 0) == reads);
    }
    if (reads) CHECK(vp.seen.back() == 16);
  }
}

TEST_CASE("residual_dtype data keeps a bf16 model's 119808, an explicit fp16 residual is a ValueError naming where",
          "[lifecycle][overflow]") {
  // Value 119808 (= 234 * 512, a bf16 value, beyond fp16's 65504) at head 1, token 9, channel 2. N = 10, G = 4:
  // tokens 8 and 9 stay full precision. residual_dtype data with bf16 data keeps 119808 exactly (2 bytes per
  // element, as fp16 would); residual_dtype fp16 cannot hold it: a ValueError naming layer, KV head, token,
  // channel and the parameter. A non-finite value is a ValueError before anything is appended.
  const KvCodec c = half_step_codec();
  std::vector<float> key = inputs(0, 10, false), value = inputs(0, 10, true);
  const std::size_t at = static_cast<std::size_t>((1 * 10 + 9) * kChannels + 2);
  for (float* x : {&key[0], &value[0]})
    for (std::size_t i = 0; i < key.size(); ++i) x[i] = round_to_dtype(x[i], DType::bf16);
  value[at] = 119808.0f;
  LifecycleParams p = lifecycle(LifecycleType::paper);
  REQUIRE(p.residual_dtype == ResidualDType::data);
  LayerCache cache(c, p, kHeads, kChannels, TokenContext{}, DType::bf16);
  cache.append(key.data(), value.data(), 10);
  std::vector<float> k, v;
  cache.materialize(k, v);
  CHECK(v[at] == 119808.0f);
  CHECK(cache.value_layout().bytes() == 8 * 2 * 3 * 1 + 2 * 2 * 3 * 2);
  p.residual_dtype = ResidualDType::f16;
  TokenContext ctx;
  ctx.layer = 3;
  LayerCache narrow(c, p, kHeads, kChannels, ctx, DType::bf16);
  try {
    narrow.append(key.data(), value.data(), 10);
    FAIL("no error");
  } catch (const ValueError& e) {
    const std::string m = e.what();
    CHECK(m.find("layer 3, KV head 1, token 9, channel 2") != std::string::npos);
    CHECK(m.find("residual_dtype") != std::string::npos);
    CHECK(m.find("fp16") != std::string::npos);
    CHECK(m.find("set lifecycle residual_dtype: data") != std::string::npos);  // an explicit narrower dtype: advise data
  }
  // residual_dtype data on fp16 data: the value is beyond the data's own dtype, so the advice is the data itself.
  p.residual_dtype = ResidualDType::data;
  LayerCache own(c, p, kHeads, kChannels, ctx, DType::f16);
  try {
    own.append(key.data(), value.data(), 10);
    FAIL("no error");
  } catch (const ValueError& e) {
    const std::string m = e.what();
    CHECK(m.find("that is the cache's data dtype (residual_dtype: data)") != std::string::npos);
    CHECK(m.find("set lifecycle residual_dtype: data") == std::string::npos);
  }
  value[at] = std::nanf("");
  try {
    cache.append(key.data() + 0, value.data(), 10);
    FAIL("no error");
  } catch (const ValueError& e) {
    CHECK(std::string(e.what()).find("non-finite") != std::string::npos);
  }
  CHECK(cache.tokens() == 10);
}

TEST_CASE("ExactTokens::residual holds only the unquantized window and gives ExactTokens::all's bytes", "[lifecycle]") {
  // Same appends into two caches per lifecycle: prefill 21 tokens, then 60 decode steps. Under ::residual the cache
  // reads only the tokens not yet in a block on each side; their store keeps the rows of tokens already encoded
  // (dead) until an append needs the room, then moves the live rows to its front, so it holds at most 2 (R + 1)
  // rows per side. A move keeps the store (same address) and advances its first token; R = 8: after the one
  // growth of the first decode step (the prefill's store was cut to its live rows) every side of every lifecycle
  // moves at least twice in 60 steps and never reallocates again (KIVI's value window too: R + 1 rows per append).
  const KvCodec c = half_step_codec();
  for (LifecycleType type : {LifecycleType::paper, LifecycleType::release, LifecycleType::kivi}) {
    INFO("lifecycle " << static_cast<int>(type));
    const LifecycleParams p = lifecycle(type);
    LayerCache all(c, p, kHeads, kChannels, TokenContext{}, DType::f16);
    LayerCache window(c, p, kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual);
    for (auto* cache : {&all, &window}) cache->append(inputs(0, 21, false).data(), inputs(0, 21, true).data(), 21);
    struct Store {
      const void* data = nullptr;
      std::int64_t first = -1;
      int moves = 0, reallocations = 0;
    } key_store, value_store;
    const auto watch = [](Store& s, const LayerCache::SideRef& side, int step) {
      if (step >= 2) {  // from the state after the first decode step's growth
        if (side.full != s.data) ++s.reallocations;
        else if (side.first != s.first) ++s.moves;
      }
      s.data = side.full;
      s.first = side.first;
    };
    for (int step = 0; step <= 60; ++step) {
      watch(key_store, window.key_side(), step);
      watch(value_store, window.value_side(), step);
      const State a = state_of(all), w = state_of(window);
      CHECK(w.key_quantized == a.key_quantized);
      CHECK(w.value_quantized == a.value_quantized);
      CHECK(w.key_bytes == a.key_bytes);
      CHECK(w.value_bytes == a.value_bytes);
      test::require_same_cache(all, window);  // values, counters and every block's bytes
      CHECK(all.exact_key_tokens() == all.tokens());
      // The residual section: fp16 tokens of heads * channels elements (2 bytes each).
      const auto residual_tokens = [](const PackedLayout& l) {
        return static_cast<std::int64_t>(l.bytes_of(SectionKind::residual) / (kHeads * kChannels * 2));
      };
      CHECK(window.exact_key_tokens() == residual_tokens(window.key_layout()));
      CHECK(window.exact_value_tokens() == residual_tokens(window.value_layout()));
      // fp32 rows of heads * channels floats, at most 2 (R + 1) = 18 rows per side once the prefill's store is cut.
      CHECK(window.held_bytes().exact <= 2 * 18 * kHeads * kChannels * sizeof(float));
      if (step < 60) decode_steps(all, 1), decode_steps(window, 1);
    }
    CHECK(all.held_bytes().exact >= 2 * 81 * kHeads * kChannels * sizeof(float));
    for (const Store* s : {&key_store, &value_store}) {
      INFO((s == &key_store ? "key" : "value") << " store: " << s->moves << " moves, " << s->reallocations << " reallocations");
      CHECK(s->moves >= 2);
      CHECK(s->reallocations == 0);
    }
  }
}
