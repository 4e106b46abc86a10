// Finite input never decodes to inf or NaN (issue 14 item 1): groups whose range does not fit the scale dtype
// saturate to its finite range (uniform_format.h stored_group, group_format.h saturate), on every implementation
// tier: the reference, the optimised path (AVX-512 kernels where the CPU has them) and, through the ctest run with
// VIDKV_CPU_KERNELS=portable ([optimized] tag), the portable optimised path. Values worked out by hand below.
#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

// [1 head, 32 tokens, 32 channels] with x[t][c] = -1 where t + c is even, 4 where odd (every group of 32 along
// either axis holds 16 of each), and x[5][7] = -125000 (so the channel-7 group / token-5 group holds 15 x -1,
// 16 x 4 and the outlier).
constexpr std::int64_t kT = 32, kC = 32, kOutT = 5, kOutC = 7;
std::vector<float> block_with_outlier(float outlier) {
  std::vector<float> x(kT * kC);
  for (std::int64_t t = 0; t < kT; ++t)
    for (std::int64_t c = 0; c < kC; ++c) x[static_cast<std::size_t>(t * kC + c)] = (t + c) % 2 ? 4.0f : -1.0f;
  x[kOutT * kC + kOutC] = outlier;
  return x;
}

bool in_outlier_group(std::int64_t t, std::int64_t c, const std::string& axis) {
  return axis == "channel" ? c == kOutC : t == kOutT;
}

bool all_finite(const std::vector<float>& v) {
  for (float f : v)
    if (!std::isfinite(f)) return false;
  return true;
}

const CpuImplementation kTiers[] = {CpuImplementation::reference, CpuImplementation::optimized};
const char* tier_name(CpuImplementation i) { return i == CpuImplementation::reference ? "reference" : "optimized"; }

}  // namespace

TEST_CASE("uniform 2-bit fp16: a group holding -125000 saturates its min instead of decoding to -inf",
          "[quantizer][uniform][overflow][optimized]") {
  // Outlier group: mn = -125000 (fp16 would round it to -inf), mx = 4, (mx - mn) / 3 = 41668 fits fp16.
  // Saturated: min = -65504; scale = round_fp16((4 + 65504) / 3 = 21836) = 21840 (fp16 spacing 16 there).
  // Levels -65504, -43664, -21824, 16: -1 and 4 give (x + 65504) / 21840 = 2.9993 / 2.9995 -> code 3 -> 16;
  // -125000 -> code 0 -> -65504. Every other group: min -1, scale fp16(5/3) = 1.6669921875, decodes -1 and
  // 3 * 1.6669921875 - 1 = 4.0009765625, exactly as before the fix (bytes unchanged: the conformance tests).
  const std::vector<float> x = block_with_outlier(-125000.0f);
  const BlockShape s{1, kT, kC};
  std::vector<std::uint8_t> reference_bytes;
  for (const CpuImplementation tier : kTiers)
    for (const std::string axis : {"channel", "token"}) {
      INFO(tier_name(tier) << ", axis " << axis);
      const auto q = test::builtin_registry(tier).make_quantizer(
          quantizer_block("uniform", {{"bits", "2"}, {"group", "32"}, {"axis", axis}, {"scale_dtype", "fp16"}}));
      const auto bytes = encode(*q, s, x);
      const auto y = decode(*q, s, bytes);
      REQUIRE(all_finite(y));
      for (std::int64_t t = 0; t < kT; ++t)
        for (std::int64_t c = 0; c < kC; ++c) {
          const float got = y[static_cast<std::size_t>(t * kC + c)];
          const float in = x[static_cast<std::size_t>(t * kC + c)];
          if (t == kOutT && c == kOutC) {
            CHECK(got == -65504.0f);
          } else if (in_outlier_group(t, c, axis)) {
            CHECK(got == 16.0f);
          } else {
            CHECK(got == (in < 0 ? -1.0f : 4.0009765625f));
          }
        }
      if (axis == "channel") {
        if (tier == CpuImplementation::reference) reference_bytes = bytes;
        else CHECK(bytes == reference_bytes);
      }
    }
}

TEST_CASE("uniform 1-bit fp16 on +-60000: levels centred at +-32752, never NaN", "[quantizer][uniform][overflow][optimized]") {
  // Every group alternates -60000 and +60000 (both fp16 values). scale (60000 + 60000) / 1 = 120000 > 65504: the
  // scale saturates to 65504 and the two levels are centred on the mid-range 0: min = 0 - 65504 / 2 = -32752 (an
  // fp16 value: spacing 16 in [16384, 32768)), top = -32752 + 65504 = 32752. Before the fix the scale rounded to
  // inf and 0 * inf gave NaN everywhere.
  const BlockShape s{1, kT, kC};
  std::vector<float> x(kT * kC);
  for (std::int64_t i = 0; i < kT * kC; ++i) x[static_cast<std::size_t>(i)] = (i / kC + i % kC) % 2 ? 60000.0f : -60000.0f;
  for (const CpuImplementation tier : kTiers)
    for (const std::string axis : {"channel", "token"}) {
      INFO(tier_name(tier) << ", axis " << axis);
      const auto q = test::builtin_registry(tier).make_quantizer(
          quantizer_block("uniform", {{"bits", "1"}, {"group", "32"}, {"axis", axis}}));
      const auto y = decode(*q, s, encode(*q, s, x));
      for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == (x[i] > 0 ? 32752.0f : -32752.0f));
    }
}

