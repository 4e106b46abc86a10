// uniform_format::half_decode_exact (uniform_half_decode.h): the condition under which the CUDA fast decoders decode
// a group to fp16 with one fused fp16 multiply-add instead of the reference's two fp32 steps. Soundness: wherever it
// holds, every code's fp32 decode is the exact value q s + m (so RN16 of it is what the fused fp16 operation gives).
#include <cmath>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/dtype.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/plugins/quantizers/uniform/uniform_half_decode.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

// Whether the reference's fp32 decode of every code q in `codes` equals q s + m computed exactly (in double: q s has
// at most 19 significant bits, m 11, and their exponents lie within 2^-24 .. 2^24, so the double sum is exact).
bool fp32_decode_exact(std::uint16_t s_bits, std::uint16_t m_bits, const std::vector<unsigned>& codes) {
  const float s = half_bits_to_float(s_bits), m = half_bits_to_float(m_bits);
  for (const unsigned q : codes) {
    const double exact = static_cast<double>(q) * static_cast<double>(s) + static_cast<double>(m);
    if (static_cast<double>(uniform_format::decode_value(q, s, m)) != exact) return false;
  }
  return true;
}

std::vector<unsigned> codes_of(unsigned top) {
  std::vector<unsigned> q;
  if (top <= 15) {
    for (unsigned c = 0; c <= top; ++c) q.push_back(c);
  } else {
    for (unsigned c : {0u, 1u, 2u, 3u, 7u, 64u, 127u, 128u, 129u, 191u, 253u, 254u, 255u}) q.push_back(c);
  }
  return q;
}

}  // namespace

TEST_CASE("half_decode_exact: golden cases worked out by hand", "[cpu][uniform]") {
  // s = 0.25 (0x3400, E 13: limit 2^12), m = -3 (0xC200, E 16: limit 2^15): limit 4096; 3 * 0.25 + 3 = 3.75 < 4096.
  CHECK(uniform_format::half_decode_exact(0x3400, 0xC200, 3));
  // s = 2^-24 (0x0001, subnormal: limit 2^0 = 1), m = 1000 (0x63D0): 3 * 2^-24 + 1000 >= 1 -> false; and indeed
  // 1000 + 2^-24 is not an fp32 value (1000 needs 10 bits above the point, 2^-24 24 below: 34 > 24).
  CHECK_FALSE(uniform_format::half_decode_exact(0x0001, 0x63D0, 3));
  CHECK_FALSE(fp32_decode_exact(0x0001, 0x63D0, {1}));
  // s = 0 and m = 0 (either sign): every code decodes to +-0 exactly.
  CHECK(uniform_format::half_decode_exact(0x0000, 0x8000, 255));
  // s = 0, m = 65504 (0x7BFF, E 30: limit 2^29): 65504 < 2^29.
  CHECK(uniform_format::half_decode_exact(0x0000, 0x7BFF, 255));
  // inf / NaN scale or min, negative scale: never.
  CHECK_FALSE(uniform_format::half_decode_exact(0x7C00, 0x3C00, 3));
  CHECK_FALSE(uniform_format::half_decode_exact(0x3C00, 0x7E00, 3));
  CHECK_FALSE(uniform_format::half_decode_exact(0xBC00, 0x3C00, 3));
  // The bound is strict at the limit: s = 1 (E 15: limit 2^14 = 16384), m = 16384 - 3 = 16381 is not an fp16 value;
  // m = 16368 (0x73FE, E 28: limit 2^27): limit 16384 from s; 3 + 16368 = 16371 < 16384 -> true.
  CHECK(uniform_format::half_decode_exact(0x3C00, 0x73FE, 3));
  // s = 1, m = 16384 (0x7400): 3 + 16384 >= 16384 -> false (sufficient condition only: here the sum is exact).
  CHECK_FALSE(uniform_format::half_decode_exact(0x3C00, 0x7400, 3));
  // Why the comparison is strict: s = 2^-24 (limit 1), m = 1 (0x3C00, limit 2^14), 1 bit: top s + m = 1 + 2^-24
  // rounds to 1.0 in fp32, equal to the limit; and 1 + 2^-24 is indeed not an fp32 value (a bound with <= would
  // accept this pair wrongly).
  CHECK_FALSE(uniform_format::half_decode_exact(0x0001, 0x3C00, 1));
  CHECK_FALSE(fp32_decode_exact(0x0001, 0x3C00, {1}));
}

