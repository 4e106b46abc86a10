// Golden byte tests of the composite quantizers mixed_channel and mixed_token, with the test-fixture children of
// fixture_quantizers.h (half_step: int8 multiples of 0.5; mean_sign: per-head fp32 mean |x| + 1 bit per element).
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <tuple>
#include <algorithm>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "fixture_quantizers.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using vidkv::test::encode_guarded;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

const PluginRegistry& registry() {
  static const PluginRegistry r = vidkv::test::fixture_registry();
  return r;
}

std::vector<float> decode_all(const Quantizer& q, const std::vector<std::uint8_t>& bytes, const BlockShape& shape, const TokenContext& ctx) {
  std::vector<float> out(static_cast<std::size_t>(shape.elements()), -999.0f);
  q.decode(bytes.data(), shape, ctx, out.data());
  return out;
}

}  // namespace

TEST_CASE("mixed_channel: golden bytes, layer scope", "[mixed_channel]") {
  // heads 1, tokens 2, channels 4:  t0 [0.5,  10, -1, 0.25]
  //                                 t1 [1,   -10,  1, 0.75]
  // range: ch0 0.5, ch1 20, ch2 2, ch3 0.5 -> k = 2: high {1, 2}, low {0, 3}.
  // channel_mask: bits 1 and 2 of byte 0 -> 0x06 (1 byte: ceil(1 * 4 / 8)).
  // high (half_step) gathers [t0: 10, -1; t1: -10, 1] -> codes 20, -2, -20, 2 -> 0x14 0xFE 0xEC 0x02.
  // low (mean_sign) gathers [t0: 0.5, 0.25; t1: 1, 0.75]: s = 2.5 / 4 = 0.625 = 0x3F200000 (LE 00 00 20 3F),
  //   all >= 0 -> bits 1111 -> 0x0F.
  // Total 1 + 4 + 4 + 1 = 10 bytes over 8 elements: effective 10 bits; nominal (4 * 8 + 4 * 1) / 8 = 4.5.
  auto q = registry().make_quantizer(map({{"type", scalar("mixed_channel")},
                                          {"selector", map({{"type", scalar("range")}, {"fraction", scalar("0.5")}})},
                                          {"high", map({{"type", scalar("half_step")}})},
                                          {"low", map({{"type", scalar("mean_sign")}})}}));
  const std::vector<float> x = {0.5f, 10, -1, 0.25f, 1, -10, 1, 0.75f};
  const BlockShape shape{1, 2, 4};
  const TokenContext ctx;
  const PackedLayout l = q->layout(shape, ctx);
  CHECK(l.bytes() == 10);
  CHECK(l.elements() == 8);
  CHECK(l.nominal_bits() == 4.5);
  CHECK(l.effective_bits() == 10.0);
  CHECK(l.bytes_of(SectionKind::channel_mask) == 1);
  REQUIRE(l.sections().size() == 4);
  CHECK(l.sections()[0].name == "channel_mask");
  CHECK(l.sections()[1].name == "high.codes");
  CHECK(l.sections()[2].name == "low.scales");
  CHECK(l.sections()[3].name == "low.codes");
  bool guards = false;
  const auto bytes = encode_guarded(*q, x.data(), shape, ctx, &guards);
  CHECK(guards);
  CHECK(bytes == std::vector<std::uint8_t>{0x06, 0x14, 0xFE, 0xEC, 0x02, 0x00, 0x00, 0x20, 0x3F, 0x0F});
  CHECK(decode_all(*q, bytes, shape, ctx) == std::vector<float>{0.625f, 10, -1, 0.625f, 0.625f, -10, 1, 0.625f});
}

