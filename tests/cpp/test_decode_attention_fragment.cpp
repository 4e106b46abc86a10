// [cpu] tests of the host-device pieces of the fragment decode-attention kernel (attention/decode_attention_fragment.h,
// attention_tables::fragment_tile): which formats it takes and which tiles are its, its shared-memory maps (key metadata in
// the lanes' order, value scale pairs by PRMT), and its arithmetic emulated on the
// host against tolerance 6. The kernel itself is checked against the reference by the [cuda] tests
// (test_cuda_decode_attention.cpp, the fragment codecs).
#include <cmath>
#include <cstdint>
#include <iostream>
#include <random>
#include <set>
#include <vector>

#include "catch.h"
#include "decode_attention_test_support.h"
#include "test_registry.h"
#include "vidkv/attention/decode_attention_fragment.h"
#include "vidkv/attention/decode_attention_reference.h"
#include "vidkv/attention/decode_attention_tolerance.h"

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

// The field trick's pair (subnormal_code_pair) of codes lo, hi of a field of A row half row_half, placed at bit s:
// s the row half's placement, signs and exponents zero (subnormals or +0), each half code x 2^(s - 24), and
// subnormal_unscale restoring each code exactly.
void check_subnormal_pair(std::uint32_t pair, int row_half, int s, int bits, unsigned lo, unsigned hi) {
  REQUIRE(s == fr::subnormal_row_shift(row_half, bits));  // one placement per A row half, whatever the field
  REQUIRE((pair & 0xFC00FC00u) == 0u);
  const float low = half_bits_to_float(static_cast<std::uint16_t>(pair)), high = half_bits_to_float(static_cast<std::uint16_t>(pair >> 16));
  REQUIRE(low == std::ldexp(static_cast<float>(lo), s - 24));
  REQUIRE(high == std::ldexp(static_cast<float>(hi), s - 24));
  REQUIRE(low * fr::subnormal_unscale(row_half, bits) == static_cast<float>(lo));
  REQUIRE(high * fr::subnormal_unscale(row_half, bits) == static_cast<float>(hi));
}

}  // namespace