TEST_CASE("uniform fp32 scales near FLT_MAX: the top code decodes finite", "[quantizer][uniform][overflow][optimized]") {
  // +-3e38 in fp32: mx - mn overflows fp32 to inf. With 1 bit the scale is capped at FLT_MAX and centred:
  // min = -FLT_MAX / 2, top level +FLT_MAX / 2 (both exact: halving is exact). With 2 bits the scale 6e38 / 3 =
  // 2e38 fits, the min -3e38 fits and 3 * 2e38 - 3e38 ~ 3e38 decodes finite.
  const BlockShape s{1, kT, kC};
  std::vector<float> x(kT * kC);
  for (std::int64_t i = 0; i < kT * kC; ++i) x[static_cast<std::size_t>(i)] = (i / kC + i % kC) % 2 ? 3e38f : -3e38f;
  for (const CpuImplementation tier : kTiers) {
    INFO(tier_name(tier));
    const auto one_bit = test::builtin_registry(tier).make_quantizer(
        quantizer_block("uniform", {{"bits", "1"}, {"group", "32"}, {"scale_dtype", "fp32"}}));
    const auto y = decode(*one_bit, s, encode(*one_bit, s, x));
    for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == (x[i] > 0 ? 0x1.fffffep126f : -0x1.fffffep126f));
    const auto two_bit = test::builtin_registry(tier).make_quantizer(
        quantizer_block("uniform", {{"bits", "2"}, {"group", "32"}, {"scale_dtype", "fp32"}}));
    CHECK(all_finite(decode(*two_bit, s, encode(*two_bit, s, x))));
  }
}

TEST_CASE("stored_group leaves every fitting group's scale and min as round(range / top) and round(min)",
          "[quantizer][uniform][overflow]") {
  // The fast path is the formula the format has always used; only a group that does not fit changes.
  const auto fit = uniform_format::stored_group(-1.0f, 2.0f, 3.0f, DType::f16);
  CHECK(fit.scale == 1.0f);
  CHECK(fit.mn == -1.0f);
  // 100000..100010 (2 bits, fp16): min saturates to 65504, scale (100010 - 65504) / 3 = 11502 (an fp16 value);
  // the top level 65504 + 3 * 11502 = 100010 reaches the group's max.
  const auto high = uniform_format::stored_group(100000.0f, 100010.0f, 3.0f, DType::f16);
  CHECK(high.mn == 65504.0f);
  CHECK(high.scale == 11504.0f);  // round_fp16(11502) = 11504 (spacing 8 in [8192, 16384))
}

TEST_CASE("largest_finite_scale finds what stepping down one value at a time finds, and ends on inf data",
          "[quantizer][uniform][overflow]") {
  // The oracle: the loop saturated_group ran before, next_below from the start value while the top code decodes
  // to inf. bf16: starts at every 97th positive pattern, mins from -max to +max; fp32: starts a few thousand values
  // above the answer (the loop's cost), mins near +FLT_MAX. (fp16 scales never need the search beside a finite min:
  // 255 * 65504 + 65504 is far inside fp32's range.)
  const auto next_below = [](float v, DType t) {  // the value of t below v > 0 (0 for v <= 0)
    if (!(v > 0.0f)) return 0.0f;
    if (t == DType::bf16) return bf16_bits_to_float(static_cast<std::uint16_t>(float_to_bf16_bits(v) - 1u));
    return bits_float(float_bits(v) - 1u);
  };
  const auto stepping = [&](float v, float mn, float top, DType t) {
    while (!uniform_format::decodes_finite(v, mn, top)) v = next_below(v, t);
    return v;
  };
  std::size_t searched = 0;  // starts where the top code overflows: the search ran
  for (const float top : {1.0f, 3.0f, 15.0f, 255.0f})
    for (const float mn : {-dtype_max_finite(DType::bf16), -1.0f, 0.0f, 1000.0f, dtype_max_finite(DType::bf16)})
      for (std::uint32_t p = 1; p < 0x7f80u; p += 97) {
        const float v = bf16_bits_to_float(static_cast<std::uint16_t>(p));
        searched += !uniform_format::decodes_finite(v, mn, top);
        if (uniform_format::largest_finite_scale(v, mn, top, DType::bf16) != stepping(v, mn, top, DType::bf16))
          FAIL("bf16 v " << v << " mn " << mn << " top " << top);
      }
  CHECK(searched > 100);
  for (const float top : {1.0f, 3.0f, 255.0f})
    for (const float mn : {0x1.fffffep127f, 0x1.8p127f, 1e38f}) {
      const float answer = uniform_format::largest_finite_scale(0x1.fffffep127f / top, mn, top, DType::f32);
      for (const std::uint32_t above : {0u, 1u, 2u, 1000u, 5000u}) {
        const float v = bits_float(float_bits(answer) + above);
        CHECK(uniform_format::largest_finite_scale(v, mn, top, DType::f32) == stepping(v, mn, top, DType::f32));
      }
    }
  // A group holding both -inf and +inf: the min is NaN, no scale decodes finite; the search ends (the stepping never did).
  CHECK(uniform_format::largest_finite_scale(1.0f, NAN, 3.0f, DType::f32) == 0.0f);
  // An fp32 scale near FLT_MAX / 255 beside a min saturated at FLT_MAX: about 2^30 steps for the loop, 32 here.
  const float far = uniform_format::largest_finite_scale(0x1.fffffep127f / 255.0f, 0x1.fffffep127f, 255.0f, DType::f32);
  CHECK(uniform_format::decodes_finite(far, 0x1.fffffep127f, 255.0f));
  CHECK_FALSE(uniform_format::decodes_finite(bits_float(float_bits(far) + 1), 0x1.fffffep127f, 255.0f));
}

