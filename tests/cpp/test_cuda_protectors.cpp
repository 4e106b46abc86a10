// Token protectors behind the device seam: protect_view() on the cpu and on cuda against protect() on the fp32
// values, for every registered protector, several budgets and candidate spans, full and subset token contexts.
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "cuda_test_support.h"
#include "fixture_quantizers.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding_score.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

// A trace of 200 tokens (8 system, 160 visual, 12 query text, 20 generated) with input embeddings (width 24),
// recorded query states of the query-text tokens (4 query heads) and full-precision keys (2 KV heads), head_dim 16.
// Embedding values are small integers (many exact ties) or gaussian (sums that round).
struct Trace {
  static constexpr std::int64_t kTokens = 200, kDim = 16, kKvHeads = 2;
  TraceTokens tokens;
  LayerQueries queries;
  std::vector<float> keys;

  explicit Trace(bool gaussian_embeddings = false) {
    tokens = TraceTokens::uniform(kTokens);
    for (std::int64_t t = 0; t < kTokens; ++t)
      tokens.modality[static_cast<std::size_t>(t)] =
          t < 8 ? Modality::system_text : t < 168 ? Modality::visual : t < 180 ? Modality::query_text : Modality::generated;
    std::mt19937_64 rng(17);
    std::uniform_int_distribution<int> small(-2, 2);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    tokens.hidden = 24;
    tokens.embeddings.resize(static_cast<std::size_t>(kTokens * tokens.hidden));
    for (auto& e : tokens.embeddings) e = gaussian_embeddings ? gauss(rng) : static_cast<float>(small(rng));
    queries.heads = 4;
    queries.dim = kDim;
    for (std::int32_t t = 168; t < 180; ++t) queries.token_index.push_back(t);
    queries.count = static_cast<std::int64_t>(queries.token_index.size());
    queries.data.resize(static_cast<std::size_t>(queries.heads * queries.count * kDim));
    for (auto& q : queries.data) q = gauss(rng);
    keys.resize(static_cast<std::size_t>(kKvHeads * kTokens * kDim));
    for (auto& k : keys) k = gauss(rng);
  }
  TokenContext context(int layer) const {
    TokenContext ctx;
    ctx.layer = layer;
    ctx.tokens = &tokens;
    ctx.queries = &queries;
    ctx.keys = LayerKeys{keys.data(), kKvHeads, kTokens, kDim};
    ctx.seed = 1234;
    return ctx;
  }
};

// Every registered protector, with several budgets where it takes parameters.
std::vector<std::unique_ptr<TokenProtector>> all_protectors() {
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  std::vector<std::unique_ptr<TokenProtector>> out;
  for (const std::string& name : reg.names(PluginFamily::token_protector)) {
    if (reg.find(PluginFamily::token_protector, name)->params.empty()) {
      out.push_back(reg.make_token_protector(map({{"type", scalar(name)}})));
      continue;
    }
    out.push_back(reg.make_token_protector(map({{"type", scalar(name)}, {"fraction", scalar("0.3")}})));
    out.push_back(reg.make_token_protector(
        map({{"type", scalar(name)}, {"fraction", scalar("0.5")}, {"candidates", scalar("all")}, {"count_rule", scalar("release")}})));
    out.push_back(reg.make_token_protector(map({{"type", scalar(name)}, {"count", scalar("7")}, {"candidates", scalar("context")}})));
  }
  return out;
}

std::vector<float> gaussian_block(const BlockShape& s) {
  std::mt19937_64 rng(3);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(s.elements()));
  for (auto& v : x) v = g(rng);
  return x;
}

}  // namespace

TEST_CASE("protect_view on the cpu equals protect() for every registered protector", "[cpu][protector]") {
  const Trace trace;
  for (const auto& p : all_protectors()) {
    for (const auto& [begin, end] : std::vector<std::pair<std::int64_t, std::int64_t>>{{0, Trace::kTokens}, {50, 190}}) {
      const TokenContext ctx = trace.context(3).range(begin, end);
      const BlockShape s{2, end - begin, Trace::kDim};
      const std::vector<float> x = gaussian_block(s);
      for (DType t : test::all_dtypes()) {
        INFO(p->plugin_name() << " tokens [" << begin << ", " << end << ") " << dtype_name(t));
        std::vector<std::uint8_t> bytes = test::to_dtype_bytes(x, t);
        const std::vector<float> values = test::from_dtype_bytes(bytes, t);
        CHECK(p->protect_view(test::view_of(bytes.data(), t, Device::cpu, s), ctx, Execution::cpu()) ==
              p->protect(values.data(), s, ctx));
        CHECK(p->scores_view(test::view_of(bytes.data(), t, Device::cpu, s), ctx, Execution::cpu()) ==
              p->score(values.data(), s, ctx, p->candidate_tokens(s.tokens, ctx)));
      }
    }
  }
}