TEST_CASE("the fragment kernel takes kivi-2's quantizers in layout fragment and refuses every other format", "[cpu][attention]") {
  const PresetCodec fragment = preset_codec("kivi-2-fragment");
  for (const std::int64_t d : {64, 128}) {
    INFO("head_dim " << d);
    // Any query heads per KV head up to DecodeAttention's 8 (checked per run: the tables are built before the
    // queries are seen, Problem::qpk 0 then).
    CHECK(fr::formats_ok(problem_of(fragment.codec, d, 0)));
    CHECK(fr::formats_ok(problem_of(fragment.codec, d, 8)));
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

TEST_CASE("the fragment kernel's register map and field trick read the codes group_format.h's layout put there", "[cpu][attention]") {
  // For every lane l = 4 g + t4 and A register a of each MMA (PTX ISA, "Matrix fragments for mma.m16n8k16": row
  // g + 8 (a % 2), columns 2 t4 + 8 (a / 2) + {0, 1}), the kernel's word and field (key_word / key_field,
  // value_word / value_field) must hold that element's code at the layout's index (fragment_code_index): lane word
  // w is tile word (w / 4) 128 + 4 l + w % 4, its low-half code of field f at bit 2 f, the high half's at 16 + 2 f.
  int checked = 0;
  for (const int d : {64, 128}) {
    const int chunks = d / 16;
    for (int lane = 0; lane < 32; ++lane) {
      const int g = lane / 4, t4 = lane % 4;
      auto index = [&](int w, int field, int half) {
        return static_cast<std::int64_t>(((w / 4) * 128 + 4 * lane + w % 4) * 16 + half * 8 + field);
      };
      for (int a = 0; a < 4; ++a)
        for (int half = 0; half < 2; ++half) {
          const int row = g + 8 * (a % 2), col = 2 * t4 + 8 * (a / 2) + half;
          for (int mt = 0; mt < 2; ++mt)
            for (int kc = 0; kc < chunks; ++kc, ++checked)
              REQUIRE(group_format::fragment_code_index(group_format::GroupAxis::channel, group_format::kKeys2, 32, d, 0, 16 * mt + row, 16 * kc + col) ==
                      index(fr::key_word(mt, kc, chunks), fr::key_field(mt, kc, chunks, a), half));
          for (int mv = 0; mv < chunks; ++mv)
            for (int kt = 0; kt < 2; ++kt, ++checked)
              REQUIRE(group_format::fragment_code_index(group_format::GroupAxis::token, group_format::kValues2, 32, d, 0, 16 * kt + col, 16 * mv + row) ==
                      index(fr::value_word(mv), fr::value_field(kt, a), half));
        }
    }
  }
  CHECK(checked == 2 * 32 * 4 * 2 * 2 * (4 + 8));
  // The field trick on every field and every pair of codes, with the other bits of the word set at random: the pair
  // the kernels form (subnormal_code_pair: the word shifted by 2 j - s, one mask) is the fp16 subnormals
  // code x 2^(s - 24), s = 4 in A rows g (fields j even: a = j % 4, rows g + 8 (a & 1)) and 6 in rows g + 8, and
  // subnormal_unscale of the field's row half restores the code exactly. Hand-worked: field 3 of a word whose bits
  // 6-7 hold 2 (the word unshifted: 2 3 - 6 = 0) is 2 x 2^(6 - 24) = 2^-17, times 2^18 = 2; field 0 holding 3 is
  // 3 x 2^(4 - 24) = 3 2^-20 (the word shifted left by 4), times 2^20 = 3.
  CHECK(half_bits_to_float(static_cast<std::uint16_t>(fr::subnormal_code_pair(2u << 6, 3, 2))) == std::ldexp(1.0f, -17));
  CHECK(fr::subnormal_unscale(1, 2) == std::ldexp(1.0f, 18));
  CHECK(half_bits_to_float(static_cast<std::uint16_t>(fr::subnormal_code_pair(3u, 0, 2))) == std::ldexp(3.0f, -20));
  CHECK(fr::subnormal_unscale(0, 2) == std::ldexp(1.0f, 20));
  std::mt19937_64 rng(3);
  for (int j = 0; j < 8; ++j)
    for (unsigned lo = 0; lo < 4; ++lo)
      for (unsigned hi = 0; hi < 4; ++hi) {
        const std::uint32_t mask = (3u << (2 * j)) | (3u << (16 + 2 * j));
        const std::uint32_t w = (static_cast<std::uint32_t>(rng()) & ~mask) | (lo << (2 * j)) | (hi << (16 + 2 * j));
        INFO("2-bit field " << j << ", codes " << lo << ", " << hi);
        check_subnormal_pair(fr::subnormal_code_pair(w, j, 2), (j % 4) % 2, fr::subnormal_field_shift(j, 2), 2, lo, hi);
      }
  // The shifts a word needs: as few as at the bottom of the range (2-bit: -4, 4, 8 besides none; 1-bit: 7).
  std::set<int> shifts2, shifts1;
  for (int j = 0; j < 8; ++j) shifts2.insert(fr::subnormal_source_shift(j, 2));
  for (int j = 0; j < 16; ++j) shifts1.insert(fr::subnormal_source_shift(j, 1));
  CHECK(shifts2 == std::set<int>{-4, 0, 4, 8});
  CHECK(shifts1.size() == 8);
}

TEST_CASE("fragment_tile: a whole 32-token tile of both sides' fragment layout (or its first n tokens), 16-byte aligned codes, group-major key metadata", "[cpu][attention]") {
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
  kp.first.scales = kp.first.mins = bytes;  // 16-byte aligned key metadata, stored group-major (a block with a tile)
  kp.first.group_major = true;
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
  CHECK_FALSE(at::fragment_tile(p, tile(64, 6, 0, 0), kp, vp));    // not in a whole tile of the values (the tail)
  // The first n tokens of a whole tile of both sides (a query row's causal limit inside it): the kernel masks the rest.
  CHECK(at::fragment_tile(p, tile(0, 1, 0, 0), kp, vp));
  CHECK(at::fragment_tile(p, tile(32, 31, 0, 0), kp, vp));
  CHECK_FALSE(at::fragment_tile(p, tile(32, 0, 0, 0), kp, vp));    // no token
  CHECK_FALSE(at::fragment_tile(p, tile(0, 33, 0, 0), kp, vp));    // more than a tile
  CHECK_FALSE(at::fragment_tile(p, tile(96, 4, 0, 1), kp, vp));    // the keys' tail
  CHECK_FALSE(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));  // values: 30 from their block's start
  CHECK_FALSE(at::fragment_tile(p, tile(102, 32, 1, 1), kp, vp));  // keys: 2 from theirs
  values[1] = {bytes, 100, 128, 0, 0};
  CHECK(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));
  CHECK(at::fragment_tile(p, tile(196, 32, 1, 1), kp, vp));  // the last whole tile of both
  kp.first.codes = bytes + 4;  // a codes section off 16 bytes: the kernel's quad copies would fault
  CHECK_FALSE(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));
  kp.first.codes = bytes;
  kp.first.mins = bytes + 2;  // key metadata off 16 bytes: the kernel's quad copies of a tile's scales and mins
  CHECK_FALSE(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));
  kp.first.mins = bytes;
  kp.first.group_major = false;  // key metadata in the canonical order: the kernel reads a tile's D scales as one run
  CHECK_FALSE(at::fragment_tile(p, tile(100, 32, 1, 1), kp, vp));
  kp.first.group_major = true;
  // tile_is_fast follows fragment_tile when Problem::fragment is set.
  CHECK(at::tile_is_fast(p, tile(100, 32, 1, 1), kp, vp));
  CHECK_FALSE(at::tile_is_fast(p, tile(96, 4, 0, 1), kp, vp));
}

namespace {

float fp16(float x) { return half_bits_to_float(float_to_half_bits(x)); }

// The element (code, scale, min) of token t, index i of a side's packed block, or nullopt-like `packed = false` for a
// token of the residual window (exact).
// An emulated output row o / l (o: [D] sums, l: the softmax sum) against the reference row `want` within `tol`
// (per channel): every channel REQUIREd inside its bound; the largest error and error / bound kept.
struct ErrorTally {
  double worst = 0.0, largest = 0.0;
  void check(const std::vector<double>& o, double l, const double* want, const std::vector<double>& tol) {
    for (std::size_t c = 0; c < o.size(); ++c) {
      INFO("channel " << c);
      const double err = std::fabs(o[c] / l - want[c]);
      REQUIRE(err <= tol[c]);
      worst = std::max(worst, err / tol[c]);
      largest = std::max(largest, err);
    }
  }
};

struct Element {
  bool packed = false;
  unsigned code = 0;
  float scale = 0.0f, mn = 0.0f;
};
Element element_of(const LayerCache::SideRef& side, const af::SideFormat& f, std::int64_t heads, std::int64_t d,
                   std::int64_t h, std::int64_t t, std::int64_t i) {
  for (const auto& blk : side.blocks) {
    if (t < blk.begin || t >= blk.end) continue;
    const af::ChildView v = af::part_of(f, blk.bytes, heads, blk.end - blk.begin, d, h).first;
    const af::Meta m = af::view_meta(v, af::view_group(v, t - blk.begin, i));
    return {true, af::view_code(v, t - blk.begin, i), m.scale, m.mn};
  }
  return {};
}

}  // namespace