TEST_CASE("half_decode_exact is sound: where it holds, the reference's fp32 decode is exact for every code", "[cpu][uniform]") {
  // Every finite non-negative fp16 scale against mins of every exponent (both signs, zeros, subnormals, the largest
  // finite), at 1, 2, 4 and 8 bits. The condition must also hold often: at least a third of these pairs.
  std::vector<std::uint16_t> mins{0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x7BFF, 0xFBFF, 0x3C00, 0xBC00};
  std::uint64_t state = 0x9E3779B97F4A7C15ull;
  for (int i = 0; i < 30; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    std::uint16_t b = static_cast<std::uint16_t>(state >> 48);
    if ((b & 0x7C00u) == 0x7C00u) b = static_cast<std::uint16_t>(b & 0xBFFFu);  // finite
    mins.push_back(b);
  }
  for (const unsigned bits : {1u, 2u, 4u, 8u}) {
    const unsigned top = uniform_format::max_code(bits);
    const std::vector<unsigned> codes = codes_of(top);
    std::size_t pairs = 0, exact_pairs = 0, unsound = 0;
    for (std::uint32_t s = 0; s < 0x7C00u; ++s)
      for (const std::uint16_t m : mins) {
        ++pairs;
        if (!uniform_format::half_decode_exact(static_cast<std::uint16_t>(s), m, top)) continue;
        ++exact_pairs;
        if (!fp32_decode_exact(static_cast<std::uint16_t>(s), m, codes)) ++unsound;
      }
    INFO("bits " << bits << ": the condition holds for " << exact_pairs << " of " << pairs << " (scale, min) pairs");
    CHECK(unsound == 0);
    CHECK(exact_pairs * 3 > pairs);
  }
}

TEST_CASE("half_decode_exact holds for the groups the reference encodes from Gaussian fp16 data at 2 bits", "[cpu][uniform]") {
  // kivi-2's configuration (2 bits, G = 32, fp16 metadata), both axes: the groups whose metadata the fused path can
  // take. Every such group qualifies here (a 2-bit scale is a third of its range, at least a third of one fp16 step
  // of the values: its grid times 2^24 is far above |min|); at 8 bits most do.
  const BlockShape shape{2, 64, 128};
  auto x = gaussian(static_cast<std::size_t>(shape.elements()), 77u);
  for (std::size_t i = 0; i < x.size(); i += 5) x[i] *= 40.0f;  // outlier channels / tokens
  for (float& v : x) v = round_to_dtype(v, DType::f16);
  for (const char* axis : {"channel", "token"})
    for (const unsigned bits : {2u, 8u}) {
      auto q = make("uniform", {{"bits", std::to_string(bits)}, {"axis", axis}, {"scale_dtype", "fp16"}});
      const auto bytes = encode(*q, shape, x);
      const auto g = group_format::make_group_grid(std::string(axis) == "channel" ? group_format::GroupAxis::channel
                                                                                  : group_format::GroupAxis::token,
                                                   shape.heads, shape.tokens, shape.channels, 32);
      const auto sec = uniform_format::sections(group_format::CodeLayout::dense, g, bits, DType::f16, bytes.data());
      std::size_t exact = 0;
      const auto n = static_cast<std::size_t>(g.group_count());
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t s, m;
        std::memcpy(&s, sec.scales + 2 * i, 2);
        std::memcpy(&m, sec.mins + 2 * i, 2);
        exact += uniform_format::half_decode_exact(s, m, uniform_format::max_code(bits));
      }
      INFO(axis << " axis, " << bits << " bits: " << exact << " of " << n << " groups");
      if (bits == 2) CHECK(exact == n);
      else CHECK(exact * 10 >= n * 9);
    }
}
