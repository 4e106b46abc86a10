// Golden tests of the `sign` quantizer (VidKV 1-bit, algorithms.md 2.2) and its release test vector.
#include <cstdint>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"

using namespace vidkv;
using namespace vidkv::test;

TEST_CASE("sign golden slab: mean-|x| scales, >= 0 is bit 1, tail group, both reconstructions", "[quantizer][sign]") {
  // Block [1 x 3 tokens x 2 channels], G = 2 tokens, axis channel (groups: tokens {0, 1} and tail {2}).
  //   channel 0: [1.0, -3.0 | 0.5]    group 0: s = (1 + 3)/2 = 2 (0x4000), bits 1 0; tail: s = 0.5 (0x3800), bit 1
  //   channel 1: [-0.25, -0.75 | 0.0] group 0: s = 0.5, bits 0 0; tail: s = 0 (constant), bit 1 (0 >= 0)
  // Stream (channel, token): 1 0 1 0 0 1 -> byte 0b100101 = 0x25. Scales 2, 0.5, 0.5, 0.
  // zero_one decode: ch0 [2, 0, 0.5], ch1 [0, 0, 0]; symmetric: ch0 [2, -2, 0.5], ch1 [-0.5, -0.5, 0].
  const BlockShape s{1, 3, 2};
  const std::vector<float> x{1.0f, -0.25f, -3.0f, -0.75f, 0.5f, 0.0f};
  auto q = make("sign", {{"group", "2"}});
  const auto bytes = encode(*q, s, x);
  CHECK(bytes == std::vector<std::uint8_t>{0x25, 0x00, 0x40, 0x00, 0x38, 0x00, 0x38, 0x00, 0x00});
  CHECK(decode(*q, s, bytes) == std::vector<float>{2.0f, 0.0f, 0.0f, 0.0f, 0.5f, 0.0f});
  auto qs = make("sign", {{"group", "2"}, {"reconstruction", "symmetric"}});
  CHECK(encode(*qs, s, x) == bytes);
  CHECK(decode(*qs, s, bytes) == std::vector<float>{2.0f, -0.5f, -2.0f, -0.5f, 0.5f, 0.0f});
  CHECK(q->layout(s, {}).nominal_bits() == 1.0);
}

TEST_CASE("sign scale is rounded to fp16 (or kept in fp32)", "[quantizer][sign]") {
  // One group [1, 0, -0]: s = 1/3 -> fp16 0.333251953125 (0x3555); -0.0 >= 0 so every bit is 1.
  const BlockShape s{1, 3, 1};
  const std::vector<float> x{1.0f, 0.0f, -0.0f};
  auto q = make("sign");
  const auto bytes = encode(*q, s, x);
  CHECK(bytes == std::vector<std::uint8_t>{0x07, 0x55, 0x35});
  CHECK(decode(*q, s, bytes) == std::vector<float>(3, 0.333251953125f));
  auto q32 = make("sign", {{"scale_dtype", "fp32"}});
  CHECK(decode(*q32, s, encode(*q32, s, x)) == std::vector<float>(3, static_cast<float>(1.0 / 3.0)));
}

TEST_CASE("sign release layout reproduces the release's 1-bit test vector word and zero min", "[quantizer][sign][release]") {
  // algorithms.md 2.4: a 1-bit group of 32 where only elements 0 and 5 are non-negative -> word 0x00000021.
  // Element 5 is exactly 0 (non-negative). Values -1 - j/8 elsewhere.
  const BlockShape s{1, 32, 1};
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[j] = -1.0f - static_cast<float>(j) / 8.0f;
  x[0] = 0.5f;
  x[5] = 0.0f;
  auto q = make("sign", {{"layout", "release"}});
  const auto bytes = encode(*q, s, x);
  REQUIRE(bytes.size() == 4 + 2 + 2);
  CHECK(word_at(bytes, 0) == 0x00000021u);
  CHECK(bytes[6] == 0x00);  // the stored fp16 zero min
  CHECK(bytes[7] == 0x00);
  const auto l = q->layout(s, {});
  CHECK(l.sections().size() == 3);
  CHECK(l.bytes_of(SectionKind::zero_points) == 2);
  // Dense layout: same code bits, no min.
  auto qd = make("sign");
  const auto dense = encode(*qd, s, x);
  CHECK(dense.size() == 6);
  CHECK(word_at(dense, 0) == 0x00000021u);
}
