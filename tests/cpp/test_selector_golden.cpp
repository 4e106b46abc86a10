// Golden and property tests of the channel selectors range, variance and outlier (algorithms.md 3.1).
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "fixture_quantizers.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

std::unique_ptr<ChannelSelector> make(const std::string& type, std::initializer_list<std::pair<std::string, ConfigNode>> extra = {}) {
  ConfigNode n = map({{"type", scalar(type)}});
  for (const auto& [k, v] : extra) n.set(k, v);
  return test::builtin_registry().make_channel_selector(n);
}

std::vector<std::uint8_t> mask_of(std::initializer_list<int> ones, int channels) {
  std::vector<std::uint8_t> m(static_cast<std::size_t>(channels), 0);
  for (int c : ones) m[static_cast<std::size_t>(c)] = 1;
  return m;
}

// heads 2, tokens 3, channels 4:
//   head 0: [1, 0, -2, 5]   head 1: [0,  1, 0, 0]
//           [3, 0,  2, 5]           [0, -1, 0, 0]
//           [2, 0,  0, 4]           [0,  7, 0, 0]
const std::vector<float> kBlock = {1, 0, -2, 5, 3, 0, 2, 5, 2, 0, 0, 4,  //
                                   0, 1, 0, 0, 0, -1, 0, 0, 0, 7, 0, 0};
const BlockShape kShape{2, 3, 4};

}  // namespace

TEST_CASE("range: max - min over the heads in scope, top half", "[selector][range]") {
  // Layer scope: ch0 over {1,3,2,0,0,0}: 3 - 0 = 3; ch1 {0,0,0,1,-1,7}: 7 - (-1) = 8; ch2 {-2,2,0,0,0,0}: 4;
  // ch3 {5,5,4,0,0,0}: 5. fraction 0.5 of 4 -> k = 2: channels 1 and 3.
  auto layer = make("range");
  CHECK(layer->score(kBlock.data(), kShape, 0, 2) == std::vector<double>{3, 8, 4, 5});
  auto masks = layer->select(kBlock.data(), kShape);
  REQUIRE(masks.size() == 1);
  CHECK(masks[0] == mask_of({1, 3}, 4));
  // Head scope: head 0 scores {2, 0, 4, 1} -> {0, 2}; head 1 scores {0, 8, 0, 0} -> 1 and the tie 0/2/3 goes to
  // the lower index 0 -> {0, 1}.
  auto head = make("range", {{"scope", scalar("head")}});
  masks = head->select(kBlock.data(), kShape);
  REQUIRE(masks.size() == 2);
  CHECK(masks[0] == mask_of({0, 2}, 4));
  CHECK(masks[1] == mask_of({0, 1}, 4));
}

TEST_CASE("variance: population variance (divisor n)", "[selector][variance]") {
  // ch0 {1,3,2,0,0,0}: mean 1, squared deviations 0+4+1+1+1+1 = 8 -> 8/6; ch1 {0,0,0,1,-1,7}: 51/6 - (7/6)^2;
  // ch2 {-2,2,0,0,0,0}: 8/6; ch3 {5,5,4,0,0,0}: 66/6 - (14/6)^2.
  auto s = make("variance")->score(kBlock.data(), kShape, 0, 2);
  REQUIRE(s.size() == 4);
  CHECK(std::fabs(s[0] - 8.0 / 6) < 1e-12);
  CHECK(std::fabs(s[1] - (51.0 / 6 - 49.0 / 36)) < 1e-12);
  CHECK(std::fabs(s[2] - 8.0 / 6) < 1e-12);
  CHECK(std::fabs(s[3] - (11.0 - 196.0 / 36)) < 1e-12);
}