TEST_CASE("the fragment kernel's metadata addresses hold each tile's scales and mins, 16-byte aligned", "[cpu][attention]") {
  // What issue_tile copies, against the plugin's bytes read through decode attention's views: per whole tile of every
  // packed block, KV head and channel, the key entry key_meta_base + c (one group per tile: key groups of 32 tokens)
  // and each token's value entries value_meta_base + j gpr + gr; the key sections' runs at 16-byte offsets from the
  // block's start (the kernel's quad copies; blocks start 256-byte aligned on the device).
  const PresetCodec preset = preset_codec("kivi-2-fragment", CpuImplementation::reference);
  for (const int d : {128, 64}) {
    const LayerInput in = synthetic_input(4, 700, d, 41);
    const auto cache = filled_cache(preset.codec, preset.lifecycle, in, 640, Execution{});
    const std::int64_t heads = cache->heads();
    std::int64_t key_tiles = 0, value_tiles = 0;
    for (const bool keys : {true, false}) {
      const af::SideFormat f = side_format(keys ? preset.codec.key() : preset.codec.value(), d, keys ? KvSide::key : KvSide::value);
      for (const auto& blk : (keys ? cache->key_side() : cache->value_side()).blocks) {
        const std::int64_t tokens = blk.end - blk.begin;
        for (std::int64_t h = 0; h < heads; ++h) {
          const af::ChildView v = af::part_of(f, blk.bytes, heads, tokens, d, h).first;
          for (std::int64_t tr0 = 0; tr0 + 32 <= (tokens / 32) * 32; tr0 += 32) {
            INFO("head_dim " << d << (keys ? ", keys" : ", values") << ", block at " << blk.begin << ", head " << h << ", tile " << tr0);
            if (keys) {
              REQUIRE(v.group_major);
              const std::int64_t base = fr::key_meta_base(h, v.groups_per_row, tr0 / v.f.group, d);
              CHECK((v.scales - blk.bytes + 2 * base) % 16 == 0);
              CHECK((v.mins - blk.bytes + 2 * base) % 16 == 0);
              for (std::int64_t c = 0; c < d; ++c)
                for (std::int64_t j = 0; j < 32; ++j) {
                  const af::Meta m = af::view_meta(v, af::view_group(v, tr0 + j, c));
                  REQUIRE(group_format::get_scalar(v.scales, base + c, DType::f16) == m.scale);
                  REQUIRE(group_format::get_scalar(v.mins, base + c, DType::f16) == m.mn);
                }
              ++key_tiles;
            } else {
              const std::int64_t base = fr::value_meta_base(h, tokens, tr0, v.groups_per_row);
              for (std::int64_t j = 0; j < 32; ++j)
                for (std::int64_t c = 0; c < d; ++c) {
                  const std::int64_t e = base + j * v.groups_per_row + c / v.f.group;
                  const af::Meta m = af::view_meta(v, af::view_group(v, tr0 + j, c));
                  REQUIRE(group_format::get_scalar(v.scales, e, DType::f16) == m.scale);
                  REQUIRE(group_format::get_scalar(v.mins, e, DType::f16) == m.mn);
                }
              ++value_tiles;
            }
          }
        }
      }
    }
    CHECK(key_tiles >= heads * 16);   // the 640-token prompt's keys: 512 quantized tokens, 16 tiles per head
    CHECK(value_tiles >= heads * 16);
  }
}