TEST_CASE("the built-in protectors never read the block: protect_view on cuda runs on the host, without a GPU",
          "[cpu][protector]") {
  // Every built-in protector scores from the token context only (reads_block() == false), so protect_view() on
  // cuda must not touch the device block: an address no one may dereference stands in for it, and the call needs
  // neither a GPU nor a CUDA build.
  const Trace trace;
  const TokenContext ctx = trace.context(1);
  const BlockShape s{2, Trace::kTokens, Trace::kDim};
  const std::vector<float> x = gaussian_block(s);
  for (const auto& p : all_protectors()) {
    INFO(p->plugin_name());
    CHECK_FALSE(p->reads_block());
    if (p->scores_on_cuda()) continue;  // semantic_embedding in CUDA builds: its scores run on the device
    CHECK(p->supports(Device::cuda));
    const TensorView untouchable{reinterpret_cast<void*>(std::uintptr_t{0x10}), DType::f16, Device::cuda, {s.heads, s.tokens, s.channels}};
    CHECK(p->protect_view(untouchable, ctx, Execution::cuda()) == p->protect(x.data(), s, ctx));
  }
}

TEST_CASE("protect_view refuses a view on another device and a bad rank", "[cpu][protector]") {
  const Trace trace;
  auto p = test::builtin_registry().make_token_protector(map({{"type", scalar("random")}}));
  std::vector<float> x(16);
  CHECK_THROWS_AS(p->protect_view(TensorView{x.data(), DType::f32, Device::cpu, {16}}, trace.context(0), Execution::cpu()), ShapeError);
  CHECK_THROWS_AS(p->protect_view(TensorView{x.data(), DType::f32, Device::cpu, {1, 16, 1}}, trace.context(0), Execution::cuda()),
                  ShapeError);
}

TEST_CASE("semantic_embedding_score repeats the reference's double sums exactly", "[cpu][protector]") {
  const Trace trace(true);
  const TokenContext ctx = trace.context(0);
  auto p = test::builtin_registry(CpuImplementation::reference).make_token_protector(map({{"type", scalar("semantic_embedding")}}));
  std::vector<std::int32_t> cand;
  for (std::int32_t t = 8; t < 168; ++t) cand.push_back(t);
  const std::vector<double> ref = p->score(nullptr, {1, Trace::kTokens, 1}, ctx, cand);
  std::vector<float> queries;
  for (std::int64_t t = 168; t < 180; ++t)
    queries.insert(queries.end(), trace.tokens.embeddings.begin() + t * trace.tokens.hidden,
                   trace.tokens.embeddings.begin() + (t + 1) * trace.tokens.hidden);
  for (std::size_t i = 0; i < cand.size(); ++i) {
    const float* e = trace.tokens.embeddings.data() + cand[i] * trace.tokens.hidden;
    const double s = semantic_embedding_score::mean_dot([&](std::int64_t d) { return e[d]; }, queries.data(), 12,
                                                        trace.tokens.hidden);
    CHECK(std::memcmp(&s, &ref[i], sizeof(double)) == 0);
  }
}

TEST_CASE("every registered token protector protects the same tokens on CUDA as on the CPU", "[cuda][protector]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  for (const bool gaussian : {false, true}) {
    const Trace trace(gaussian);
    for (const auto& p : all_protectors()) {
      REQUIRE(p->supports(Device::cuda));
      for (const auto& [begin, end] : std::vector<std::pair<std::int64_t, std::int64_t>>{{0, Trace::kTokens}, {50, 190}, {100, 133}}) {
        const TokenContext ctx = trace.context(5).range(begin, end);
        const BlockShape s{2, end - begin, Trace::kDim};
        const std::vector<float> x = gaussian_block(s);
        for (DType t : test::all_dtypes()) {
          INFO(p->plugin_name() << " tokens [" << begin << ", " << end << ") " << dtype_name(t));
          const std::vector<std::uint8_t> bytes = test::to_dtype_bytes(x, t);
          const std::vector<float> values = test::from_dtype_bytes(bytes, t);
          const DeviceBuffer dev = test::upload(bytes);
          const TensorView device_view = test::view_of(dev.data(), t, Device::cuda, s);
          CHECK(p->protect_view(device_view, ctx, Execution::cuda()) == p->protect(values.data(), s, ctx));
          if (p->protection().count != 0) {  // none takes no candidates' scores (its budget is 0, never scored)
            const auto cpu = p->score(values.data(), s, ctx, p->candidate_tokens(s.tokens, ctx));
            const auto gpu = p->scores_view(device_view, ctx, Execution::cuda());
            CHECK((cpu.size() == gpu.size() && (cpu.empty() || std::memcmp(cpu.data(), gpu.data(), cpu.size() * sizeof(double)) == 0)));
          }
        }
      }
    }
  }
}

TEST_CASE("semantic_embedding on CUDA without recorded embeddings is the CPU's ConfigError", "[cuda][protector]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  TraceTokens bare = TraceTokens::uniform(40, Modality::visual);
  bare.modality[39] = Modality::query_text;
  TokenContext ctx;
  ctx.tokens = &bare;
  auto p = test::builtin_registry().make_token_protector(map({{"type", scalar("semantic_embedding")}}));
  const DeviceBuffer dev = test::upload(std::vector<std::uint8_t>(40 * 4 * 4, 0));
  CHECK_THROWS_AS(p->protect_view(test::view_of(dev.data(), DType::f32, Device::cuda, {1, 40, 4}), ctx, Execution::cuda()),
                  ConfigError);
}
