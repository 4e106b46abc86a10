// Golden tests of the `ternary` quantizer (VidKV 1.58-bit values, algorithms.md 2.3) in its three packings.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/error.h"
#include "vidkv/core/bit_packing.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {
// Block [1 x 6 tokens x 1 channel], G = 4, gamma 0.5 (the release's):
//   group 0 [2.0, -0.5, 0.5, -1.0]: m = 4/4 = 1, a = 0.5 -> t = [1, 0, 0, -1] (|x| == a stays 0: strict >, <)
//   tail    [0.25, -0.125]:        m = 0.1875, a = 0.09375 -> t = [1, -1]
// Trits t + 1 = [2, 1, 1, 0, 2, 0].
//   base3:   byte 0 = 2 + 1*3 + 1*9 + 0*27 + 2*81 = 176 = 0xB0; byte 1 = 0 (digit 0 of the -1)
//   slots2:  byte 0 = 2 | 1<<2 | 1<<4 | 0<<6 = 0x16; byte 1 = 2 | 0<<2 = 0x02
//   release: word 0x00000216, then scales m = 1.0 (0x3C00), 0.1875 (0x3200), then mins -1 (0xBC00) x 2
// scaled: u = mean(|x| over |x| > a) = (2 + 1)/2 = 1.5 (0x3E00) and (0.25 + 0.125)/2 = 0.1875.
const BlockShape kShape{1, 6, 1};
const std::vector<float> kX{2.0f, -0.5f, 0.5f, -1.0f, 0.25f, -0.125f};
const std::vector<float> kT{1, 0, 0, -1, 1, -1};
}  // namespace

TEST_CASE("ternary golden slab in base3, slots2 and release packings", "[quantizer][ternary]") {
  auto base3 = make("ternary", {{"gamma", "0.5"}, {"group", "4"}});
  const auto b3 = encode(*base3, kShape, kX);
  CHECK(b3 == std::vector<std::uint8_t>{0xB0, 0x00});
  CHECK(decode(*base3, kShape, b3) == kT);
  const std::int8_t trits[5] = {1, 0, 0, -1, 1};
  CHECK(bits::trit_pack5(trits, 5) == 0xB0);  // the same bytes as core/bit_packing.h

  auto slots = make("ternary", {{"gamma", "0.5"}, {"group", "4"}, {"packing", "slots2"}});
  const auto b2 = encode(*slots, kShape, kX);
  CHECK(b2 == std::vector<std::uint8_t>{0x16, 0x02});
  CHECK(decode(*slots, kShape, b2) == kT);

  auto rel = make("ternary", {{"gamma", "0.5"}, {"group", "4"}, {"packing", "release"}});
  const auto br = encode(*rel, kShape, kX);
  CHECK(br == std::vector<std::uint8_t>{0x16, 0x02, 0x00, 0x00, 0x00, 0x3C, 0x00, 0x32, 0x00, 0xBC, 0x00, 0xBC});
  CHECK(decode(*rel, kShape, br) == kT);
  CHECK(std::abs(base3->layout(kShape, {}).nominal_bits() - 1.584962500721156) < 1e-12);  // log2(3)
}

TEST_CASE("ternary scaled reconstruction stores mean |x| over the kept values", "[quantizer][ternary]") {
  auto q = make("ternary", {{"gamma", "0.5"}, {"group", "4"}, {"reconstruction", "scaled"}});
  const auto b = encode(*q, kShape, kX);
  CHECK(b == std::vector<std::uint8_t>{0xB0, 0x00, 0x00, 0x3E, 0x00, 0x32});
  CHECK(decode(*q, kShape, b) == std::vector<float>{1.5f, 0, 0, -1.5f, 0.1875f, -0.1875f});
}

TEST_CASE("ternary default gamma 0.7, all-zero and constant groups", "[quantizer][ternary]") {
  // gamma 0.7 on group 0: a = 0.7 -> [2 -> 1, -0.5 -> 0, 0.5 -> 0, -1 -> -1]; tail a = 0.13125 -> [1, 0]
  // (|-0.125| < a).
  auto q = make("ternary", {{"group", "4"}});
  CHECK(decode(*q, kShape, encode(*q, kShape, kX)) == std::vector<float>{1, 0, 0, -1, 1, 0});
  // All-zero group: m = 0, a = 0, x > 0 false -> t = 0. Constant 3 with gamma 4: a = 12, nothing kept, u = 0.
  const BlockShape s{1, 4, 1};
  auto qs = make("ternary", {{"reconstruction", "scaled"}});
  CHECK(decode(*qs, s, encode(*qs, s, {0, 0, 0, 0})) == std::vector<float>(4, 0.0f));
  auto q4 = make("ternary", {{"reconstruction", "scaled"}, {"gamma", "4"}});
  CHECK(decode(*q4, s, encode(*q4, s, {3, 3, 3, 3})) == std::vector<float>(4, 0.0f));
  // Constant 3 with gamma 0.7: a = 2.1, all +1, u = 3 exactly.
  CHECK(decode(*qs, s, encode(*qs, s, {3, 3, 3, 3})) == std::vector<float>(4, 3.0f));
}

// The byte -> digits table of the CUDA decoders and the attention kernels (ternary_format::base3_byte_slots) holds, in
// slot i, what bits::trit_get reads at digit i, plus 1, for every byte value. Golden: 176 (the slab's base3 byte
// above) = 2 + 1*3 + 1*9 + 0*27 + 2*81 -> slots 2, 1, 1, 0, 2 = 0b10'00'01'01'10 = 0x216; 255 (past 3^5 - 1 = 242,
// never written, but read back as the digits of the division chain) = 0 + 1*3 + 1*9 + 0*27 + 3*81: digit 4 is
// 255 / 81 = 3, taken mod 3 -> 0 -> slots 0, 1, 1, 0, 0 = 0x014.
TEST_CASE("ternary base3 byte -> slots table matches trit_get for every byte", "[quantizer][ternary]") {
  CHECK(ternary_format::base3_byte_slots(176) == 0x216);
  CHECK(ternary_format::base3_byte_slots(255) == 0x014);
  for (unsigned byte = 0; byte < ternary_format::kByteSlotEntries; ++byte) {
    const std::uint16_t s = ternary_format::base3_byte_slots(byte);
    CHECK(s >> 10 == 0);
    for (unsigned i = 0; i < 5; ++i) CHECK(static_cast<int>((s >> (2 * i)) & 3u) - 1 == bits::trit_get(static_cast<std::uint8_t>(byte), i));
  }
}

TEST_CASE("ternary: the key `layout` (uniform's and sign's name) suggests `packing`, and sign's `packing` suggests `layout`",
          "[quantizer][ternary]") {
  auto message = [](const std::string& name, const KeyValues& params) {
    try {
      make(name, params);
    } catch (const ConfigError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string t = message("ternary", {{"layout", "fragment"}});
  CHECK(t.find("unknown key 'layout' for ternary (did you mean 'packing'? ternary calls its byte layout 'packing')") !=
        std::string::npos);
  const std::string s = message("sign", {{"packing", "fragment"}});
  CHECK(s.find("unknown key 'packing' for sign (did you mean 'layout'? sign calls its byte layout 'layout')") !=
        std::string::npos);
}
