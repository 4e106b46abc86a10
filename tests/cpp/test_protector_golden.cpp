// Golden and property tests of the token protectors none, random, semantic_embedding, semantic_attention and of
// the paper/release count rules (algorithms.md 4.1).
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "fixture_quantizers.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/token_protectors/random/random.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

std::unique_ptr<TokenProtector> make(const std::string& type, std::initializer_list<std::pair<std::string, ConfigNode>> extra = {}) {
  ConfigNode n = map({{"type", scalar(type)}});
  for (const auto& [k, v] : extra) n.set(k, v);
  return test::builtin_registry().make_token_protector(n);
}

TraceTokens tokens_of(std::initializer_list<Modality> ms) {
  TraceTokens t = TraceTokens::uniform(static_cast<std::int64_t>(ms.size()));
  t.modality.assign(ms.begin(), ms.end());
  return t;
}

// what() of the vidkv::Error that f throws ("" if none): Catch2 v2 and v3 name their substring matchers differently.
template <class F>
std::string error_text(F f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

constexpr Modality S = Modality::system_text, V = Modality::visual, Q = Modality::query_text;

}  // namespace

TEST_CASE("count rules: paper int(p * N), release max(32, floor(p * N / 32) * 32) - 32", "[protector][budget]") {
  auto paper = make("random");
  auto release = make("random", {{"count_rule", scalar("release")}});
  // N = 196: paper floor(39.2) = 39; release floor(39.2 / 32) = 1 -> max(32, 32) - 32 = 0.
  CHECK(paper->budget(196) == 39);
  CHECK(release->budget(196) == 0);
  // N = 160: 0.2 * 160 = 32 (31.999... in binary) -> paper 32; release 32 - 32 = 0.
  CHECK(paper->budget(160) == 32);
  CHECK(release->budget(160) == 0);
  // N = 6272 (32 frames x 196): paper 1254 (1254.4); release floor(39.2) = 39 -> 39 * 32 - 32 = 1216.
  CHECK(paper->budget(6272) == 1254);
  CHECK(release->budget(6272) == 1216);
  // N = 3136 (16 frames): paper 627; release floor(19.6) = 19 -> 608 - 32 = 576.
  CHECK(paper->budget(3136) == 627);
  CHECK(release->budget(3136) == 576);
  CHECK(make("random", {{"count", scalar("7")}})->budget(5) == 5);  // never more than the candidates
  CHECK(make("none")->budget(6272) == 0);
}

TEST_CASE("none protects nothing and takes no parameters", "[protector][none]") {
  const TraceTokens tt = tokens_of({V, V, V, V, V});
  TokenContext ctx;
  ctx.tokens = &tt;
  const std::vector<float> x(5, 1.0f);
  CHECK(make("none")->protect(x.data(), {1, 5, 1}, ctx).empty());
  CHECK_THROWS_AS(make("none", {{"fraction", scalar("0.2")}}), ConfigError);
}

