// Channel selectors on CUDA: the shared per-channel score functions against the reference score() ([cpu]), and
// every registered selector's device scores and masks against the CPU's, bit for bit ([cuda]).
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
#include "vidkv/quantization/column_scores.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

// Block values of four kinds: gaussian; small integers (many ties in every score); zeros of both signs with a
// few +-1 (ties, and the sign of a zero extremum); zeros of both signs alone except in every fourth channel, which
// also holds some 1s (all-zero channels, whose range is +0 whichever zero comes first).
std::vector<float> block_values(const BlockShape& s, int kind, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<float> x(static_cast<std::size_t>(s.elements()));
  std::normal_distribution<float> gauss(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-3, 3), pick(0, 9);
  for (std::size_t i = 0; i < x.size(); ++i) {
    float& v = x[i];
    if (kind == 3) {
      const int p = pick(rng);
      v = s.channels > 0 && i % static_cast<std::size_t>(s.channels) % 4 == 0 && p == 9 ? 1.0f : (p < 5 ? 0.0f : -0.0f);
    }
    if (kind == 0) v = gauss(rng) * 4.0f;
    if (kind == 1) v = static_cast<float>(small(rng));
    if (kind == 2) {
      const int p = pick(rng);
      v = p < 4 ? 0.0f : p < 8 ? -0.0f : (p == 8 ? 1.0f : -1.0f);
    }
  }
  return x;
}

bool same_bits(const std::vector<double>& a, const std::vector<double>& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(double)) == 0);
}

std::unique_ptr<ChannelSelector> make_selector(const std::string& type, const std::string& scope,
                                               std::initializer_list<std::pair<std::string, ConfigNode>> extra = {}) {
  ConfigNode n = map({{"type", scalar(type)}, {"scope", scalar(scope)}, {"fraction", scalar("0.5")}});
  for (const auto& [k, v] : extra) n.set(k, v);
  return test::builtin_registry(CpuImplementation::reference).make_channel_selector(n);
}

const std::vector<BlockShape> kShapes = {{1, 1, 1},   {1, 37, 5},    {2, 70, 128}, {3, 33, 9},
                                         {2, 0, 8},   {1, 100, 300}, {4, 4099, 128}};

}  // namespace

TEST_CASE("column_scores: variance and outlier repeat the reference's double sums exactly", "[cpu][selector]") {
  for (const BlockShape& s : {BlockShape{1, 37, 5}, BlockShape{3, 33, 9}, BlockShape{2, 70, 16}}) {
    for (int kind = 0; kind < 3; ++kind) {
      const std::vector<float> x = block_values(s, kind, 11 + kind);
      for (std::int64_t h = 0; h < s.heads; ++h) {
        const std::int64_t h1 = h + 1;
        auto var = make_selector("variance", "head")->score(x.data(), s, h, h1);
        auto out_abs = make_selector("outlier", "head", {{"multiplier", scalar("1.5")}})->score(x.data(), s, h, h1);
        auto out_signed = make_selector("outlier", "head", {{"mode", scalar("signed")}})->score(x.data(), s, h, h1);
        std::vector<double> v2, a2, s2;
        for (std::int64_t c = 0; c < s.channels; ++c) {
          const auto col = column_scores::column(x.data(), DType::f32, s.tokens, s.channels, h, c);
          v2.push_back(column_scores::variance(col, s.tokens));
          a2.push_back(column_scores::outlier_count(col, s.tokens, 1.5, true));
          s2.push_back(column_scores::outlier_count(col, s.tokens, 3.0, false));
        }
        CHECK(same_bits(var, v2));
        CHECK(same_bits(out_abs, a2));
        CHECK(same_bits(out_signed, s2));
      }
      // Layer scope: all heads, head-major order.
      auto var = make_selector("variance", "layer")->score(x.data(), s, 0, s.heads);
      std::vector<double> v2;
      for (std::int64_t c = 0; c < s.channels; ++c)
        v2.push_back(column_scores::variance(column_scores::column(x.data(), DType::f32, s.tokens, s.channels, 0, c),
                                             s.heads * s.tokens));
      CHECK(same_bits(var, v2));
    }
  }
}

