// [cpu] tests of the host-device pieces of the tensor-core decode-attention kernel
// (attention/decode_attention_tensor_core.h): the affine form of every decode it takes, and the code-slot
// rearrangements it builds its MMA fragments from. The kernel itself is checked against the reference by the [cuda]
// tests (test_cuda_decode_attention.cpp).
#include <cstdint>
#include <random>

#include "catch.h"
#include "decode_attention_test_support.h"
#include "test_registry.h"
#include "vidkv/attention/decode_attention_tensor_core.h"

using namespace vidkv;
using namespace vidkv::test;
namespace af = attention_format;
namespace tc = attention_tensor_core;

TEST_CASE("code_affine gives every code of every format the tensor-core kernel takes its decoded value", "[cpu][attention]") {
  // a * (code - zero) + b must equal af::decode_code for every code and every group's stored metadata: the kernel's
  // scores and value sums are these affine forms summed, so a wrong a, b or zero would move a whole quantization step.
  const LayerInput in = synthetic_input(2, 100, 32, 5);
  int children = 0;
  for_each_read_codec(in, 96, [&](const AttentionCodec& ac, const KvCodec& codec, const LayerCache& cache) {
    INFO(ac.name);
    for_each_child_view(codec, cache, in.channels, 0, [&](const af::ChildView& v, std::int64_t, std::int64_t) {
      if (!tc::child_ok(v.f, false)) return;
      ++children;
      const unsigned codes = v.f.codec == af::ChildCodec::ternary ? 3u : (1u << attention_staging::staged_bits(v.f));
      for (std::int64_t gi = 0; gi < v.rows * v.groups_per_row; ++gi) {
        const af::Meta m = af::view_meta(v, gi);
        const tc::CodeAffine ca = tc::code_affine(v.f, m);
        for (unsigned code = 0; code < codes; ++code) {
          INFO("group " << gi << ", code " << code);
          REQUIRE(tc::affine_value(ca, code) == af::decode_code(v, code, m));  // fp32 equality (a zero's sign aside)
        }
      }
    });
  });
  CHECK(children >= 6);  // uniform 2/4-bit groups are skipped above 2 bits; sign, ternary and uniform 2-bit children remain
}

TEST_CASE("code slots: spread_bits, to_slots and unzip_pairs place every code where the MMA fragments read it", "[cpu][attention]") {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 2000; ++trial) {
    const auto x = static_cast<std::uint32_t>(rng());
    // spread_bits: bit j of the low half -> slot j.
    const std::uint32_t s = tc::spread_bits(x);
    for (unsigned j = 0; j < 16; ++j) REQUIRE(((s >> (2 * j)) & 3u) == ((x >> j) & 1u));
    // to_slots, 1 bit: code j of the 32-token run -> word j / 16, slot j % 16; 2 bits: unchanged.
    std::uint32_t w[attention_staging::kMaxRowWords] = {x, 0u, 0u, 0u};
    tc::to_slots(w, 1);
    for (unsigned j = 0; j < 32; ++j) REQUIRE(((w[j / 16] >> (2 * (j % 16))) & 3u) == ((x >> j) & 1u));
    const auto y = static_cast<std::uint32_t>(rng());
    std::uint32_t w2[attention_staging::kMaxRowWords] = {x, y, 0u, 0u};
    tc::to_slots(w2, 2);
    CHECK((w2[0] == x && w2[1] == y));
    // unzip_pairs: (w >> 2 j) & 0x00030003 holds token 2 j in its low half and token 2 j + 1 in its high half.
    const std::uint32_t u = tc::unzip_pairs(x);
    for (unsigned j = 0; j < 8; ++j) {
      const std::uint32_t pair = (u >> (2 * j)) & 0x00030003u;
      REQUIRE((pair & 3u) == ((x >> (4 * j)) & 3u));
      REQUIRE((pair >> 16) == ((x >> (4 * j + 2)) & 3u));
    }
  }
  // Hand-worked: tokens 0..15 with codes 0,1,2,3,0,1,2,3,...: evens 0,2,0,2,... odds 1,3,1,3,...
  // word = 0xE4E4E4E4 (slot j = j % 4); evens in slots 0..7: 0,2,0,2,0,2,0,2 -> 0x8888; odds: 1,3,... -> 0xDDDD.
  CHECK(tc::unzip_pairs(0xE4E4E4E4u) == 0xDDDD8888u);
}

TEST_CASE("the tensor-core kernel takes the presets' formats and refuses the others by formats_ok", "[cpu][attention]") {
  const LayerInput in = synthetic_input(1, 64, 128, 3);
  int kivi = 0, vidkv = 0;
  for_each_read_codec(in, 64, [&](const AttentionCodec& ac, const KvCodec& codec, const LayerCache&) {
    attention_tables::Problem p;
    p.channels = 128;
    p.key = side_format(codec.key(), 128, KvSide::key);
    p.value = side_format(codec.value(), 128, KvSide::value);
    if (ac.name == "preset kivi-2") kivi += tc::formats_ok(p) ? 1 : -100;
    if (ac.name == "preset vidkv-k1.5-v1.58") vidkv += tc::formats_ok(p) ? 1 : -100;
    if (ac.name == "preset kivi-4" || ac.name == "preset fp16") CHECK_FALSE(tc::formats_ok(p));  // 4-bit codes, identity
    p.channels = 40;  // not a multiple of 16
    CHECK_FALSE(tc::formats_ok(p));
  });
  CHECK(kivi == 1);
  CHECK(vidkv == 1);
}
