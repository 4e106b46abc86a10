// Golden tests of the `uniform` quantizer (asymmetric min/max, algorithms.md 2.1) and the release test vectors.
#include <cstdint>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"

using namespace vidkv;
using namespace vidkv::test;

TEST_CASE("uniform 2-bit per-channel golden slab: rounding, half-to-even, tail group, constant group, fp16 scale",
          "[quantizer][uniform]") {
  // Block [1 head x 6 tokens x 2 channels], G = 4 tokens, axis channel: each channel is a row of 6 tokens cut into
  // a group of 4 and a tail group of 6 mod 4 = 2.
  //   channel 0: [0.0, 0.4, 1.5, 3.0 | 5.0, 5.0]
  //     group 0: mn 0, mx 3, scale 3/3 = 1 (fp16 0x3C00). codes (x-0)/1 = 0, 0.4 -> 0, 1.5 -> 2 (half to even), 3
  //     tail:    constant 5: scale 0 -> codes 0 0, min 5 (0x4500), decodes to 5 exactly
  //   channel 1: [-1.0, 0.5, 2.0, 0.25 | 7.0, -1.0]
  //     group 0: mn -1, mx 2, scale 1. (x+1)/1 = 0, 1.5 -> 2, 3, 1.25 -> 1   decode -1, 1, 2, 0
  //     tail:    mn -1, mx 7, scale 8/3 = 2.6666667 -> fp16 2.666015625 (0x4155); (7+1)/2.666015625 = 3.0007 ->
  //              clamp 3; -1 -> 0. decode 3 * 2.666015625 - 1 = 6.998046875 and -1
  // Codes stream (channel, token order), 2 bits LSB first: ch0 [0 0 2 3 0 0], ch1 [0 2 3 1 3 0]
  //   byte 0 = 0 | 0<<2 | 2<<4 | 3<<6 = 0xE0; byte 1 = (ch0 t4, t5, ch1 t0, t1) = 2<<6 = 0x80;
  //   byte 2 = 3 | 1<<2 | 3<<4 | 0<<6 = 0x37.
  // Scales (ch, group): 1.0, 0, 1.0, 2.666015625 -> 00 3C 00 00 00 3C 55 41; mins: 0, 5, -1, -1 -> 00 00 00 45 00 BC 00 BC.
  const BlockShape s{1, 6, 2};
  const std::vector<float> x{0.0f, -1.0f, 0.4f, 0.5f, 1.5f, 2.0f, 3.0f, 0.25f, 5.0f, 7.0f, 5.0f, -1.0f};
  auto q = make("uniform", {{"bits", "2"}, {"group", "4"}});
  const auto bytes = encode(*q, s, x);
  const std::vector<std::uint8_t> expected{0xE0, 0x80, 0x37, 0x00, 0x3C, 0x00, 0x00, 0x00, 0x3C, 0x55, 0x41,
                                           0x00, 0x00, 0x00, 0x45, 0x00, 0xBC, 0x00, 0xBC};
  CHECK(bytes == expected);
  const std::vector<float> want{0.0f, -1.0f, 0.0f, 1.0f, 2.0f, 2.0f, 3.0f, 0.0f, 5.0f, 6.998046875f, 5.0f, -1.0f};
  CHECK(decode(*q, s, bytes) == want);
  const auto l = q->layout(s, {});
  CHECK(l.nominal_bits() == 2.0);
  CHECK(l.bytes() == 19);
  CHECK(l.sections().size() == 3);
}

TEST_CASE("uniform 1-bit per-token golden slab with a 1-element tail and constant groups", "[quantizer][uniform]") {
  // Block [1 x 2 tokens x 3 channels], G = 2 channels, axis token: each token is a row [c0 c1 | c2 (tail)].
  //   token 0: [1, 3 | 2]: mn 1, mx 3, scale 2/1 = 2 (0x4000); codes 0, 1. tail [2]: constant, code 0, min 2
  //   token 1: [4, 4 | -2]: constant 4 -> codes 0 0, scale 0, min 4; tail [-2] -> code 0, min -2
  // Stream (token, channel): 0 1 0 0 0 0 -> byte 0x02. Scales: 2, 0, 0, 0; mins: 1, 2, 4, -2.
  const BlockShape s{1, 2, 3};
  const std::vector<float> x{1, 3, 2, 4, 4, -2};
  auto q = make("uniform", {{"bits", "1"}, {"group", "2"}, {"axis", "token"}});
  const auto bytes = encode(*q, s, x);
  const std::vector<std::uint8_t> expected{0x02, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                           0x00, 0x3C, 0x00, 0x40, 0x00, 0x44, 0x00, 0xC0};
  CHECK(bytes == expected);
  CHECK(decode(*q, s, bytes) == x);
}