TEST_CASE("semantic_embedding: mean dot product with the query text's input embeddings", "[protector][semantic_embedding]") {
  // Tokens: 0 system, 1..4 visual, 5 and 6 query text; hidden 2. e5 = [1, 0], e6 = [0, 1], so the score of a
  // visual token e is (e.x + e.y) / 2: e1 [1, 1] -> 1, e2 [3, -1] -> 1, e3 [0, 4] -> 2, e4 [-1, -1] -> -1.
  // fraction 0.5 of 4 candidates -> 2: token 3 (score 2), then the tie 1/2 goes to the lower position: token 1.
  TraceTokens tt = tokens_of({S, V, V, V, V, Q, Q});
  tt.hidden = 2;
  tt.embeddings = {9, 9, 1, 1, 3, -1, 0, 4, -1, -1, 1, 0, 0, 1};
  TokenContext ctx;
  ctx.tokens = &tt;
  const std::vector<float> x(7, 0.0f);
  auto p = make("semantic_embedding", {{"fraction", scalar("0.5")}});
  CHECK(p->score(x.data(), {1, 7, 1}, ctx, {1, 2, 3, 4}) == std::vector<double>{1, 1, 2, -1});
  CHECK(p->protect(x.data(), {1, 7, 1}, ctx) == std::vector<std::int32_t>{1, 3});
  // Through a subset context (local token i is trace token index[i]) the same tokens are found.
  const TokenContext sub = ctx.subset({2, 3, 4});
  CHECK(p->protect(x.data(), {1, 3, 1}, sub) == std::vector<std::int32_t>{1});  // local 1 = trace 3

  SECTION("missing embeddings or query text are clear errors") {
    TraceTokens bare = tokens_of({S, V, V, V, V, Q, Q});
    TokenContext c2;
    c2.tokens = &bare;
    try {
      p->protect(x.data(), {1, 7, 1}, c2);
      FAIL("expected ConfigError");
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()).find("semantic_embedding") != std::string::npos);
      CHECK(std::string(e.what()).find("embeddings") != std::string::npos);
    }
    TraceTokens noq = tt;
    noq.modality[5] = noq.modality[6] = S;
    c2.tokens = &noq;
    CHECK(error_text([&] { p->protect(x.data(), {1, 7, 1}, c2); }).find("query-text token") != std::string::npos);
  }
}

TEST_CASE("semantic_attention: causal softmax attention from query-text queries, GQA, mean over heads", "[protector][semantic_attention]") {
  // Tokens: 0 system, 1 and 2 visual, 3 query text. head_dim 1 (scale 1/sqrt(1) = 1). 2 KV heads, 4 query heads:
  // query heads 0, 1 read KV head 0, heads 2, 3 read KV head 1.
  //   KV head 0 keys [0, ln 3, 0, 0], KV head 1 keys [0, 0, 0, 0]. Query states at token 3: [1], [0], [1], [5].
  //   head 0: logits [0, ln 3, 0, 0] -> exp [1, 3, 1, 1] / 6 = [1/6, 1/2, 1/6, 1/6]
  //   head 1: logits all 0 -> 1/4 each; heads 2 and 3 (keys all 0): 1/4 each.
  //   token 1: (1/2 + 1/4 + 1/4 + 1/4) / 4 = 0.3125; token 2: (1/6 + 3/4) / 4 = 0.2291666...
  // (with heads mapped h % kv_heads instead, token 1 would get (1/2 + 1/4 + 1/2 + 1/4) / 4 = 0.375).
  const TraceTokens tt = tokens_of({S, V, V, Q});
  const float ln3 = std::log(3.0f);
  const std::vector<float> keys = {0, ln3, 0, 0, 0, 0, 0, 0};
  LayerQueries qs;
  qs.heads = 4;
  qs.count = 1;
  qs.dim = 1;
  qs.data = {1, 0, 1, 5};
  qs.token_index = {3};
  TokenContext ctx;
  ctx.tokens = &tt;
  ctx.queries = &qs;
  ctx.keys = LayerKeys{keys.data(), 2, 4, 1};
  const std::vector<float> x(8, 0.0f);
  auto p = make("semantic_attention", {{"count", scalar("1")}});
  const auto s = p->score(x.data(), {2, 4, 1}, ctx, {1, 2});
  REQUIRE(s.size() == 2);
  CHECK(std::fabs(s[0] - 0.3125) < 1e-6);
  CHECK(std::fabs(s[1] - 0.75 / 4 - 1.0 / 24) < 1e-6);
  CHECK(p->protect(x.data(), {2, 4, 1}, ctx) == std::vector<std::int32_t>{1});

  SECTION("causal: a query sees only keys up to its own token") {
    // Tokens: 0 visual, 1 query, 2 visual; keys all 0, one head: the query at token 1 splits 1/2 : 1/2 over
    // tokens 0 and 1, token 2 gets 0.
    const TraceTokens t2 = tokens_of({V, Q, V});
    const std::vector<float> k2 = {0, 0, 0};
    LayerQueries q2;
    q2.heads = 1;
    q2.count = 1;
    q2.dim = 1;
    q2.data = {2};
    q2.token_index = {1};
    TokenContext c2;
    c2.tokens = &t2;
    c2.queries = &q2;
    c2.keys = LayerKeys{k2.data(), 1, 3, 1};
    CHECK(p->score(x.data(), {1, 3, 1}, c2, {0, 2}) == std::vector<double>{0.5, 0.0});
  }
  SECTION("missing side data is a clear error") {
    TokenContext c3;
    c3.tokens = &tt;
    CHECK(error_text([&] { p->protect(x.data(), {2, 4, 1}, c3); }).find("semantic_attention needs recorded query states") != std::string::npos);
    c3.queries = &qs;
    CHECK(error_text([&] { p->protect(x.data(), {2, 4, 1}, c3); }).find("semantic_attention needs the layer's full-precision keys") != std::string::npos);
  }
}

