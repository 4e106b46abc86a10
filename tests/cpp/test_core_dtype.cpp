#include <cmath>
#include <limits>

#include "catch.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/core/error.h"

using namespace vidkv;

TEST_CASE("fp16 conversion matches IEEE binary16 on hand-picked values", "[core][dtype]") {
  // 1.0 = 0x3c00; -2.0 = 0xc000; 65504 = max finite 0x7bff; 2^-24 = smallest subnormal 0x0001.
  CHECK(float_to_half_bits(1.0f) == 0x3c00);
  CHECK(float_to_half_bits(-2.0f) == 0xc000);
  CHECK(float_to_half_bits(65504.0f) == 0x7bff);
  CHECK(float_to_half_bits(65520.0f) == 0x7c00);  // rounds up to inf (halfway to 2^16, ties to even -> inf)
  CHECK(float_to_half_bits(std::ldexp(1.0f, -24)) == 0x0001);
  CHECK(float_to_half_bits(std::ldexp(1.0f, -25)) == 0x0000);  // exactly half the smallest subnormal: ties to even 0
  CHECK(float_to_half_bits(std::ldexp(1.5f, -25)) == 0x0001);
  // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: ties to even keeps 1.0; 1 + 3*2^-11 rounds up to 1 + 2^-9.
  CHECK(float_to_half_bits(1.0f + std::ldexp(1.0f, -11)) == 0x3c00);
  CHECK(float_to_half_bits(1.0f + 3 * std::ldexp(1.0f, -11)) == 0x3c02);
  CHECK(std::isnan(half_bits_to_float(float_to_half_bits(std::numeric_limits<float>::quiet_NaN()))));
  CHECK(half_bits_to_float(0x3555) == 0.333251953125f);
}

TEST_CASE("fp16 round trip is exact for every finite half value", "[core][dtype]") {
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    const auto bits = static_cast<std::uint16_t>(h);
    if ((bits & 0x7c00) == 0x7c00) continue;  // inf / nan
    REQUIRE(float_to_half_bits(half_bits_to_float(bits)) == bits);
  }
}

TEST_CASE("bf16 conversion rounds to nearest even", "[core][dtype]") {
  CHECK(float_to_bf16_bits(1.0f) == 0x3f80);
  // 1 + 2^-8 is halfway between bf16 1.0 and 1 + 2^-7: ties to even -> 1.0
  CHECK(float_to_bf16_bits(1.0f + std::ldexp(1.0f, -8)) == 0x3f80);
  CHECK(float_to_bf16_bits(1.0f + 3 * std::ldexp(1.0f, -8)) == 0x3f82);
  CHECK(bf16_bits_to_float(0x3f80) == 1.0f);
}

TEST_CASE("tensor views convert and check shapes", "[core][tensor]") {
  HostTensor t({2, 3}, DType::f16);
  from_float({1, 2, 3, 4, 5, 0.1f}, t.view());
  auto back = to_float(t.view());
  CHECK(back[4] == 5.0f);
  CHECK(back[5] == half_bits_to_float(float_to_half_bits(0.1f)));
  CHECK_THROWS_AS(t.view().require_shape({2, 4}, "/layers/000/key"), ShapeError);
  try {
    t.view().require_shape({3, -1}, "/layers/000/key");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()) == "/layers/000/key: expected shape [3, *], got [2, 3] fp16");
  }
  CHECK(parse_dtype("bfloat16", "x") == DType::bf16);
  CHECK_THROWS_AS(parse_dtype("fp8", "codec.scale_dtype"), ConfigError);
}