TEST_CASE("the fragment kernel's shared-memory maps: key metadata in the lanes' order, value scale pairs by PRMT", "[cpu][attention]") {
  // Keys: lane t4 reads position i of its row as the channel pair 16 (i / 2) + 2 t4 + 8 (i % 2) (the B rows of chunk
  // kc = i / 2, pr = i % 2); issue_tile puts word w (channels 2 w, 2 w + 1) at key_meta_slot(w). Hand-worked at
  // D = 128 (stride 128 / 8 + 4 = 20): w = 13, channels 26 and 27 = 16 + 2 + 8, so kc 1, t4 1, pr 1: slot 20 + 2 + 1.
  CHECK(fr::key_meta_stride(128) == 20);
  CHECK(fr::key_meta_slot(13, 128) == 23);
  CHECK(fr::key_meta_slot(0, 64) == 0);
  CHECK(fr::key_meta_slot(31, 64) == 3 * 12 + 2 * 3 + 1);
  for (const int d : {64, 128}) {
    INFO("head_dim " << d);
    const int stride = fr::key_meta_stride(d);
    REQUIRE(stride % 4 == 0);  // each row starts at 16 bytes: the lanes' 16-byte loads
    std::vector<int> word_at(static_cast<std::size_t>(4 * stride), -1);
    for (int w = 0; w < d / 2; ++w) {
      const int slot = fr::key_meta_slot(w, d);
      REQUIRE(slot >= 0);
      REQUIRE(slot < 4 * stride);
      REQUIRE(word_at[static_cast<std::size_t>(slot)] == -1);  // a bijection onto the rows
      word_at[static_cast<std::size_t>(slot)] = w;
      // issue_tile's lanes copy w = lane + 32 i to key_meta_slot(lane) + 8 i
      CHECK(fr::key_meta_slot(w, d) == fr::key_meta_slot(w % 32, d) + 8 * (w / 32));
    }
    for (int t4 = 0; t4 < 4; ++t4)
      for (int i = 0; i < d / 8; ++i) {
        const int w = word_at[static_cast<std::size_t>(t4 * stride + i)];
        REQUIRE(w >= 0);
        CHECK(2 * w == 16 * (i / 2) + 2 * t4 + 8 * (i % 2));
      }
    // The four t4 of a quarter warp (lanes 0-7) load 16 bytes at t4 stride + 4 j: distinct 16-byte bank groups.
    for (int j = 0; j < d / 32; ++j) {
      std::set<int> groups;
      for (int t4 = 0; t4 < 4; ++t4) groups.insert(((t4 * stride + 4 * j) / 4) % 8);
      CHECK(groups.size() == 4);
    }
  }
  // Values: for every group count a kernel instance has (1 .. 8 per row) and group gr, the PRMT of the two words
  // gives (token j's half gr, token j + 1's half groups + gr). PRMT emulated: selector nibble k picks byte k.
  auto byte_perm = [](std::uint32_t a, std::uint32_t b, std::uint32_t sel) {
    const std::uint64_t x = (static_cast<std::uint64_t>(b) << 32) | a;
    std::uint32_t r = 0;
    for (int k = 0; k < 4; ++k) r |= static_cast<std::uint32_t>((x >> (8 * ((sel >> (4 * k)) & 7u))) & 0xFFu) << (8 * k);
    return r;
  };
  for (int groups = 1; groups <= 8; ++groups)
    for (int gr = 0; gr < groups; ++gr) {
      INFO(groups << " groups per row, group " << gr);
      std::vector<std::uint32_t> words(static_cast<std::size_t>(groups));  // half k = 0xA000 + k, little-endian pairs
      for (int k = 0; k < 2 * groups; ++k)
        words[static_cast<std::size_t>(k / 2)] |= static_cast<std::uint32_t>(0xA000 + k) << (16 * (k % 2));
      const std::uint32_t pair = byte_perm(words[static_cast<std::size_t>(fr::value_pair_word(gr, groups, 0))],
                                           words[static_cast<std::size_t>(fr::value_pair_word(gr, groups, 1))],
                                           fr::value_pair_selector(gr, groups));
      CHECK((pair & 0xFFFFu) == 0xA000u + static_cast<std::uint32_t>(gr));
      CHECK((pair >> 16) == 0xA000u + static_cast<std::uint32_t>(groups + gr));
    }
}

TEST_CASE("the fragment kernel's arithmetic (fp16 factors, emulated on the host) stays within tolerance 6", "[cpu][attention]") {
  // The kernel's numbers without its data movement: per packed key, s_t = 2^e c (sum_i fp16(q''_i a_i) c_ti +
  // sum_i q''_i b_i), q'' = fp16(q / 2^e), c = fl(log2(e) / sqrt(D)); per packed value, with p~ = fp16(p_t),
  // fp16(p~ a_tg) c_tc + p~ b_tg (the mins' products exact: two fp16 inside an MMA, exact in float); residual tokens
  // exact (the general kernel's), everything else in double. This
  // checks the derivation of decode_attention_tolerance.h 6. on the CPU: the emulated error must be inside the bound,
  // and not zero (the fp16 factors do round). Conservative where it differs from the kernels: every packed element
  // takes the fp16 factors (the tiles the general kernel reads, a block's tail or a token packed on one side only,
  // are fp32 there), and p is taken against the global max rather than each warp's running one.
  const PresetCodec preset = preset_codec("kivi-2-fragment", CpuImplementation::reference);
  ErrorTally tally;
  for (const int d : {128, 64}) {
    const LayerInput in = synthetic_input(2, 700, d, 31);
    const auto cache = filled_cache(preset.codec, preset.lifecycle, in, 640, Execution{});
    const std::int64_t T = cache->tokens(), heads = cache->heads();
    const af::SideFormat kf = side_format(preset.codec.key(), d, KvSide::key);
    const af::SideFormat vf = side_format(preset.codec.value(), d, KvSide::value);
    const LayerCache::SideRef ks = cache->key_side(), vs = cache->value_side();
    const std::vector<float> queries = random_queries(1, heads * 3, d, 1.5f, 5);
    const float score_scale = static_cast<float>(1.4426950408889634074 / std::sqrt(static_cast<double>(d)));
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<double> k, v;
      decoded_head(*cache, h, k, v);
      const std::vector<double> want = reference_decode_attention(*cache, h, queries.data() + h * 3 * d, 3);
      for (std::int64_t r = 0; r < 3; ++r) {
        const float* q = queries.data() + (h * 3 + r) * d;
        float big = 0.0f;
        for (std::int64_t i = 0; i < d; ++i) big = std::max(big, std::fabs(q[i]));
        int e = 0;
        std::frexp(big, &e);
        std::vector<float> qs(static_cast<std::size_t>(d));  // q'' = fp16(q / 2^e), |q''| < 1
        for (std::int64_t i = 0; i < d; ++i) qs[static_cast<std::size_t>(i)] = fp16(std::ldexp(q[i], -e));
        std::vector<double> s(static_cast<std::size_t>(T));
        double smax = -HUGE_VAL;
        for (std::int64_t t = 0; t < T; ++t) {
          double dot = 0.0;
          for (std::int64_t i = 0; i < d; ++i) {
            const Element el = element_of(ks, kf, heads, d, h, t, i);
            const float qi = qs[static_cast<std::size_t>(i)];
            dot += el.packed ? static_cast<double>(fp16(qi * el.scale)) * el.code + static_cast<double>(qi * el.mn)
                             : std::ldexp(static_cast<double>(q[i]), -e) * k[static_cast<std::size_t>(t * d + i)];
          }
          s[static_cast<std::size_t>(t)] = std::ldexp(dot, e) * score_scale * std::log(2.0);  // natural-log units
          smax = std::max(smax, s[static_cast<std::size_t>(t)]);
        }
        double l = 0.0;
        std::vector<double> o(static_cast<std::size_t>(d), 0.0);
        for (std::int64_t t = 0; t < T; ++t) {
          const auto p = static_cast<float>(std::exp(s[static_cast<std::size_t>(t)] - smax));
          const float ph = fp16(p);  // p~, the packed values' factor (the sum l and the residual take p)
          l += p;
          for (std::int64_t c = 0; c < d; ++c) {
            const Element el = element_of(vs, vf, heads, d, h, t, c);
            o[static_cast<std::size_t>(c)] += el.packed ? static_cast<double>(fp16(ph * el.scale)) * el.code + static_cast<double>(ph * el.mn)
                                                        : static_cast<double>(p) * v[static_cast<std::size_t>(t * d + c)];
          }
        }
        INFO("head_dim " << d << ", KV head " << h << ", row " << r);
        tally.check(o, l, want.data() + r * d,
                    decode_attention_tolerance::output_tolerance(q, k, v, T, d, 0.0, decode_attention_tolerance::Arithmetic::fragment));
      }
    }
  }
  std::cout << "fragment arithmetic emulated: largest error " << tally.largest << ", largest error / tolerance " << tally.worst << "\n";
  CHECK(tally.largest > 0.0);
  CHECK(tally.worst < 1.0);
}