TEST_CASE("column_scores: range extrema merged over runs in order equal the sequential ones, zeros' signs included",
          "[cpu][selector]") {
  // Zeros of both signs: the sequential `x < lo ? x : lo` keeps the first zero seen; merging runs earlier-first
  // must keep it too, whatever the run boundaries.
  std::mt19937_64 rng(5);
  for (int trial = 0; trial < 200; ++trial) {
    const BlockShape s{1, 1 + trial % 61, 1};
    const std::vector<float> x = block_values(s, 2, 100 + trial);
    column_scores::Extrema seq{INFINITY, -INFINITY};
    for (float v : x) seq = column_scores::extrema_add(seq, v);
    column_scores::Extrema merged{INFINITY, -INFINITY};
    std::size_t i = 0;
    while (i < x.size()) {
      const std::size_t len = 1 + rng() % 7;
      column_scores::Extrema run{INFINITY, -INFINITY};
      for (std::size_t j = i; j < std::min(x.size(), i + len); ++j) run = column_scores::extrema_add(run, x[j]);
      merged = column_scores::extrema_merge(merged, run);
      i += len;
    }
    CHECK(float_bits(seq.lo) == float_bits(merged.lo));
    CHECK(float_bits(seq.hi) == float_bits(merged.hi));
    const auto ref = make_selector("range", "layer")->score(x.data(), s, 0, 1);
    CHECK(same_bits(ref, {column_scores::range_score(merged, s.tokens)}));
  }
}

TEST_CASE("scores_view and select_view on the cpu equal score() and select() on the fp32 values", "[cpu][selector]") {
  const BlockShape s{2, 40, 12};
  const std::vector<float> x = block_values(s, 0, 3);
  for (DType t : test::all_dtypes()) {
    std::vector<std::uint8_t> bytes = test::to_dtype_bytes(x, t);
    const std::vector<float> values = test::from_dtype_bytes(bytes, t);
    for (const std::string scope : {"layer", "head"}) {
      auto sel = make_selector("variance", scope);
      const TensorView v = test::view_of(bytes.data(), t, Device::cpu, s);
      CHECK(sel->select_view(v, Execution::cpu()) == sel->select(values.data(), s));
      std::vector<double> expected;
      for (std::int64_t m = 0; m < sel->mask_count(s); ++m) {
        const std::int64_t hps = scope == "layer" ? s.heads : 1;
        auto one = sel->score(values.data(), s, m * hps, (m + 1) * hps);
        expected.insert(expected.end(), one.begin(), one.end());
      }
      CHECK(same_bits(sel->scores_view(v, Execution::cpu()), expected));
    }
  }
}

TEST_CASE("every registered channel selector scores and selects on CUDA exactly as on the CPU", "[cuda][selector]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  for (const std::string& name : reg.names(PluginFamily::channel_selector)) {
    for (const std::string scope : {"layer", "head"}) {
      std::vector<std::unique_ptr<ChannelSelector>> variants;
      variants.push_back(make_selector(name, scope));
      if (name == "outlier") {  // the parameters that change the score
        variants.push_back(make_selector(name, scope, {{"mode", scalar("signed")}}));
        variants.push_back(make_selector(name, scope, {{"multiplier", scalar("0.5")}}));
      }
      for (const auto& sel : variants) {
        REQUIRE(sel->supports(Device::cuda));
        for (const BlockShape& s : kShapes) {
          for (int kind = 0; kind < 4; ++kind) {
            const std::vector<float> x = block_values(s, kind, 1000 + kind);
            for (DType t : test::all_dtypes()) {
              INFO(name << " scope " << scope << " " << s.str() << " data kind " << kind << " " << dtype_name(t));
              std::vector<std::uint8_t> bytes = test::to_dtype_bytes(x, t);
              const DeviceBuffer dev = test::upload(bytes);
              const TensorView host_view = test::view_of(bytes.data(), t, Device::cpu, s);
              const TensorView device_view = test::view_of(dev.data(), t, Device::cuda, s);
              const auto cpu_scores = sel->scores_view(host_view, Execution::cpu());
              const auto gpu_scores = sel->scores_view(device_view, Execution::cuda());
              CHECK(same_bits(cpu_scores, gpu_scores));
              CHECK(sel->select_view(device_view, Execution::cuda()) == sel->select_view(host_view, Execution::cpu()));
            }
          }
        }
      }
    }
  }
}

TEST_CASE("select_view refuses a bad rank and a view on another device", "[cpu][selector]") {
  auto sel = make_selector("range", "layer");
  std::vector<float> x(16, 1.0f);
  CHECK_THROWS_AS(sel->select_view(TensorView{x.data(), DType::f32, Device::cpu, {16}}, Execution::cpu()), ShapeError);
  CHECK_THROWS_AS(sel->select_view(TensorView{x.data(), DType::f32, Device::cpu, {1, 4, 4}}, Execution::cuda()), ShapeError);
  // rank 2 is one head
  CHECK(sel->select_view(TensorView{x.data(), DType::f32, Device::cpu, {4, 4}}, Execution::cpu()).size() == 1);
}
