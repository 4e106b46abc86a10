// core/bits_accounting.h: effective bits, nominal bits and compression ratio from stored bytes, golden values
// worked out by hand.
#include <cmath>
#include <limits>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/bits_accounting.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {
// One 2-bit group of 32 values with an fp16 scale and an fp16 min (KIVI-2's group): 32 * 2 / 8 = 8 bytes of codes
// + 2 + 2 bytes of metadata = 12 bytes.
PackedLayout kivi_group() {
  PackedLayout l(32, 2.0);
  l.add("codes", SectionKind::codes, 8).add("scales", SectionKind::scales, 2).add("mins", SectionKind::zero_points, 2);
  return l;
}
// Two ternary groups of 32 (64 values), 5 trits per byte: ceil(64 / 5) = 13 bytes + two fp16 scales = 17 bytes.
PackedLayout ternary_groups() {
  PackedLayout l(64, std::log2(3.0));
  l.add("codes", SectionKind::codes, 13).add("scales", SectionKind::scales, 4);
  return l;
}
}  // namespace

TEST_CASE("bits of one KIVI-2 group: (32 * 2 + 32) / 32 = 3 bits, 16 / 3 against fp16", "[core][bits]") {
  const StoredBits k = StoredBits::of(kivi_group());
  CHECK(k.bytes == 12);
  CHECK(k.elements == 32);
  CHECK(k.nominal_bits == 2.0);
  CHECK(k.nominal_bit_elements == 64.0);
  // 8 * 12 / 32 = 96 / 32 = 3.0 exactly.
  CHECK(k.effective_bits() == 3.0);
  CHECK(kivi_group().effective_bits() == 3.0);  // PackedLayout uses the same definition
  CHECK(compression_ratio(3.0, DType::f16) == 16.0 / 3.0);
  CHECK(compression_ratio(3.0, DType::bf16) == 16.0 / 3.0);
  CHECK(compression_ratio(3.0, DType::f32) == 32.0 / 3.0);
}

TEST_CASE("K and V accounted apart and together", "[core][bits]") {
  const BitsAccount a = account_bits(StoredBits::of(kivi_group()), StoredBits::of(ternary_groups()), DType::f16);
  CHECK(a.key_nominal_bits == 2.0);
  CHECK(a.value_nominal_bits == std::log2(3.0));
  CHECK(a.key_effective_bits == 3.0);
  // V: 8 * 17 / 64 = 136 / 64 = 2.125 exactly.
  CHECK(a.value_effective_bits == 2.125);
  // K+V: 8 * (12 + 17) / (32 + 64) = 232 / 96 = 2.41666...; nominal (32 * 2 + 64 * log2 3) / 96 = 1.72331...
  CHECK(a.effective_bits == Approx(232.0 / 96.0).epsilon(1e-15));
  CHECK(a.nominal_bits == Approx((64.0 + 64.0 * std::log2(3.0)) / 96.0).epsilon(1e-15));
  CHECK(a.nominal_bits == Approx(1.7233083338141042).epsilon(1e-14));
  // fp16 input: 16 / (232 / 96) = 1536 / 232 = 6.6206896...
  CHECK(a.compression_ratio == Approx(1536.0 / 232.0).epsilon(1e-15));
  // The same stored bytes against fp32 K/V compress twice as much.
  CHECK(account_bits(StoredBits::of(kivi_group()), StoredBits::of(ternary_groups()), DType::f32).compression_ratio ==
        2 * a.compression_ratio);
}

TEST_CASE("summing layouts weights nominal bits by elements and adds bytes", "[core][bits]") {
  // Layer 0: one KIVI-2 group (12 bytes, 32 values, 2 bits); layer 1: two ternary groups (17 bytes, 64 values).
  StoredBits sum;
  sum += StoredBits::of(kivi_group());
  sum += StoredBits::of(ternary_groups());
  CHECK(sum.bytes == 29);
  CHECK(sum.elements == 96);
  CHECK(sum.effective_bits() == Approx(232.0 / 96.0).epsilon(1e-15));
  CHECK(sum.nominal_bits == Approx(1.7233083338141042).epsilon(1e-14));
  // PackedLayout::append_child mixes the same quantities.
  PackedLayout both;
  both.append_child("k", kivi_group()).append_child("v", ternary_groups());
  CHECK(sum.effective_bits() == both.effective_bits());
  CHECK(sum.nominal_bits == Approx(both.nominal_bits()).epsilon(1e-15));
  // Order of summation does not matter beyond rounding.
  StoredBits reversed;
  reversed += StoredBits::of(ternary_groups());
  reversed += StoredBits::of(kivi_group());
  CHECK(reversed.bytes == sum.bytes);
  CHECK(reversed.nominal_bits == Approx(sum.nominal_bits).epsilon(1e-15));
}

TEST_CASE("a real quantizer's layout: KIVI-2 on [1 x 32 x 128] is 3 effective bits", "[core][bits]") {
  // uniform 2-bit, G = 32 along tokens (per-channel keys): 128 groups of 32 -> 1024 bytes of codes + 128 fp16 scales
  // + 128 fp16 mins = 1536 bytes over 4096 values = 3.0 bits.
  const PackedLayout l = make("uniform")->layout(BlockShape{1, 32, 128}, {});
  const StoredBits s = StoredBits::of(l);
  CHECK(s.bytes == 1536);
  CHECK(s.effective_bits() == 3.0);
  CHECK(account_bits(s, s, DType::f16).compression_ratio == 16.0 / 3.0);
}

TEST_CASE("bits accounting of nothing", "[core][bits]") {
  CHECK(effective_bits(12, 0) == 0.0);
  CHECK(compression_ratio(0.0, DType::f16) == std::numeric_limits<double>::infinity());
  const StoredBits k = StoredBits::of(kivi_group());
  CHECK_THROWS_AS(account_bits(k, StoredBits{}, DType::f16), ShapeError);
  CHECK_THROWS_AS(account_bits(StoredBits{}, k, DType::f16), ShapeError);
}