TEST_CASE("random: exact budget among candidates, deterministic per seed, differs across seeds and layers", "[protector][random]") {
  TraceTokens tt = TraceTokens::uniform(300, Modality::visual);
  for (int i = 0; i < 20; ++i) tt.modality[static_cast<std::size_t>(i)] = S;  // 20 system tokens, 280 visual
  const std::vector<float> x(300, 0.0f);
  auto p = make("random");
  auto pick = [&](std::uint64_t seed, int layer) {
    TokenContext ctx;
    ctx.tokens = &tt;
    ctx.seed = seed;
    ctx.layer = layer;
    return p->protect(x.data(), {1, 300, 1}, ctx);
  };
  const auto a = pick(42, 0);
  REQUIRE(a.size() == 56);  // int(0.2 * 280)
  for (auto t : a) CHECK(t >= 20);
  CHECK(std::is_sorted(a.begin(), a.end()));
  CHECK(pick(42, 0) == a);
  CHECK(pick(43, 0) != a);
  CHECK(pick(42, 1) != a);
  // The generator is splitmix64 (static_asserts in random.h pin its first outputs); a token's key depends on its
  // trace index, so a subset context keeps the keys of its tokens.
  CHECK(splitmix64_output(0, 2) == splitmix64_mix(3 * 0x9E3779B97F4A7C15ull));
}

TEST_CASE("protectors keep exactly the budget and prefer higher scores", "[protector][property]") {
  // semantic_embedding with hidden 1 and one query token of embedding 1: the score is the visual token's
  // embedding, so the kept set must be the tokens with the largest embeddings.
  const int n = 50;
  TraceTokens tt = TraceTokens::uniform(n + 1, Modality::visual);
  tt.modality[static_cast<std::size_t>(n)] = Q;
  tt.hidden = 1;
  tt.embeddings.resize(static_cast<std::size_t>(n + 1));
  for (int i = 0; i < n; ++i) tt.embeddings[static_cast<std::size_t>(i)] = static_cast<float>((i * 37) % n);  // a permutation of 0..49
  tt.embeddings[static_cast<std::size_t>(n)] = 1;
  TokenContext ctx;
  ctx.tokens = &tt;
  const std::vector<float> x(static_cast<std::size_t>(n + 1), 0.0f);
  for (const char* frac : {"0", "0.1", "0.2", "0.5", "1"}) {
    auto p = make("semantic_embedding", {{"fraction", scalar(frac)}});
    const auto kept = p->protect(x.data(), {1, n + 1, 1}, ctx);
    const auto budget = p->budget(n);
    REQUIRE(static_cast<std::int64_t>(kept.size()) == budget);
    for (auto t : kept) CHECK(tt.embeddings[static_cast<std::size_t>(t)] >= static_cast<float>(n - budget));
  }
}