namespace {

// The VidKV fragment codec of attention_codecs(): the preset vidkv-k1.5-v1.58-fragment (mixed_channel fragment
// keys, ternary packing fragment values).
AttentionCodec vidkv_fragment_codec() {
  for (const AttentionCodec& ac : attention_codecs())
    if (ac.name == "preset vidkv-k1.5-v1.58-fragment") return ac;
  FAIL("no preset vidkv-k1.5-v1.58-fragment in attention_codecs()");
  return attention_codecs().front();
}

}  // namespace

TEST_CASE("the fragment kernel takes VidKV's fragment formats as its vidkv instance, and only those", "[cpu][attention]") {
  // fragment_formats: kivi-2-fragment is kivi; the VidKV fragment codec at head_dim 128 is vidkv (64 high channels,
  // sign fft real zero_one, ternary magnitude_free packing fragment); the same codec at a quarter split (32 high
  // channels), with a symmetric sign, with scaled ternary values, with dense children or at head_dim 64 is none.
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  auto problem = [&](const ConfigNode& key, const ConfigNode& value, std::int64_t d) {
    at::Problem p;
    p.key = side_format(*reg.make_quantizer(key), d, KvSide::key);
    p.value = side_format(*reg.make_quantizer(value), d, KvSide::value);
    p.channels = d;
    return fr::fragment_formats(p);
  };
  const AttentionCodec ac = vidkv_fragment_codec();
  CHECK(problem(ac.key, ac.value, 128) == fr::FragmentFormats::vidkv);
  const ConfigNode kivi = load_preset("kivi-2-fragment", ConfigNode::scalar("kivi-2-fragment"));
  CHECK(problem(kivi.at("codec").at("key"), kivi.at("codec").at("value"), 128) == fr::FragmentFormats::kivi);
  CHECK(problem(ac.key, quantizer_block("ternary", {{"packing", "fragment"}, {"reconstruction", "scaled"}}), 128) ==
        fr::FragmentFormats::none);
  CHECK(problem(ac.key, quantizer_block("ternary", {{"packing", "slots2"}}), 128) == fr::FragmentFormats::none);
  ConfigNode symmetric = ac.key;
  symmetric.set("low", quantizer_block("sign", {{"fft", "real"}, {"layout", "fragment"}, {"reconstruction", "symmetric"}}));
  CHECK(problem(symmetric, ac.value, 128) == fr::FragmentFormats::none);
  ConfigNode quarter = ac.key;
  ConfigNode selector = ConfigNode::map({"test", 1, 1});
  selector.set("type", ConfigNode::scalar("range", {"test", 1, 1}));
  selector.set("fraction", ConfigNode::scalar("0.5", {"test", 1, 1}));
  selector.set("scope", ConfigNode::scalar("head", {"test", 1, 1}));
  quarter.set("selector", selector);  // a split per KV head: the kernel copies one per block
  CHECK(problem(quarter, ac.value, 128) == fr::FragmentFormats::none);
  // The 1-bit register map: word mt of the lane's two, field 4 kc + a, is fragment_code_index's element (1-bit keys
  // over 64 components): token 16 mt + g + 8 (a & 1), component 16 kc + 2 t4 + 8 (a >> 1) + half at bit
  // 32 (2 lane + mt) + 16 half + field (8-byte pairs per lane).
  const group_format::FragmentForm keys1{group_format::FragmentOperand::keys, 1};
  for (int lane = 0; lane < 32; ++lane)
    for (int mt = 0; mt < 2; ++mt)
      for (int kc = 0; kc < 4; ++kc)
        for (int a = 0; a < 4; ++a)
          for (int half = 0; half < 2; ++half) {
            const int g = lane / 4, t4 = lane % 4;
            const std::int64_t t = 16 * mt + g + 8 * (a & 1), c = 16 * kc + 2 * t4 + 8 * (a >> 1) + half;
            const int f = fr::bit_key_field(kc, a);
            REQUIRE(group_format::fragment_code_index(group_format::GroupAxis::channel, keys1, 32, 64, 0, t, c) ==
                    32 * (2 * lane + fr::bit_key_word(mt)) + 16 * half + f);
            REQUIRE(fr::subnormal_field_shift(f, 1) == 8 + (a & 1));  // rows g at s = 8, rows g + 8 at s = 9
          }
}