TEST_CASE("mixed_channel: head scope stores one mask per head and encodes each head on its own", "[mixed_channel]") {
  // heads 2, tokens 2, channels 3, count 1:
  //   head 0: [4, 0, 1], [-4, 0, 1.5]  -> ranges {8, 0, 0.5} -> high {0}
  //   head 1: [0, 1, 2], [0.5, -3, 2]  -> ranges {0.5, 4, 0} -> high {1}
  // channel_mask: 2 masks x 3 bits = bits 0 (mask 0, ch 0) and 3 + 1 = 4 (mask 1, ch 1) -> 0x11.
  // Sections: channel_mask, high.h0.codes (2 bytes), low.h0.codes (4), high.h1.codes (2), low.h1.codes (4).
  // Head 0 high [4, -4] -> 0x08 0xF8; low [0, 1, 0, 1.5] -> 0x00 0x02 0x00 0x03;
  // head 1 high [1, -3] -> 0x02 0xFA; low [0, 2, 0.5, 2] -> 0x00 0x04 0x01 0x04.
  auto q = registry().make_quantizer(map({{"type", scalar("mixed_channel")},
                                          {"selector", map({{"type", scalar("range")}, {"count", scalar("1")}, {"scope", scalar("head")}})},
                                          {"high", map({{"type", scalar("half_step")}, {"nominal", scalar("2")}})},
                                          {"low", map({{"type", scalar("half_step")}, {"nominal", scalar("1")}})}}));
  const std::vector<float> x = {4, 0, 1, -4, 0, 1.5f, 0, 1, 2, 0.5f, -3, 2};
  const BlockShape shape{2, 2, 3};
  const TokenContext ctx;
  const PackedLayout l = q->layout(shape, ctx);
  REQUIRE(l.sections().size() == 5);
  CHECK(l.sections()[1].name == "high.h0.codes");
  CHECK(l.sections()[4].name == "low.h1.codes");
  CHECK(l.bytes() == 13);
  CHECK(std::fabs(l.nominal_bits() - (4 * 2 + 8 * 1) / 12.0) < 1e-12);
  bool guards = false;
  const auto bytes = encode_guarded(*q, x.data(), shape, ctx, &guards);
  CHECK(guards);
  CHECK(bytes == std::vector<std::uint8_t>{0x11, 0x08, 0xF8, 0x00, 0x02, 0x00, 0x03, 0x02, 0xFA, 0x00, 0x04, 0x01, 0x04});
  CHECK(decode_all(*q, bytes, shape, ctx) == x);  // every value is a multiple of 0.5
}

TEST_CASE("mixed_channel: random round trips with every selector and scope, layout exact, D = 128", "[mixed_channel][property]") {
  std::mt19937 gen(11);
  std::uniform_int_distribution<int> steps(-40, 40);
  const BlockShape shape{4, 37, 128};
  std::vector<float> x(static_cast<std::size_t>(shape.elements()));
  for (auto& v : x) v = static_cast<float>(steps(gen)) / 2.0f;
  for (const char* type : {"range", "variance", "outlier"})
    for (const char* scope : {"layer", "head"})
      for (const char* frac : {"0.25", "0.5", "0.75"}) {
        INFO(type << " " << scope << " " << frac);
        ConfigNode sel = map({{"type", scalar(type)}, {"scope", scalar(scope)}});
        if (std::string(type) != "outlier") sel.set("fraction", scalar(frac));
        auto q = registry().make_quantizer(map({{"type", scalar("mixed_channel")}, {"selector", sel},
                                                {"high", map({{"type", scalar("half_step")}})},
                                                {"low", map({{"type", scalar("half_step")}})}}));
        const PackedLayout l = q->layout(shape, TokenContext{});
        const std::size_t masks = std::string(scope) == "layer" ? 1 : 4;
        CHECK(l.bytes() == masks * 16 + static_cast<std::size_t>(shape.elements()));
        bool guards = false;
        const auto bytes = encode_guarded(*q, x.data(), shape, TokenContext{}, &guards);
        CHECK(guards);
        CHECK(decode_all(*q, bytes, shape, TokenContext{}) == x);
      }
}