TEST_CASE("ternary scaled fp16: a kept magnitude of 125000 saturates to 65504", "[quantizer][ternary][overflow][optimized]") {
  // Outlier group (15 x -1, 16 x 4, -125000): mean |x| = (15 + 64 + 125000) / 32 = 3908.7, dead zone
  // 0.7 * 3908.7 = 2736.1: only -125000 is kept, u = 125000 -> fp16 saturates to 65504 (was inf, so the whole
  // group decoded to -inf, NaN (0 * inf) and inf). Decode: -65504 at the outlier, 0 elsewhere in the group.
  const std::vector<float> x = block_with_outlier(-125000.0f);
  const BlockShape s{1, kT, kC};
  for (const CpuImplementation tier : kTiers)
    for (const std::string axis : {"channel", "token"})
      for (const std::string packing : {"base3", "release"}) {
        INFO(tier_name(tier) << ", axis " << axis << ", packing " << packing);
        const auto q = test::builtin_registry(tier).make_quantizer(quantizer_block(
            "ternary", {{"group", "32"}, {"axis", axis}, {"reconstruction", "scaled"}, {"packing", packing}}));
        const auto y = decode(*q, s, encode(*q, s, x));
        REQUIRE(all_finite(y));
        for (std::int64_t t = 0; t < kT; ++t)
          for (std::int64_t c = 0; c < kC; ++c)
            if (in_outlier_group(t, c, axis))
              CHECK(y[static_cast<std::size_t>(t * kC + c)] == (t == kOutT && c == kOutC ? -65504.0f : 0.0f));
      }
}

TEST_CASE("sign fp16: a mean |x| of 125000 saturates to 65504", "[quantizer][sign][overflow][optimized]") {
  // Every group alternates -125000 and +125000: mean |x| = 125000 -> fp16 scale 65504 (was inf); reconstruction
  // symmetric decodes sign * 65504 (zero_one: 65504 or 0).
  const BlockShape s{1, kT, kC};
  std::vector<float> x(kT * kC);
  for (std::int64_t i = 0; i < kT * kC; ++i) x[static_cast<std::size_t>(i)] = (i / kC + i % kC) % 2 ? 125000.0f : -125000.0f;
  for (const CpuImplementation tier : kTiers)
    for (const std::string axis : {"channel", "token"}) {
      INFO(tier_name(tier) << ", axis " << axis);
      const auto q = test::builtin_registry(tier).make_quantizer(quantizer_block("sign", {{"group", "32"}, {"axis", axis}, {"reconstruction", "symmetric"}}));
      const auto y = decode(*q, s, encode(*q, s, x));
      for (std::size_t i = 0; i < x.size(); ++i) CHECK(y[i] == (x[i] > 0 ? 65504.0f : -65504.0f));
    }
}

TEST_CASE("identity fp16 saturates 125000 to 65504, bf16 keeps it", "[quantizer][identity][overflow]") {
  // fp16's largest finite value is 65504; bf16 rounds 125000 to 124928 (8 significant bits: spacing 512 there).
  const BlockShape s{1, 1, 3};
  const std::vector<float> x{-125000.0f, 1.0f, 70000.0f};
  const auto f16 = make("identity", {{"dtype", "fp16"}});
  CHECK(decode(*f16, s, encode(*f16, s, x)) == std::vector<float>{-65504.0f, 1.0f, 65504.0f});
  const auto bf16 = make("identity", {{"dtype", "bf16"}});
  CHECK(decode(*bf16, s, encode(*bf16, s, x)) == std::vector<float>{-124928.0f, 1.0f, 70144.0f});
}