TEST_CASE("the fragment kernel's vidkv arithmetic (fp16 factors on the transformed query, emulated) stays within tolerance 6",
          "[cpu][attention]") {
  // The vidkv instance's numbers without its data movement: per key block, tq = the query carried into the block's
  // coordinates (transform_entry, fp32), e from max |tq| over the block, q'' = fp16(tq / 2^e); per packed key,
  // s_t = 2^e c (sum_i fp16(q''_i a_i) c_ti + sum_i q''_i b_i) over the 128 part indices (high: uniform scale, min and
  // code; low: sign scale and bit, no min); per packed value p~_t t_tc with p~ = fp16(p) (the trits exact); residual
  // tokens exact. Against the reference within decode_attention_tolerance.h 6. with the part-index terms
  // (fragment_score_terms); not zero. As the kivi emulation: every packed element takes the fp16 factors and p the
  // global max.
  const AttentionCodec ac = vidkv_fragment_codec();
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
  const std::int64_t d = 128;
  const LayerInput in = synthetic_input(2, 500, d, 37);
  const auto cache = filled_cache(codec, ac.lifecycle, in, 450, Execution{});
  const std::int64_t T = cache->tokens(), heads = cache->heads();
  const af::SideFormat kf = side_format(codec.key(), d, KvSide::key), vf = side_format(codec.value(), d, KvSide::value);
  REQUIRE(kf.first.layout == group_format::CodeLayout::fragment);
  const LayerCache::SideRef ks = cache->key_side(), vs = cache->value_side();
  const std::vector<float> queries = random_queries(1, heads * 3, d, 1.5f, 6);
  const float score_scale = static_cast<float>(1.4426950408889634074 / std::sqrt(static_cast<double>(d)));
  ErrorTally tally;
  std::int64_t packed_keys = 0;
  for (std::int64_t h = 0; h < heads; ++h) {
    std::vector<double> k, v;
    decoded_head(*cache, h, k, v);
    const std::vector<double> want = reference_decode_attention(*cache, h, queries.data() + h * 3 * d, 3);
    for (std::int64_t r = 0; r < 3; ++r) {
      const float* q = queries.data() + (h * 3 + r) * d;
      std::vector<double> s(static_cast<std::size_t>(T));
      std::vector<char> done(static_cast<std::size_t>(T), 0);
      for (const auto& blk : ks.blocks) {
        const std::int64_t n = blk.end - blk.begin;
        const af::PartRef part = af::part_of(kf, blk.bytes, heads, n, d, h);
        std::vector<float> gathered(static_cast<std::size_t>(d));
        for (std::int64_t c = 0; c < d; ++c) gathered[static_cast<std::size_t>(af::gathered_index(kf, part, d, c))] = q[c];
        const std::int64_t W = af::key_width(kf, d);
        std::vector<float> tq(static_cast<std::size_t>(W));
        float big = 0.0f;
        for (std::int64_t i = 0; i < W; ++i) {
          tq[static_cast<std::size_t>(i)] = af::transform_entry(kf, part, gathered.data(), i);
          big = std::max(big, std::fabs(tq[static_cast<std::size_t>(i)]));
        }
        int e = 0;
        std::frexp(big, &e);
        for (std::int64_t t = 0; t < n; ++t) {
          double dot = 0.0;
          for (std::int64_t i = 0; i < W; ++i) {
            const bool high = i < part.first_n;
            const af::ChildView& cv = high ? part.first : part.second;
            const std::int64_t j = high ? i : i - part.first_n;
            const af::Meta m = af::view_meta(cv, af::view_group(cv, t, j));
            const float qi = fp16(std::ldexp(tq[static_cast<std::size_t>(i)], -e));
            dot += static_cast<double>(fp16(qi * m.scale)) * af::view_code(cv, t, j) + (high ? static_cast<double>(qi * m.mn) : 0.0);
          }
          s[static_cast<std::size_t>(blk.begin + t)] = std::ldexp(dot, e) * score_scale * std::log(2.0);
          done[static_cast<std::size_t>(blk.begin + t)] = 1;
          ++packed_keys;
        }
      }
      double smax = -HUGE_VAL;
      for (std::int64_t t = 0; t < T; ++t) {
        if (!done[static_cast<std::size_t>(t)]) {  // a residual key: exact
          double dot = 0.0;
          for (std::int64_t c = 0; c < d; ++c) dot += static_cast<double>(q[c]) * k[static_cast<std::size_t>(t * d + c)];
          s[static_cast<std::size_t>(t)] = dot * score_scale * std::log(2.0);
        }
        smax = std::max(smax, s[static_cast<std::size_t>(t)]);
      }
      double l = 0.0;
      std::vector<double> o(static_cast<std::size_t>(d), 0.0);
      for (std::int64_t t = 0; t < T; ++t) {
        const auto p = static_cast<float>(std::exp(s[static_cast<std::size_t>(t)] - smax));
        const float ph = fp16(p);
        l += p;
        const Element probe = element_of(vs, vf, heads, d, h, t, 0);
        for (std::int64_t c = 0; c < d; ++c)
          o[static_cast<std::size_t>(c)] += probe.packed ? static_cast<double>(ph) * v[static_cast<std::size_t>(t * d + c)]  // a trit: exact
                                                         : static_cast<double>(p) * v[static_cast<std::size_t>(t * d + c)];
      }
      const auto terms = decode_attention_tolerance::fragment_score_terms(*cache, h, q);
      REQUIRE(!terms.in_block.empty());
      const std::vector<double> tol = decode_attention_tolerance::output_tolerance(
          q, k, v, T, d, decode_attention_tolerance::fft_score_error(*cache, h, q, decode_attention_tolerance::Arithmetic::fragment),
          decode_attention_tolerance::Arithmetic::fragment, &terms);
      INFO("KV head " << h << ", row " << r);
      tally.check(o, l, want.data() + r * d, tol);
    }
  }
  std::cout << "vidkv fragment arithmetic emulated: largest error " << tally.largest << ", largest error / tolerance " << tally.worst << "\n";
  CHECK(packed_keys > 0);
  CHECK(tally.largest > 0.0);
  CHECK(tally.worst < 1.0);
}