TEST_CASE("mixed_channel with every channel on one side encodes the block as that child alone, in both CPU tiers",
          "[mixed_channel][errors]") {
  // fraction 0 / count 0 puts every channel in `low`, fraction 1 / count D in `high`: after the mask section the bytes
  // are the one child's bytes of the whole part (scope layer: the block; scope head: each head's slab), and decode
  // writes its values. Until 2026-12-06 the AVX-512 gather wrote into the empty side's scratch block (no buffer)
  // and crashed (found by a newcomer's trial: `selector: {type: range, fraction: 0}`).
  std::mt19937 gen(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const BlockShape shape{3, 70, 64};
  std::vector<float> x(static_cast<std::size_t>(shape.elements()));
  for (auto& v : x) v = normal(gen);
  for (CpuImplementation impl : {CpuImplementation::reference, CpuImplementation::optimized})
    for (const char* scope : {"layer", "head"})
      for (const auto& [key, value, side] : {std::tuple{"fraction", "0", "low"}, std::tuple{"count", "0", "low"},
                                             std::tuple{"fraction", "1", "high"}, std::tuple{"count", "64", "high"}}) {
        INFO((impl == CpuImplementation::reference ? "reference" : "optimized") << ", scope " << scope << ", " << key
                                                                                  << " " << value);
        const PluginRegistry& reg = test::builtin_registry(impl);
        const ConfigNode high = map({{"type", scalar("uniform")}, {"bits", scalar("2")}});
        const ConfigNode low = map({{"type", scalar("sign")}, {"fft", scalar("real")}});
        auto q = reg.make_quantizer(map({{"type", scalar("mixed_channel")},
                                         {"selector", map({{"type", scalar("range")}, {"scope", scalar(scope)}, {key, scalar(value)}})},
                                         {"high", high}, {"low", low}}));
        auto child = reg.make_quantizer(std::string(side) == "high" ? high : low);
        const bool per_head = std::string(scope) == "head";
        const std::size_t mask_bytes = q->layout(shape, TokenContext{}).bytes() -
                                       (per_head ? 3 : 1) * child->layout(per_head ? BlockShape{1, 70, 64} : shape, TokenContext{}).bytes();
        bool guards = false;
        const auto bytes = encode_guarded(*q, x.data(), shape, TokenContext{}, &guards);
        CHECK(guards);
        const auto decoded = decode_all(*q, bytes, shape, TokenContext{});
        const BlockShape part = per_head ? BlockShape{1, 70, 64} : shape;
        const std::size_t part_elements = static_cast<std::size_t>(part.elements());
        const std::size_t part_bytes = child->layout(part, TokenContext{}).bytes();
        for (std::int64_t h = 0; h < shape.heads / part.heads; ++h) {
          const std::vector<float> slab(x.begin() + h * part_elements, x.begin() + (h + 1) * part_elements);
          const auto want = encode_guarded(*child, slab.data(), part, TokenContext{}, &guards);
          CHECK(std::equal(want.begin(), want.end(), bytes.begin() + mask_bytes + h * part_bytes));
          const auto want_values = decode_all(*child, want, part, TokenContext{});
          CHECK(std::equal(want_values.begin(), want_values.end(), decoded.begin() + h * part_elements));
        }
      }
}

TEST_CASE("mixed_channel parameters and defaults as registered", "[mixed_channel]") {
  const PluginInfo* info = test::builtin_registry().find(PluginFamily::quantizer, "mixed_channel");
  REQUIRE(info);
  REQUIRE(info->params.size() == 3);
  CHECK(info->params[0].name == "selector");
  CHECK(info->params[0].default_text == "{type: range, fraction: 0.5, scope: layer}");
  CHECK(info->params[1].default_text == "{type: uniform, bits: 2, group: 32, axis: channel}");
  CHECK(info->params[2].default_text == "{type: sign, group: 32, fft: real}");
  const PluginInfo* mt = test::builtin_registry().find(PluginFamily::quantizer, "mixed_token");
  REQUIRE(mt);
  REQUIRE(mt->params.size() == 3);
  CHECK(mt->params[0].default_text == "{type: random, fraction: 0.2}");
  CHECK(mt->params[1].name == "protected");
  CHECK(mt->params[2].default_text == "{type: ternary}");
}

namespace {

// Tokens 0 system, 1..4 visual, 5 query; hidden 1 with e = [0, 3, -1, 2, 1, 1]: query embedding 1, so the
// semantic_embedding score of a visual token is its embedding: token 1 -> 3, 2 -> -1, 3 -> 2, 4 -> 1.
TraceTokens stp_tokens() {
  TraceTokens tt = TraceTokens::uniform(6, Modality::visual);
  tt.modality[0] = Modality::system_text;
  tt.modality[5] = Modality::query_text;
  tt.hidden = 1;
  tt.embeddings = {0, 3, -1, 2, 1, 1};
  return tt;
}

}  // namespace

TEST_CASE("mixed_token: golden bytes with semantic_embedding", "[mixed_token]") {
  // fraction 0.5 of 4 visual candidates -> 2 protected: tokens 1 (score 3) and 3 (score 2).
  // Values, heads 1, channels 2: t0 [1, -1], t1 [2.5, 3], t2 [0.5, -0.5], t3 [-4, 1.5], t4 [2, 2], t5 [0, -3].
  // token_mask: bits 1 and 3 -> 0x0A (ceil(6 / 8) = 1 byte).
  // protected (half_step) [t1, t3] = [2.5, 3, -4, 1.5] -> codes 5, 6, -8, 3 -> 0x05 0x06 0xF8 0x03.
  // rest (mean_sign) [t0, t2, t4, t5] = [1, -1, 0.5, -0.5, 2, 2, 0, -3]: s = 10 / 8 = 1.25 = 0x3FA00000
  //   (LE 00 00 A0 3F); signs >= 0: 1 0 1 0 1 1 1 0 -> bits 0..7 -> 0b01110101 = 0x75.
  // 1 + 4 + 4 + 1 = 10 bytes over 12 elements; nominal (4 * 8 + 8 * 1) / 12.
  const TraceTokens tt = stp_tokens();
  TokenContext ctx;
  ctx.tokens = &tt;
  auto q = registry().make_quantizer(map({{"type", scalar("mixed_token")},
                                          {"protector", map({{"type", scalar("semantic_embedding")}, {"fraction", scalar("0.5")}})},
                                          {"protected", map({{"type", scalar("half_step")}})},
                                          {"rest", map({{"type", scalar("mean_sign")}})}}));
  const std::vector<float> x = {1, -1, 2.5f, 3, 0.5f, -0.5f, -4, 1.5f, 2, 2, 0, -3};
  const BlockShape shape{1, 6, 2};
  const PackedLayout l = q->layout(shape, ctx);
  CHECK(l.bytes() == 10);
  CHECK(l.bytes_of(SectionKind::token_mask) == 1);
  CHECK(std::fabs(l.nominal_bits() - 40.0 / 12) < 1e-12);
  REQUIRE(l.sections().size() == 4);
  CHECK(l.sections()[1].name == "protected.codes");
  CHECK(l.sections()[2].name == "rest.scales");
  bool guards = false;
  const auto bytes = encode_guarded(*q, x.data(), shape, ctx, &guards);
  CHECK(guards);
  CHECK(bytes == std::vector<std::uint8_t>{0x0A, 0x05, 0x06, 0xF8, 0x03, 0x00, 0x00, 0xA0, 0x3F, 0x75});
  CHECK(decode_all(*q, bytes, shape, ctx) ==
        std::vector<float>{1.25f, -1.25f, 2.5f, 3, 1.25f, -1.25f, -4, 1.5f, 1.25f, 1.25f, 1.25f, -1.25f});
}

TEST_CASE("mixed_token: children see their own tokens through ctx.subset (nested mixed_token)", "[mixed_token]") {
  // Outer: count 1 -> token 1 (score 3). Inner `rest` block holds trace tokens [0, 2, 3, 4, 5]; its protector
  // (count 1) must see their true modalities and embeddings: visual 2 (-1), 3 (2), 4 (1) -> trace token 3 = local 2.
  // Both protected sets are half_step (exact on these values), everything else mean_sign. Were the subset
  // mapping lost, the inner protector would read trace tokens 0..4 and protect trace token 1's embedding slot
  // (local 1 = trace 2), so t3 would not come back exactly.
  const TraceTokens tt = stp_tokens();
  TokenContext ctx;
  ctx.tokens = &tt;
  ConfigNode inner = map({{"type", scalar("mixed_token")},
                          {"protector", map({{"type", scalar("semantic_embedding")}, {"count", scalar("1")}})},
                          {"protected", map({{"type", scalar("half_step")}})},
                          {"rest", map({{"type", scalar("mean_sign")}})}});
  auto q = registry().make_quantizer(map({{"type", scalar("mixed_token")},
                                          {"protector", map({{"type", scalar("semantic_embedding")}, {"count", scalar("1")}})},
                                          {"protected", map({{"type", scalar("half_step")}})},
                                          {"rest", inner}}));
  const std::vector<float> x = {1, -1, 2.5f, 3, 0.5f, -0.5f, -4, 1.5f, 2, 2, 0, -3};
  const BlockShape shape{1, 6, 2};
  bool guards = false;
  const auto bytes = encode_guarded(*q, x.data(), shape, ctx, &guards);
  CHECK(guards);
  // outer mask 1 + protected 2 + inner (mask 1 + protected 2 + rest 4 + 1) = 11 bytes
  CHECK(bytes.size() == 11);
  CHECK(bytes[0] == 0x02);  // outer: token 1
  CHECK(bytes[3] == 0x04);  // inner over 5 tokens: local 2
  const auto y = decode_all(*q, bytes, shape, ctx);
  CHECK(y[2] == 2.5f);
  CHECK(y[3] == 3);
  CHECK(y[6] == -4);
  CHECK(y[7] == 1.5f);
  // rest of the inner block: [1, -1, 0.5, -0.5, 2, 2, 0, -3] -> s = 10 / 8 = 1.25
  CHECK(y[0] == 1.25f);
  CHECK(y[11] == -1.25f);
}

TEST_CASE("mixed_token: layout depends only on shape and modality, random protection round trips", "[mixed_token][property]") {
  std::mt19937 gen(5);
  std::uniform_int_distribution<int> steps(-40, 40);
  TraceTokens tt = TraceTokens::uniform(230, Modality::visual);
  for (int i = 0; i < 14; ++i) tt.modality[static_cast<std::size_t>(i)] = Modality::system_text;
  for (int i = 210; i < 230; ++i) tt.modality[static_cast<std::size_t>(i)] = Modality::query_text;
  const BlockShape shape{3, 230, 16};  // 196 visual candidates: paper budget 39, release 0
  std::vector<float> x(static_cast<std::size_t>(shape.elements()));
  for (auto& v : x) v = static_cast<float>(steps(gen)) / 2.0f;
  for (const char* rule : {"paper", "release"}) {
    auto q = registry().make_quantizer(map({{"type", scalar("mixed_token")},
                                            {"protector", map({{"type", scalar("random")}, {"count_rule", scalar(rule)}})},
                                            {"protected", map({{"type", scalar("half_step")}})},
                                            {"rest", map({{"type", scalar("half_step")}})}}));
    const std::int64_t n = std::string(rule) == "paper" ? 39 : 0;
    for (std::uint64_t seed : {1u, 2u, 3u}) {
      TokenContext ctx;
      ctx.tokens = &tt;
      ctx.seed = seed;
      const PackedLayout l = q->layout(shape, ctx);
      CHECK(l.bytes() == 29 + static_cast<std::size_t>(shape.elements()));  // ceil(230 / 8) = 29 mask bytes
      CHECK(l.bytes_of(SectionKind::codes) == static_cast<std::size_t>(shape.elements()));
      bool guards = false;
      const auto bytes = encode_guarded(*q, x.data(), shape, ctx, &guards);
      CHECK(guards);
      int set = 0;
      for (int t = 0; t < 230; ++t) set += (bytes[static_cast<std::size_t>(t / 8)] >> (t % 8)) & 1;
      CHECK(set == n);
      CHECK(decode_all(*q, bytes, shape, ctx) == x);
    }
  }
}

TEST_CASE("mixed_token refuses children whose layout depends on which tokens are protected", "[mixed_token]") {
  // Outer: 2 random tokens among all 6 (candidates: all). Inner `rest`: mixed_token protecting all of its visual
  // tokens at 1 byte per element, the others at 1 bit. Tokens 0 and 5 are system, 1..4 visual. The layout assumes
  // the outer picks the first two candidates (0, 1): the inner block then holds 3 visual tokens, all protected.
  // A pick of (0, 5) leaves 4 visual tokens, a pick of two visual tokens leaves 2: the inner layout changes, so
  // encode() must throw NotSupportedError before writing (guard bytes prove it never overruns). A pick of one
  // system and one visual token (8 of the 15 pairs) matches the layout and encodes.
  TraceTokens tt = TraceTokens::uniform(6, Modality::visual);
  tt.modality[0] = tt.modality[5] = Modality::system_text;
  ConfigNode inner = map({{"type", scalar("mixed_token")},
                          {"protector", map({{"type", scalar("random")}, {"fraction", scalar("1")}})},
                          {"protected", map({{"type", scalar("half_step")}})},
                          {"rest", map({{"type", scalar("mean_sign")}})}});
  auto q = registry().make_quantizer(map({{"type", scalar("mixed_token")},
                                          {"protector", map({{"type", scalar("random")}, {"count", scalar("2")}, {"candidates", scalar("all")}})},
                                          {"protected", map({{"type", scalar("half_step")}})},
                                          {"rest", inner}}));
  const std::vector<float> x = {1, -1, 2.5f, 3, 0.5f, -0.5f, -4, 1.5f, 2, 2, 0, -3};
  const BlockShape shape{1, 6, 2};
  int refused = 0, encoded = 0;
  for (std::uint64_t seed = 0; seed < 40; ++seed) {
    TokenContext ctx;
    ctx.tokens = &tt;
    ctx.seed = seed;
    bool guards = false;
    try {
      const auto bytes = encode_guarded(*q, x.data(), shape, ctx, &guards);
      CHECK(guards);
      ++encoded;
    } catch (const NotSupportedError& e) {
      CHECK(std::string(e.what()).find("depends on which tokens are protected") != std::string::npos);
      ++refused;
    }
  }
  CHECK(refused > 0);  // 7 of 15 pairs change the inner budget: P(no refusal in 40 seeds) = (8/15)^40 ~ 1e-11
  CHECK(encoded > 0);  // P(no success) = (7/15)^40 ~ 1e-13
}

TEST_CASE("selectors and protectors register the shared parameter names", "[selector][protector]") {
  auto names = [](const char* plugin) {
    std::vector<std::string> out;
    const PluginRegistry& reg = test::builtin_registry();
    const PluginInfo* info = reg.find(PluginFamily::channel_selector, plugin);
    if (!info) info = reg.find(PluginFamily::token_protector, plugin);
    REQUIRE(info);
    for (const auto& s : info->params) out.push_back(s.name);
    return out;
  };
  CHECK(names("range") == std::vector<std::string>{"fraction", "count", "scope"});
  CHECK(names("variance") == std::vector<std::string>{"fraction", "count", "scope"});
  CHECK(names("outlier") == std::vector<std::string>{"fraction", "count", "scope", "multiplier", "mode"});
  CHECK(names("none").empty());
  for (const char* p : {"random", "semantic_embedding", "semantic_attention"})
    CHECK(names(p) == std::vector<std::string>{"fraction", "count", "count_rule", "candidates"});
  CHECK(test::builtin_registry().find(PluginFamily::channel_selector, "outlier")->params[4].default_text == "absolute");
  CHECK(test::builtin_registry().find(PluginFamily::token_protector, "random")->params[2].default_text == "paper");
}
