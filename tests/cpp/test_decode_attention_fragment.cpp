// [cpu] tests of the host-device pieces of the fragment decode-attention kernel (attention/decode_attention_fragment.h,
// attention_tables::fragment_tile): which formats it takes and which tiles are its. The kernel itself is checked
// against the reference by the [cuda] tests (test_cuda_decode_attention.cpp, the fragment codecs).
#include <cstdint>

#include "catch.h"
#include "decode_attention_test_support.h"
#include "test_registry.h"
#include "vidkv/attention/decode_attention_fragment.h"

using namespace vidkv;
using namespace vidkv::test;
namespace fr = attention_fragment;
namespace at = attention_tables;
namespace af = attention_format;

namespace {

at::Problem problem_of(const KvCodec& codec, std::int64_t d, std::int64_t qpk) {
  at::Problem p;
  p.channels = d;
  p.qpk = qpk;
  p.key = side_format(codec.key(), d, KvSide::key);
  p.value = side_format(codec.value(), d, KvSide::value);
  return p;
}

}  // namespace

TEST_CASE("the fragment kernel takes kivi-2's quantizers in layout fragment and refuses every other format", "[cpu][attention]") {
  const PresetCodec fragment = preset_codec("kivi-2-fragment");
  for (const std::int64_t d : {64, 128}) {
    INFO("head_dim " << d);
    CHECK(fr::formats_ok(problem_of(fragment.codec, d, 7)));
    CHECK(fr::formats_ok(problem_of(fragment.codec, d, 1)));
    CHECK(fr::formats_ok(problem_of(fragment.codec, d, 8)));
    CHECK_FALSE(fr::formats_ok(problem_of(fragment.codec, d, 9)));  // the B operand has 8 columns
  }
  CHECK_FALSE(fr::formats_ok(problem_of(fragment.codec, 192, 7)));  // head_dim 64 or 128 only (its registers)
  for (const char* other : {"kivi-2", "kivi-4", "vidkv-k1.5-v1.58", "fp16"}) {
    INFO(other);
    CHECK_FALSE(fr::formats_ok(problem_of(preset_codec(other).codec, 128, 7)));  // layout dense, 4 bits, sign, identity
  }
  // One side dense, or keys in groups that a 32-token tile can straddle, or fp32 metadata.
  const PluginRegistry& reg = builtin_registry(CpuImplementation::reference);
  auto codec = [&](const KeyValues& key, const KeyValues& value) {
    return KvCodec(reg.make_quantizer(quantizer_block("uniform", key)), reg.make_quantizer(quantizer_block("uniform", value)));
  };
  const KeyValues key{{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}};
  const KeyValues value{{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}};
  CHECK(fr::formats_ok(problem_of(codec(key, value), 128, 7)));
  CHECK_FALSE(fr::formats_ok(problem_of(codec({{"bits", "2"}, {"axis", "channel"}}, value), 128, 7)));
  CHECK_FALSE(fr::formats_ok(problem_of(codec(key, {{"bits", "2"}, {"axis", "token"}}), 128, 7)));
  CHECK_FALSE(fr::formats_ok(problem_of(codec({{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}, {"group", "48"}}, value), 128, 7)));
  CHECK(fr::formats_ok(problem_of(codec({{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}, {"group", "64"}}, value), 128, 7)));
  CHECK_FALSE(fr::formats_ok(problem_of(codec(key, {{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}, {"group", "24"}}), 128, 7)));
  CHECK_FALSE(fr::formats_ok(problem_of(codec({{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}, {"scale_dtype", "fp32"}}, value), 128, 7)));
  // Per-token keys or per-channel values in layout fragment: stored correctly, not in the MMAs' orientation.
  CHECK_FALSE(fr::formats_ok(problem_of(codec({{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}}, value), 128, 7)));
}

TEST_CASE("fragment_tile: a whole 32-token tile of both sides' fragment layout, 16-byte aligned codes", "[cpu][attention]") {
  // Blocks: keys [0, 100) and [100, 228); values [0, 70) and [70, 228). Tile t0 relative to each block's start must
  // be a multiple of 32 and end by the block's last whole tile (100 tokens: tiles [0, 32), [32, 64), [64, 96); the
  // tail [96, 100) is dense).
  alignas(16) static std::uint8_t bytes[64];
  at::BlockEntry keys[2] = {{bytes, 0, 100, 0, 0}, {bytes, 100, 128, 0, 0}};
  at::BlockEntry values[2] = {{bytes, 0, 70, 0, 0}, {bytes, 70, 158, 0, 0}};
  at::Problem p;
  p.fragment = true;
  p.key_blocks = keys;
  p.value_blocks = values;
  af::PartRef kp, vp;
  kp.first.codes = bytes;
  vp.first.codes = bytes;
  auto tile = [](std::int64_t t0, int n, int kb, int vb) {
    at::TileEntry t;
    t.t0 = t0;
    t.n = n;
    t.key_block = kb;
    t.value_block = vb;
    return t;
  };
  CHECK(at::fragment_tile(p, tile(0, 32, 0, 0), kp, vp));
  CHECK(at::fragment_tile(p, tile(32, 32, 0, 0), kp, vp));
  CHECK_FALSE(at::fragment_tile(p, tile(64, 32, 0, 0), kp, vp));   // values: 64 + 32 > 64, the last whole tile of 70
  CHECK_FALSE(at::fragment_tile(p, tile(64, 6, 0, 0), kp, vp));    // not 32 tokens
  CHECK_FALSE(at::fragment_tile(p, tile(96, 4, 0, 1), kp, vp));    // the keys' tail
  CHECK_FALSE(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));  // values: 30 from their block's start
  CHECK_FALSE(at::fragment_tile(p, tile(102, 32, 1, 1), kp, vp));  // keys: 2 from theirs
  values[1] = {bytes, 100, 128, 0, 0};
  CHECK(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));
  CHECK(at::fragment_tile(p, tile(196, 32, 1, 1), kp, vp));  // the last whole tile of both
  kp.first.codes = bytes + 4;  // a codes section off 16 bytes: the kernel's quad copies would fault
  CHECK_FALSE(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));
  // tile_is_fast follows fragment_tile when Problem::fragment is set.
  kp.first.codes = bytes;
  CHECK(at::tile_is_fast(p, tile(100, 32, 1, 1), kp, vp));
  CHECK_FALSE(at::tile_is_fast(p, tile(96, 4, 0, 1), kp, vp));
}