TEST_CASE("the vidkv instance's tile addresses hold each key child's scales and mins and each lane's codes", "[cpu][attention]") {
  // What vidkv_issue_tile copies, against the plugins' bytes through decode attention's views, for every whole tile
  // of every key and value block and KV head of a VidKV fragment cache: the high child's scales and mins and the low
  // child's scales at key_meta_base + c of their group-major sections (4-byte aligned runs: one word per lane), and
  // each lane's code words at the tile's (h T + tr0) bytes-per-token offset: the high child's quad l, the low child's
  // pair l and the values' quads l and 32 + l hold the codes fragment_code_index puts there.
  namespace gf = group_format;
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  const AttentionCodec ac = vidkv_fragment_codec();
  const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
  const std::int64_t d = 128;
  const LayerInput in = synthetic_input(4, 300, d, 43);
  const auto cache = filled_cache(codec, ac.lifecycle, in, 260, Execution{});
  const std::int64_t heads = cache->heads();
  const af::SideFormat kf = side_format(codec.key(), d, KvSide::key), vf = side_format(codec.value(), d, KvSide::value);
  std::int64_t tiles = 0;
  for (const auto& blk : cache->key_side().blocks) {
    const std::int64_t T = blk.end - blk.begin;
    for (std::int64_t h = 0; h < heads; ++h) {
      const af::PartRef kp = af::part_of(kf, blk.bytes, heads, T, d, h);
      for (std::int64_t tr0 = 0; tr0 + 32 <= (T / 32) * 32; tr0 += 32, ++tiles) {
        INFO("key block at " << blk.begin << ", head " << h << ", tile " << tr0);
        for (int child = 0; child < 2; ++child) {
          const af::ChildView& v = child == 0 ? kp.first : kp.second;
          REQUIRE(v.group_major);
          const std::int64_t base = fr::key_meta_base(h, v.groups_per_row, tr0 / v.f.group, fr::kVidkvHigh);
          CHECK((v.scales - blk.bytes + 2 * base) % 4 == 0);
          for (std::int64_t c = 0; c < 64; ++c) {
            const af::Meta m = af::view_meta(v, af::view_group(v, tr0, c));
            REQUIRE(gf::get_scalar(v.scales, base + c, DType::f16) == m.scale);
            if (child == 0) REQUIRE(gf::get_scalar(v.mins, base + c, DType::f16) == m.mn);
          }
          // Codes: bits per token 2 x 64 (high) or 64 (low); lane l's vector of V words at word V l of the tile.
          const unsigned bits = child == 0 ? 2u : 1u;
          const std::int64_t tile_byte = (h * T + tr0) * 64 * bits / 8;
          const gf::FragmentForm form{gf::FragmentOperand::keys, bits};
          for (std::int64_t t = 0; t < 32; ++t)
            for (std::int64_t c = 0; c < 64; ++c) {
              const std::int64_t k = gf::fragment_code_index(gf::GroupAxis::channel, form, T, 64, h, tr0 + t, c);
              REQUIRE(k * bits / 8 >= tile_byte);
              REQUIRE(k * bits / 8 < tile_byte + 32 * 64 * bits / 8);
              REQUIRE(af::view_code(v, tr0 + t, c) == bits::dense_get(v.codes, static_cast<std::size_t>(k), bits));
            }
        }
      }
    }
  }
  for (const auto& blk : cache->value_side().blocks) {
    const std::int64_t T = blk.end - blk.begin;
    for (std::int64_t h = 0; h < heads; ++h) {
      const af::ChildView v = af::part_of(vf, blk.bytes, heads, T, d, h).first;
      for (std::int64_t tr0 = 0; tr0 + 32 <= (T / 32) * 32; tr0 += 32) {
        const std::int64_t tile_byte = (h * T + tr0) * d * 2 / 8;
        for (std::int64_t t = 0; t < 32; ++t)
          for (std::int64_t c = 0; c < d; ++c) {
            const std::int64_t k = gf::fragment_code_index(v.f.axis, ternary_format::kFragmentForm, T, d, h, tr0 + t, c);
            REQUIRE(k / 4 >= tile_byte);
            REQUIRE(k / 4 < tile_byte + 32 * d / 4);
            REQUIRE(af::view_code(v, tr0 + t, c) == bits::dense_get(v.codes, static_cast<std::size_t>(k), 2));
          }
      }
    }
  }
  CHECK(tiles >= heads * 4);  // the 260-token prompt's quantized keys: at least 4 whole tiles per head
}