TEST_CASE("uniform codes use the stored fp16-rounded min and scale", "[quantizer][uniform]") {
  // A constant group of 0.1 (not an fp16 value): code 0 and decode to the stored min fp16(0.1) = 0.0999755859375
  // (0x2E66); with scale_dtype fp32 the constant decodes to 0.1f exactly.
  const BlockShape s{1, 3, 1};
  const std::vector<float> x{0.1f, 0.1f, 0.1f};
  auto q16 = make("uniform", {{"bits", "2"}});
  const auto b16 = encode(*q16, s, x);
  CHECK(b16 == std::vector<std::uint8_t>{0x00, 0x00, 0x00, 0x66, 0x2E});
  CHECK(decode(*q16, s, b16) == std::vector<float>(3, 0.0999755859375f));
  auto q32 = make("uniform", {{"bits", "2"}, {"scale_dtype", "fp32"}});
  CHECK(decode(*q32, s, encode(*q32, s, x)) == x);

  // Group [0.1, 0.7, 1.0, 0.4], 2 bits: mn' = fp16(0.1) = 0.0999755859375, scale = (1 - 0.1f) / 3 = 0.29999998
  // -> fp16 0.300048828125 (0x34CD). Codes against the STORED values: (0.7 - mn') / scale' = 1.99976 -> 2,
  // (1.0 - mn') / scale' = 2.99959 -> 3, (0.4 - mn') / scale' = 0.99992 -> 1; decode 0.70007324, 1.00012207.
  const std::vector<float> y{0.1f, 0.7f, 1.0f, 0.4f};
  const BlockShape s4{1, 4, 1};
  const auto by = encode(*q16, s4, y);
  CHECK(by[0] == (0u | 2u << 2 | 3u << 4 | 1u << 6));
  const auto dy = decode(*q16, s4, by);
  CHECK(dy[1] == 2.0f * 0.300048828125f + 0.0999755859375f);
  CHECK(dy[2] == 3.0f * 0.300048828125f + 0.0999755859375f);
}

TEST_CASE("uniform release layout reproduces the release's 2-bit test vector words", "[quantizer][uniform][release]") {
  // algorithms.md 2.4: codes [3, 1, 0, ..., 0, 2 at index 15] -> word 0x80000007, code 3 at index 16 -> next word
  // 0x00000003. One channel of 32 tokens (one group): mn 0, mx 3 gives scale 1 so that code = value.
  const BlockShape s{1, 32, 1};
  std::vector<float> x(32, 0.0f);
  x[0] = 3.0f;
  x[1] = 1.0f;
  x[15] = 2.0f;
  x[16] = 3.0f;
  auto q = make("uniform", {{"bits", "2"}, {"layout", "release"}});
  const auto bytes = encode(*q, s, x);
  REQUIRE(bytes.size() == 8 + 2 + 2);
  CHECK(word_at(bytes, 0) == 0x80000007u);
  CHECK(word_at(bytes, 4) == 0x00000003u);
  CHECK(decode(*q, s, bytes) == x);
  // The dense layout holds the same bitstream here (32 codes fill the words exactly).
  auto qd = make("uniform", {{"bits", "2"}});
  CHECK(encode(*qd, s, x) == bytes);
}

TEST_CASE("uniform release layout: constant group gives code 0 and exact reconstruction, tail pads the row word",
          "[quantizer][uniform][release]") {
  // [1 x 45 x 2], channel 0 constant 0.75 (an fp16 value), channel 1 = token index (0..44).
  // Channel 1: group 0 tokens 0..31: mn 0, mx 31, scale 31/3 = 10.333 -> fp16 10.3359375; tail tokens 32..44:
  // mn 32, mx 44, scale 4. Row = ceil(45 / 16) = 3 words, so codes = 2 rows * 3 words * 4 bytes = 24 bytes.
  const BlockShape s{1, 45, 2};
  std::vector<float> x(90);
  for (int t = 0; t < 45; ++t) {
    x[2 * t] = 0.75f;
    x[2 * t + 1] = static_cast<float>(t);
  }
  auto q = make("uniform", {{"bits", "2"}, {"layout", "release"}});
  const auto l = q->layout(s, {});
  CHECK(l.sections()[0].bytes == 24);
  CHECK(l.bytes() == 24 + 2 * 4 * 2);
  const auto bytes = encode(*q, s, x);
  for (int w = 0; w < 3; ++w) CHECK(word_at(bytes, 4 * w) == 0u);
  const auto y = decode(*q, s, bytes);
  for (int t = 0; t < 45; ++t) CHECK(y[2 * t] == 0.75f);
  // Tail group: (t - 32) / 4 -> codes 0,0,0(0.5->0),1(0.75),1,1,2(1.5->2),2,2,2(2.25),2(2.5->2),3(2.75),3.
  // Word 2 of channel 1 (tokens 32..44 at slots 0..12) = sum code_k << 2k.
  const unsigned tail_codes[13] = {0, 0, 0, 1, 1, 1, 2, 2, 2, 2, 2, 3, 3};
  std::uint32_t w2 = 0;
  for (unsigned k = 0; k < 13; ++k) w2 |= tail_codes[k] << (2 * k);
  CHECK(word_at(bytes, 12 + 8) == w2);
}

TEST_CASE("uniform rejects invalid parameters with ConfigErrors naming the key", "[quantizer][uniform]") {
  CHECK_THROWS_AS(make("uniform", {{"bits", "0"}}), ConfigError);
  CHECK_THROWS_AS(make("uniform", {{"bits", "9"}}), ConfigError);
  CHECK_THROWS_AS(make("uniform", {{"group", "0"}}), ConfigError);
  CHECK_THROWS_AS(make("uniform", {{"scale_dtype", "bf8"}}), ConfigError);
  for (int bits : {1, 2, 4, 8}) CHECK_NOTHROW(make("uniform", {{"bits", std::to_string(bits)}, {"layout", "release"}}));
  for (int bits : {3, 5, 6, 7}) {
    try {
      make("uniform", {{"bits", std::to_string(bits)}, {"layout", "release"}});
      FAIL("expected ConfigError for bits " << bits);
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()).find("layout") != std::string::npos);
      CHECK(std::string(e.what()).find("bits = " + std::to_string(bits)) != std::string::npos);
    }
  }
  UniformParams p;
  p.bits = 3;
  p.layout = group_format::CodeLayout::release;
  CHECK_THROWS_AS(UniformQuantizer(p), ConfigError);
}