TEST_CASE("range, variance and outlier disagree where they should", "[selector][outlier]") {
  // One head, 6 tokens, 2 channels: A = {0,0,0,0,0,10}, B = {-4,4,-4,4,-4,4}; count 1.
  //   range:    A 10, B 8                      -> A
  //   variance: A 100/6 - (10/6)^2 = 13.89, B 16 -> B
  //   outlier absolute, M 3: A mean|x| 10/6, threshold 5: one value (10); B mean|x| 4, threshold 12: none -> A
  //   outlier signed, M 3:   A mean 10/6 -> one (10);  B mean 0, threshold 0: the three 4s              -> B
  const std::vector<float> x = {0, -4, 0, 4, 0, -4, 0, 4, 0, -4, 10, 4};
  const BlockShape shape{1, 6, 2};
  const auto one = std::pair<std::string, ConfigNode>{"count", scalar("1")};
  CHECK(make("range", {one})->select(x.data(), shape)[0] == mask_of({0}, 2));
  CHECK(make("variance", {one})->select(x.data(), shape)[0] == mask_of({1}, 2));
  auto abs = make("outlier", {one});
  CHECK(abs->score(x.data(), shape, 0, 1) == std::vector<double>{1, 0});
  CHECK(abs->select(x.data(), shape)[0] == mask_of({0}, 2));
  auto sgn = make("outlier", {one, {"mode", scalar("signed")}});
  CHECK(sgn->score(x.data(), shape, 0, 1) == std::vector<double>{1, 3});
  CHECK(sgn->select(x.data(), shape)[0] == mask_of({1}, 2));
  // M = 2.5 (absolute): A threshold 4.17 -> 1; B threshold 10 -> 0. M = 0.5: A 0.83 -> 1; B 2 -> 6.
  CHECK(make("outlier", {{"multiplier", scalar("0.5")}})->score(x.data(), shape, 0, 1) == std::vector<double>{1, 6});
}

TEST_CASE("selector counts follow fraction, count and the release's 32 rule", "[selector]") {
  CHECK(make("range")->selected_count(128) == 64);
  CHECK(make("range", {{"fraction", scalar("0.25")}})->selected_count(128) == 32);
  CHECK(make("range", {{"fraction", scalar("0.75")}})->selected_count(128) == 96);
  CHECK(make("range", {{"fraction", scalar("0.001")}})->selected_count(128) == 32);  // int(0.128) = 0 -> 32
  CHECK(make("range", {{"count", scalar("5")}})->selected_count(128) == 5);
  CHECK_THROWS_AS(make("range", {{"count", scalar("9")}})->selected_count(8), ConfigError);
  CHECK_THROWS_AS(make("outlier", {{"mode", scalar("abs")}}), ConfigError);
}

TEST_CASE("selectors are equivariant under channel permutation", "[selector][property]") {
  std::mt19937 gen(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const BlockShape shape{3, 17, 12};
  std::vector<float> x(static_cast<std::size_t>(shape.elements()));
  for (auto& v : x) v = normal(gen) * 2.0f;
  std::vector<int> perm(12);
  for (int c = 0; c < 12; ++c) perm[static_cast<std::size_t>(c)] = (5 * c + 3) % 12;  // 5 is invertible mod 12
  // permuted[h, t, c] = x[h, t, perm[c]]
  std::vector<float> y(x.size());
  for (std::int64_t h = 0; h < shape.heads; ++h)
    for (std::int64_t t = 0; t < shape.tokens; ++t)
      for (std::int64_t c = 0; c < shape.channels; ++c)
        y[static_cast<std::size_t>((h * shape.tokens + t) * shape.channels + c)] =
            x[static_cast<std::size_t>((h * shape.tokens + t) * shape.channels + perm[static_cast<std::size_t>(c)])];
  for (const char* type : {"range", "variance", "outlier"}) {
    for (const char* scope : {"layer", "head"}) {
      INFO(type << " scope " << scope);
      auto sel = std::string(type) == "outlier"
                     ? make(type, {{"scope", scalar(scope)}, {"multiplier", scalar("1.5")}})
                     : make(type, {{"scope", scalar(scope)}, {"fraction", scalar("0.5")}});
      for (std::int64_t s = 0; s < sel->mask_count(shape); ++s) {
        const std::int64_t h0 = std::string(scope) == "layer" ? 0 : s, h1 = std::string(scope) == "layer" ? shape.heads : s + 1;
        const auto sx = sel->score(x.data(), shape, h0, h1);
        const auto sy = sel->score(y.data(), shape, h0, h1);
        // Scores permute exactly (per-channel sums run over the same values in the same order).
        for (int c = 0; c < 12; ++c) CHECK(sy[static_cast<std::size_t>(c)] == sx[static_cast<std::size_t>(perm[static_cast<std::size_t>(c)])]);
      }
      if (std::string(type) != "outlier") {  // integer outlier counts tie, and ties go to the lower index
        const auto mx = sel->select(x.data(), shape);
        const auto my = sel->select(y.data(), shape);
        for (std::size_t m = 0; m < mx.size(); ++m)
          for (int c = 0; c < 12; ++c) CHECK(my[m][static_cast<std::size_t>(c)] == mx[m][static_cast<std::size_t>(perm[static_cast<std::size_t>(c)])]);
      }
    }
  }
}