TEST_CASE("the vidkv instance's field tricks (1-bit codes, trits) and its fragment_tile conditions", "[cpu][attention]") {
  // 1-bit field f of a lane word: low code at bit f, high code at 16 + f, read from the word shifted right by f - s
  // (subnormal_code_pair with bits 1; left where negative): each half the fp16 subnormal code x 2^(s - 24), s = 8 +
  // (f & 1) (the field's A row half: a = f % 4, rows g + 8 (a & 1)), which subnormal_unscale(row half, 1) = 2^(24 - s)
  // restores, with the word's other bits random. Hand-worked: field 9 with both codes 1 (bits 9 and 25) is the word
  // unshifted (9 - 9) masked with 0x2000200: 2^-15 in both halves; field 2 (s = 8) comes from the word shifted left
  // by 6: bit 2 to bit 8, 2^-16.
  CHECK(fr::subnormal_code_pair((1u << 9) | (1u << 25), 9, 1) == 0x02000200u);
  CHECK(half_bits_to_float(0x0200) == std::ldexp(1.0f, -15));
  CHECK(fr::subnormal_code_pair(1u << 2, 2, 1) == 0x100u);
  std::mt19937_64 rng(5);
  for (int f = 0; f < 16; ++f)
    for (unsigned lo = 0; lo < 2; ++lo)
      for (unsigned hi = 0; hi < 2; ++hi) {
        const std::uint32_t mask = (1u << f) | (1u << (16 + f));
        const std::uint32_t w = (static_cast<std::uint32_t>(rng()) & ~mask) | (lo << f) | (hi << (16 + f));
        const int row_half = (f % 4) % 2, s = fr::subnormal_field_shift(f, 1);
        INFO("1-bit field " << f << ", codes " << lo << ", " << hi);
        REQUIRE(s == 8 + row_half);
        check_subnormal_pair(fr::subnormal_code_pair(w, f, 1), row_half, s, 1, lo, hi);
      }
  // Trits: the slots t + 1 (0, 1, 2) as subnormal_code_pair forms them; the kernel's outputs are sum_t p~_t (slot_t
  // x 2^(s - 24)) x subnormal_unscale - sum_t p~_t. Hand-worked on four tokens, trits -1, 0, +1, +1 with p~ = 1, 0.5,
  // 0.25, 0.125: slots 0, 1, 2, 2 give 0.5 + 0.5 + 0.25 = 1.25, minus 1.875 = -0.625 = -1 + 0 + 0.25 + 0.125; and
  // with every trit 0 the two sums are the same products up to the power of two, so on the host (fp32 products and
  // sums of these powers of two: exact) the difference is exactly 0. (The tensor cores sum the subnormal codes'
  // products less precisely: tolerance 6.'s alignment term, the [cuda] test of fragment_operand_check.)
  for (int j = 0; j < 8; ++j) {
    const int row_half = (j % 4) % 2;
    const float p[4] = {1.0f, 0.5f, 0.25f, 0.125f};
    const unsigned slots[4] = {0, 1, 2, 2};
    float sum = 0.0f, zero = 0.0f, psum = 0.0f;
    for (int t = 0; t < 4; ++t) {
      const std::uint32_t w = (static_cast<std::uint32_t>(rng()) & ~(3u << (2 * j))) | (slots[t] << (2 * j));
      const std::uint32_t one = (static_cast<std::uint32_t>(rng()) & ~(3u << (2 * j))) | (1u << (2 * j));
      sum += half_bits_to_float(static_cast<std::uint16_t>(fr::subnormal_code_pair(w, j, 2))) * p[t];
      zero += half_bits_to_float(static_cast<std::uint16_t>(fr::subnormal_code_pair(one, j, 2))) * p[t];
      psum += p[t];
    }
    INFO("2-bit field " << j);
    REQUIRE(sum * fr::subnormal_unscale(row_half, 2) - psum == -0.625f);
    REQUIRE(zero * fr::subnormal_unscale(row_half, 2) - psum == 0.0f);
  }
  // fragment_tile with mixed keys: the low child's codes 8-byte aligned (the lanes' pair copies) and group-major, every
  // key metadata section 4-byte aligned (a word per lane); the high child's codes 16-byte aligned as before.
  alignas(16) static std::uint8_t bytes[64];
  at::BlockEntry keys[1] = {{bytes, 0, 64, 0, 0}};
  at::BlockEntry values[1] = {{bytes, 0, 64, 0, 0}};
  at::Problem p;
  p.fragment = true;
  p.key.mixed = true;
  p.key_blocks = keys;
  p.value_blocks = values;
  af::PartRef kp, vp;
  kp.first.codes = kp.first.scales = kp.first.mins = bytes;
  kp.second.codes = kp.second.scales = bytes + 8;
  kp.first.group_major = kp.second.group_major = true;
  vp.first.codes = bytes;
  at::TileEntry t;
  t.t0 = 32;
  t.n = 32;
  t.key_block = t.value_block = 0;
  CHECK(at::fragment_tile(p, t, kp, vp));
  kp.second.codes = bytes + 4;  // the low codes off 8 bytes
  CHECK_FALSE(at::fragment_tile(p, t, kp, vp));
  kp.second.codes = bytes + 8;
  kp.second.scales = bytes + 2;  // the low scales off 4 bytes
  CHECK_FALSE(at::fragment_tile(p, t, kp, vp));
  kp.second.scales = bytes + 8;
  kp.first.mins = bytes + 6;  // the high mins off 4 bytes
  CHECK_FALSE(at::fragment_tile(p, t, kp, vp));
  kp.first.mins = bytes;
  kp.second.group_major = false;  // the low scales in the canonical order
  CHECK_FALSE(at::fragment_tile(p, t, kp, vp));
}
