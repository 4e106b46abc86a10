// Golden tests of the `identity` quantizer.
#include <cstdint>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"

using namespace vidkv;
using namespace vidkv::test;

TEST_CASE("identity stores fp16, bf16 and fp32 with round to nearest even", "[quantizer][identity]") {
  // fp16: 1.0 -> 0x3C00; 0.1 -> 0x2E66 (0.0999755859375); 1 + 2^-11 is halfway between 1 and 1 + 2^-10 and rounds
  // to the even mantissa 0x3C00; 1e-8 is below half the smallest subnormal (2^-25) and becomes +0.
  const BlockShape s{1, 2, 2};
  const std::vector<float> x{1.0f, 0.1f, 1.0f + 0x1p-11f, 1e-8f};
  auto q16 = make("identity");
  const auto b16 = encode(*q16, s, x);
  CHECK(b16 == std::vector<std::uint8_t>{0x00, 0x3C, 0x66, 0x2E, 0x00, 0x3C, 0x00, 0x00});
  CHECK(decode(*q16, s, b16) == std::vector<float>{1.0f, 0.0999755859375f, 1.0f, 0.0f});
  CHECK(q16->layout(s, {}).nominal_bits() == 16.0);
  CHECK(q16->layout(s, {}).effective_bits() == 16.0);
  // bf16: 0.1f = 0x3DCCCCCD -> 0x3DCD (0.10009765625).
  auto qb = make("identity", {{"dtype", "bf16"}});
  CHECK(decode(*qb, s, encode(*qb, s, x))[1] == 0.10009765625f);
  auto q32 = make("identity", {{"dtype", "fp32"}});
  CHECK(decode(*q32, s, encode(*q32, s, x)) == x);
  CHECK(q32->layout(s, {}).effective_bits() == 32.0);
}
