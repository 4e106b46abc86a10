// The composite quantizers' shared child handling (quantization/composite_quantizer.h): the tier string of the
// children that run, the prefixed reason of a part that is not supported, the default child blocks, and the
// cursor that steps over each child's section.
#include <cstdint>
#include <string>
#include <vector>

#include "catch.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/quantization/composite_quantizer.h"

using namespace vidkv;

TEST_CASE("composite joined_tier names the children that run and is exact only when all are", "[composite]") {
  const KernelTier two = composite::joined_tier("mixed_token", {{"uniform:avx512", true}, {"ternary:optimized", true}});
  CHECK(two.name == "mixed_token(uniform:avx512, ternary:optimized)");
  CHECK(two.exact);
  const KernelTier inexact = composite::joined_tier("mixed_channel", {{"uniform:cuda", true}, {"sign:cuda+cufft", false}});
  CHECK(inexact.name == "mixed_channel(uniform:cuda, sign:cuda+cufft)");
  CHECK_FALSE(inexact.exact);
  // k == D: only the high child runs.
  const KernelTier one = composite::joined_tier("mixed_channel", {{"uniform:reference", true}});
  CHECK(one.name == "mixed_channel(uniform:reference)");
  CHECK(one.exact);
  CHECK(composite::joined_tier("mixed_channel", {}).name == "mixed_channel()");
}

TEST_CASE("composite part_supports prefixes the part's reason and stops at the first refusal", "[composite]") {
  std::string why = "untouched";
  CHECK(composite::part_supports("high", &why, [](std::string*) { return true; }));
  CHECK(why == "untouched");
  CHECK_FALSE(composite::part_supports("low", &why, [](std::string* r) {
    *r = "no CUDA implementation";
    return false;
  }));
  CHECK(why == "low: no CUDA implementation");
  // No reason wanted: still answers.
  CHECK_FALSE(composite::part_supports("selector", nullptr, [](std::string* r) {
    *r = "x";
    return false;
  }));
}

TEST_CASE("composite default_block is a map of the given scalars", "[composite]") {
  const ConfigNode n = composite::default_block({{"type", "uniform"}, {"bits", "2"}});
  REQUIRE(n.is_map());
  CHECK(n.dump() == "{type: uniform, bits: 2}");  // insertion order kept
  CHECK(n.find("group") == nullptr);
}

TEST_CASE("composite encode_child / decode_child step the cursor over exactly the child's section", "[composite]") {
  // uniform 2-bit, G = 4, fp16 metadata on a [1, 4, 2] block, axis channel: 2 groups of 4 tokens -> codes
  // 8 elements * 2 bits = 2 bytes, scales 2 * 2 bytes, mins 2 * 2 bytes: 10 bytes.
  const UniformQuantizer q(UniformParams{2, 4});
  const BlockShape shape{1, 4, 2};
  const TokenContext ctx;
  REQUIRE(q.layout(shape, ctx).bytes() == 10);
  const std::vector<float> in{0.f, 3.f, 1.f, 2.f, 2.f, 1.f, 3.f, 0.f};
  std::vector<std::uint8_t> bytes(12, 0xAB);
  std::uint8_t* end = composite::encode_child(q, in.data(), shape, ctx, bytes.data());
  CHECK(end == bytes.data() + 10);
  CHECK(bytes[10] == 0xAB);  // nothing written past the section
  std::vector<float> out(in.size());
  const std::uint8_t* read_end = composite::decode_child(q, bytes.data(), shape, ctx, out.data());
  CHECK(read_end == bytes.data() + 10);
  CHECK(out == in);  // values 0..3 with min 0 and scale 1: exact at 2 bits
}
