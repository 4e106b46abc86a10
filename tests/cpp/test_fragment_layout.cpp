// uniform's layout fragment (group_format.h): the 2-bit codes of dense, permuted into the order of mma.m16n8k16's A
// operands per 32-token tile. The map is a bijection whose inverse is fragment_element; hand-worked positions;
// every lane's registers hold the (row, column) pairs of the PTX fragment; the permutations between the layouts;
// channel-axis metadata group-major (meta_index, the section permutations); the uniform quantizer in layout fragment
// (reference and optimised tiers) writes dense's metadata (group-major on the channel axis) and permuted codes and
// decodes to dense's values bit for bit; the byte-per-thread packer (code_byte) writes the reference's
// bytes; refusals of what the layout cannot hold; every element read in place by decode attention.
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "catch.h"
#include "decode_attention_test_support.h"
#include "quantizer_test_helpers.h"
#include "test_registry.h"
#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/group_format.h"

using namespace vidkv;
using namespace vidkv::test;
namespace gf = group_format;

namespace {

std::unique_ptr<Quantizer> make_with(CpuImplementation impl, const KeyValues& params) {
  return test::builtin_registry(impl).make_quantizer(quantizer_block("uniform", params));
}

KeyValues with_layout(KeyValues p, const char* layout) {
  p.emplace_back("layout", layout);
  return p;
}

}  // namespace

TEST_CASE("fragment layout: the code index is a bijection onto the dense stream's codes, fragment_element its inverse",
          "[quantizer][uniform][fragment]") {
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token})
    for (std::int64_t tokens : {1, 31, 32, 45, 64, 100})
      for (std::int64_t channels : {64, 128}) {
        INFO("axis " << (axis == gf::GroupAxis::channel ? "channel" : "token") << " tokens " << tokens << " channels " << channels);
        const std::int64_t heads = 2, n = heads * tokens * channels;
        std::vector<char> seen(static_cast<std::size_t>(n), 0);
        for (std::int64_t h = 0; h < heads; ++h)
          for (std::int64_t t = 0; t < tokens; ++t)
            for (std::int64_t c = 0; c < channels; ++c) {
              const std::int64_t k = gf::fragment_code_index(axis, tokens, channels, h, t, c);
              REQUIRE(k >= 0);
              REQUIRE(k < n);
              REQUIRE(seen[static_cast<std::size_t>(k)] == 0);
              seen[static_cast<std::size_t>(k)] = 1;
              const gf::FragmentElement e = gf::fragment_element(axis, tokens, channels, k);
              REQUIRE(e.h == h);
              REQUIRE(e.t == t);
              REQUIRE(e.c == c);
            }
      }
}

TEST_CASE("fragment layout: hand-worked positions, and the tail after the whole tiles in dense order",
          "[quantizer][uniform][fragment]") {
  // Keys (channel axis), 64 channels, token 9, channel 3: A row 9 -> g = 1, a & 1 = 1; column 3 -> t4 = 1, the high
  // half, a >> 1 = 0; lane 4 g + t4 = 5, register a = 1 of pair (mt 0, kc 0): register 1 = word 0, field 1; the
  // lane's word 0 is word 4 * 5 = 20 of the tile; the high half's field 1 at bit 16 + 2: bit 658, code 329.
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, 32, 64, 0, 9, 3) == 329);
  // Values (token axis), same element: A row = channel 3 -> g = 3, a & 1 = 0; column = token 9 -> t4 = 0, the high
  // half, a >> 1 = 1; lane 12, register 2, word 0 field 2; tile word 48; bit 48 * 32 + 16 + 4 = 1556, code 778.
  CHECK(gf::fragment_code_index(gf::GroupAxis::token, 32, 64, 0, 9, 3) == 778);
  // Keys, 128 channels, token 40 (second tile, tt 8), channel 100: row 8 -> g 0, a & 1 = 1; kc 6, column 4 -> t4 2,
  // low half, a >> 1 = 0; lane 2; pair mt 0 * 8 + kc 6 = 6, register 4 * 6 + 1 = 25: word 3 field 1; tile word
  // 0 * 128 + 4 * 2 + 3 = 11; code 32 * 128 (one tile) + 11 * 16 + 0 + 1 = 4273.
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, 64, 128, 0, 40, 100) == 4273);
  // Head 1 starts after head 0's tokens x channels codes; the tail (45 - 32 = 13 tokens) after the tile, dense:
  // channel axis channel-major (channel 5, tail token 2: 5 * 13 + 2), token axis token-major (2 * 64 + 5).
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, 45, 64, 1, 34, 5) == 45 * 64 + 32 * 64 + 5 * 13 + 2);
  CHECK(gf::fragment_code_index(gf::GroupAxis::token, 45, 64, 1, 34, 5) == 45 * 64 + 32 * 64 + 2 * 64 + 5);
}

TEST_CASE("fragment layout: each lane's registers hold the elements of its mma.m16n8k16 A fragment",
          "[quantizer][uniform][fragment]") {
  // The PTX ISA's A layout for .f16 m16n8k16: lane l = 4 g + t4 holds, in register a (two halves), row g + 8 (a & 1),
  // columns 2 t4 + 8 (a >> 1) + {0, 1}. Register r of a lane (r = 4 pair + a) is field r % 8 of its word r / 8, the
  // word at (w / 4) * 128 + 4 l + w % 4 of the tile; read back here from the code index.
  for (std::int64_t D : {64, 128, 256})
  for (std::int64_t tile : {0, 1})  // of a block of 70 tokens: two whole tiles and a tail
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token})
    for (std::int64_t pair = 0; pair < D / 8; ++pair)
      for (std::int64_t lane = 0; lane < 32; ++lane)
        for (std::int64_t a = 0; a < 4; ++a)
          for (std::int64_t half = 0; half < 2; ++half) {
            const std::int64_t row = lane / 4 + 8 * (a & 1), col = 2 * (lane % 4) + 8 * (a >> 1) + half;
            // keys: pair = mt * (D / 16) + kc, A = [tokens x channels]; values: pair = 2 mv + kt, A = [channels x tokens]
            const std::int64_t t = axis == gf::GroupAxis::channel ? 16 * (pair / (D / 16)) + row : 16 * (pair % 2) + col;
            const std::int64_t c = axis == gf::GroupAxis::channel ? 16 * (pair % (D / 16)) + col : 16 * (pair / 2) + row;
            const std::int64_t r = 4 * pair + a, w = r / 8;
            const std::int64_t word = (w / 4) * 128 + 4 * lane + w % 4;
            REQUIRE(gf::fragment_code_index(axis, 70, D, 0, 32 * tile + t, c) == 32 * D * tile + word * 16 + 8 * half + r % 8);
          }
}

TEST_CASE("fragment layout: a token's key codes by lane word and field (fragment_key_word / _field) are fragment_code_index's",
          "[quantizer][uniform][fragment]") {
  // Every channel of every token in whole tiles (70 tokens: two tiles and a tail; two heads), read the way decode
  // attention's general kernel reads a narrow key tile: lane t4 of the token, chunk kc, half b; the low half of the
  // field is channel 16 kc + 8 b + 2 t4, the high half the next one (16 bits up: 8 codes).
  // Hand-worked (128 channels, token 40 = tile 1, tt 8; channel 100 = kc 6, b 0, t4 2, low half; as the positions
  // test): lane 4 * 0 + 2, pair 0 * 8 + 6 -> word 3 of the lane, field 4 * 0 + 1 + 0 = 1; word 32 * 128 / 16 + 4 * 2 + 3.
  CHECK(gf::fragment_key_word(64, 128, 0, 40, 2, 6) == 256 + 11);
  CHECK(gf::fragment_key_field(40, 6, 0) == 1);
  for (std::int64_t D : {64, 128, 256})
    for (std::int64_t h = 0; h < 2; ++h)
      for (std::int64_t t = 0; t < 64; ++t)
        for (int t4 = 0; t4 < 4; ++t4)
          for (std::int64_t kc = 0; kc < D / 16; ++kc)
            for (int b = 0; b < 2; ++b)
              for (int half = 0; half < 2; ++half) {
                const std::int64_t c = 16 * kc + 8 * b + 2 * t4 + half;
                INFO("D " << D << " head " << h << " token " << t << " channel " << c);
                REQUIRE(gf::fragment_key_word(70, D, h, t, t4, kc) * 16 + 8 * half + gf::fragment_key_field(t, kc, b) ==
                        gf::fragment_code_index(gf::GroupAxis::channel, 70, D, h, t, c));
              }
}

TEST_CASE("fragment layout: dense and fragment codes sections permute into each other", "[quantizer][uniform][fragment]") {
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token}) {
    const gf::GroupGrid g = gf::make_group_grid(axis, 3, 77, 64, 32);
    const std::size_t n = gf::code_bytes(gf::CodeLayout::dense, g, 2);
    REQUIRE(gf::code_bytes(gf::CodeLayout::fragment, g, 2) == n);
    std::vector<std::uint8_t> dense(n), fragment(n, 0), back(n);
    std::uint64_t x = 0x9E3779B97F4A7C15ull;
    for (auto& b : dense) b = static_cast<std::uint8_t>((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
    gf::fragment_from_dense(g, dense.data(), fragment.data());
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::int64_t r = 0; r < g.rows; ++r)
        for (std::int64_t j = 0; j < g.length; ++j)
          REQUIRE(gf::get_code(gf::CodeLayout::fragment, fragment.data(), g, 2, h, r, j) ==
                  gf::get_code(gf::CodeLayout::dense, dense.data(), g, 2, h, r, j));
    gf::dense_from_fragment(g, fragment.data(), back.data());
    REQUIRE(back == dense);
  }
}

TEST_CASE("fragment layout: channel-axis metadata group-major, meta_index and the section permutations agree",
          "[quantizer][uniform][fragment]") {
  // group_major_meta: layout fragment, channel axis, at least one whole 32-token tile; every other grid canonical.
  CHECK(gf::group_major_meta(gf::CodeLayout::fragment, gf::make_group_grid(gf::GroupAxis::channel, 1, 32, 64, 32)));
  CHECK_FALSE(gf::group_major_meta(gf::CodeLayout::fragment, gf::make_group_grid(gf::GroupAxis::channel, 1, 31, 64, 32)));
  CHECK_FALSE(gf::group_major_meta(gf::CodeLayout::fragment, gf::make_group_grid(gf::GroupAxis::token, 1, 64, 64, 32)));
  CHECK_FALSE(gf::group_major_meta(gf::CodeLayout::dense, gf::make_group_grid(gf::GroupAxis::channel, 1, 64, 64, 32)));
  // Hand-worked: 1 head, 64 channels, 70 tokens in groups of 32 (groups 0, 1 and the tail group 2 of 6 tokens).
  // Channel 3's group 1: canonical 3 * 3 + 1 = 10, group-major 1 * 64 + 3 = 67; channel 63's tail group: 191 / 191.
  const gf::GroupGrid hand = gf::make_group_grid(gf::GroupAxis::channel, 1, 70, 64, 32);
  CHECK(gf::meta_index(gf::CodeLayout::fragment, hand, 0, 3, 1) == 67);
  CHECK(gf::meta_index(gf::CodeLayout::dense, hand, 0, 3, 1) == 10);
  CHECK(gf::meta_index(gf::CodeLayout::fragment, hand, 0, 63, 2) == 191);
  for (int size : {2, 4}) {
    const gf::GroupGrid g = gf::make_group_grid(gf::GroupAxis::channel, 3, 77, 64, 16);  // 5 groups per row, a tail
    const auto n = static_cast<std::size_t>(g.group_count() * size);
    std::vector<std::uint8_t> canonical(n), major(n), back(n);
    std::uint64_t x = 0x2545F4914F6CDD1Dull;
    for (auto& b : canonical) b = static_cast<std::uint8_t>((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
    gf::permute_group_major_meta(g, size, 1, canonical.data(), major.data(), true);
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::int64_t r = 0; r < g.rows; ++r)
        for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi)
          REQUIRE(std::memcmp(&major[static_cast<std::size_t>(gf::meta_index(gf::CodeLayout::fragment, g, h, r, gi) * size)],
                              &canonical[static_cast<std::size_t>(g.group_index(h, r, gi) * size)], static_cast<std::size_t>(size)) == 0);
    gf::permute_group_major_meta(g, size, 1, major.data(), back.data(), false);
    REQUIRE(back == canonical);
  }
}

TEST_CASE("uniform in layout fragment stores dense's metadata (group-major on the channel axis) and permuted codes and decodes to dense's values",
          "[quantizer][uniform][fragment]") {
  const std::vector<BlockShape> shapes{{1, 32, 64}, {2, 45, 128}, {3, 100, 64}, {1, 7, 64}, {2, 256, 128}};
  const std::vector<KeyValues> params{{{"axis", "channel"}},
                                      {{"axis", "token"}},
                                      {{"axis", "channel"}, {"group", "16"}, {"scale_dtype", "fp32"}},
                                      {{"axis", "token"}, {"group", "20"}}};
  std::uint64_t seed = 3;
  for (const auto& p : params)
    for (const BlockShape& s : shapes)
      for (CpuImplementation impl : {CpuImplementation::reference, CpuImplementation::optimized}) {
        INFO("shape " << s.str() << (impl == CpuImplementation::reference ? " reference" : " optimized") << " params "
                      << p.front().second << (p.size() > 1 ? " (+ group / scale_dtype)" : ""));
        const auto x = gaussian(static_cast<std::size_t>(s.elements()), ++seed);
        const auto dense_q = make_with(CpuImplementation::reference, with_layout(p, "dense"));
        const auto frag_q = make_with(impl, with_layout(p, "fragment"));
        const auto dense = encode(*dense_q, s, x);
        const auto frag = encode(*frag_q, s, x);
        REQUIRE(frag.size() == dense.size());
        const auto g = gf::make_group_grid(p.front().second == "channel" ? gf::GroupAxis::channel : gf::GroupAxis::token,
                                           s.heads, s.tokens, s.channels, 32);
        const std::size_t nc = gf::code_bytes(gf::CodeLayout::dense, g, 2);
        std::vector<std::uint8_t> want(nc);
        gf::fragment_from_dense(g, dense.data(), want.data());
        REQUIRE(std::vector<std::uint8_t>(frag.begin(), frag.begin() + std::ptrdiff_t(nc)) == want);
        // Metadata: dense's sections, permuted group-major where group_major_meta holds (the quantizer's own grid).
        const bool channel = p.front().second == "channel";
        const auto gq = gf::make_group_grid(g.axis, s.heads, s.tokens, s.channels, p.size() > 1 ? std::stoll(p[1].second) : 32);
        const int size = p.size() > 2 ? 4 : 2;
        std::vector<std::uint8_t> want_meta(dense.begin() + std::ptrdiff_t(nc), dense.end());
        CHECK(gf::group_major_meta(gf::CodeLayout::fragment, gq) == (channel && s.tokens >= 32));
        if (gf::group_major_meta(gf::CodeLayout::fragment, gq)) {
          const auto section = static_cast<std::size_t>(gq.group_count() * size);
          REQUIRE(want_meta.size() == 2 * section);
          gf::permute_group_major_meta(gq, size, 2, dense.data() + nc, want_meta.data(), true);
        }
        REQUIRE(std::vector<std::uint8_t>(frag.begin() + std::ptrdiff_t(nc), frag.end()) == want_meta);
        const auto a = decode(*dense_q, s, dense), b = decode(*frag_q, s, frag);
        REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
        // The same tier as layout dense on this machine (the optimised tiers code dense and permute).
        CHECK(frag_q->tier(Device::cpu, s).name == make_with(impl, with_layout(p, "dense"))->tier(Device::cpu, s).name);
      }
}

TEST_CASE("fragment layout: the byte-per-thread packer (code_byte) writes put_code's bytes", "[quantizer][uniform][fragment]") {
  // code_byte: group_format's byte-per-thread packer for any layout (uniform's CUDA encode runs it for layouts dense and
  // release; fragment goes through dense and the permutation, tested above).
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token}) {
    const gf::GroupGrid g = gf::make_group_grid(axis, 2, 70, 64, 32);
    const std::size_t n = gf::code_bytes(gf::CodeLayout::fragment, g, 2);
    const auto code_of = [&](std::int64_t h, std::int64_t r, std::int64_t j) {
      return static_cast<unsigned>((h * 7 + r * 3 + j * 5 + (r * j) % 11) & 3);
    };
    std::vector<std::uint8_t> want(n, 0);
    for (std::int64_t h = 0; h < g.heads; ++h)
      for (std::int64_t r = 0; r < g.rows; ++r)
        for (std::int64_t j = 0; j < g.length; ++j) gf::put_code(gf::CodeLayout::fragment, want.data(), g, 2, h, r, j, code_of(h, r, j));
    for (std::size_t b = 0; b < n; ++b)
      REQUIRE(gf::code_byte(gf::CodeLayout::fragment, g, 2, static_cast<std::int64_t>(b), code_of) == want[b]);
  }
}

TEST_CASE("layout fragment refuses what it cannot hold, naming the key or the shape", "[quantizer][uniform][fragment]") {
  for (int bits : {1, 3, 4, 8}) {
    try {
      make("uniform", {{"bits", std::to_string(bits)}, {"layout", "fragment"}});
      FAIL("expected ConfigError for bits " << bits);
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()).find("layout: fragment holds 2-bit codes only, got bits = " + std::to_string(bits)) !=
            std::string::npos);
      CHECK(std::string(e.what()).find("test:") != std::string::npos);  // the YAML location of the block
    }
  }
  UniformParams p;
  p.bits = 4;
  p.layout = gf::CodeLayout::fragment;
  CHECK_THROWS_AS(UniformQuantizer(p), ConfigError);
  // A head_dim that is not a multiple of 64: ShapeError from layout() (what encode and the caches size first).
  const auto q = make("uniform", {{"layout", "fragment"}});
  try {
    (void)q->layout(BlockShape{1, 32, 48}, TokenContext{});
    FAIL("expected ShapeError");
  } catch (const ShapeError& e) {
    CHECK(std::string(e.what()).find("got a block of 48 channels") != std::string::npos);
  }
  CHECK_NOTHROW(q->layout(BlockShape{1, 33, 192}, TokenContext{}));
  // supports() says so before any block is encoded (an experiment is refused while planned), also for a mixed_channel
  // part: a selector keeping a quarter of 128 channels (32) in the high part (its default, half, would be 64: fine).
  std::string why;
  CHECK_FALSE(q->supports(Device::cpu, BlockShape{1, 32, 48}, &why));
  CHECK(why.find("uniform layout fragment needs a multiple of 64 channels") != std::string::npos);
  CHECK(q->supports(Device::cpu, BlockShape{1, 32, 128}, &why));
  ConfigNode mixed = quantizer_block("mixed_channel");
  mixed.set("high", quantizer_block("uniform", {{"layout", "fragment"}}));
  ConfigNode selector = ConfigNode::map({"test", 1, 1});
  selector.set("type", ConfigNode::scalar("range", {"test", 1, 1}));
  selector.set("fraction", ConfigNode::scalar("0.25", {"test", 1, 1}));
  mixed.set("selector", selector);
  const auto mc = test::builtin_registry().make_quantizer(mixed);
  why.clear();
  CHECK_FALSE(mc->supports(Device::cpu, BlockShape{1, 32, 128}, &why));
  CHECK(why.find("high: uniform layout fragment") != std::string::npos);
  CHECK_FALSE(decode_attention_supports(*mc, 128, KvSide::key, &why));
  CHECK(why.find("multiple of 64 channels per part, got 32") != std::string::npos);
  mixed.set("selector", quantizer_block("range"));  // half: 64 high channels, 64 low (sign, dense)
  CHECK(test::builtin_registry().make_quantizer(mixed)->supports(Device::cpu, BlockShape{1, 32, 128}, &why));
  // sign and ternary do not take it: YAML offers them dense and release; sign built in code refuses it.
  CHECK_THROWS_AS(make("sign", {{"layout", "fragment"}}), ConfigError);
  SignParams sp;
  sp.layout = gf::CodeLayout::fragment;
  CHECK_THROWS_AS(SignQuantizer(sp), ConfigError);
}

TEST_CASE("decode attention reads every element of a fragment-layout cache as the plugin decodes it",
          "[cpu][attention][fragment]") {
  // The kivi-lifecycle fragment codec of attention_codecs() (the last one) at 64 and 128 channels: key blocks of
  // whole tiles, value blocks with a dense tail and one-token blocks; every element read in place (view_code through
  // fragment_code_index) equals the cache's decoded value, bit for bit.
  namespace af = attention_format;
  const AttentionCodec ac = attention_codecs().back();
  REQUIRE(ac.name.find("fragment") != std::string::npos);
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
  std::string why;
  CHECK_FALSE(decode_attention_supports(codec.key(), 48, KvSide::key, &why));
  CHECK(why.find("multiple of 64 channels") != std::string::npos);
  for (int channels : {64, 128}) {
    const LayerInput in = synthetic_input(2, 230, channels, 5);
    const auto cache = filled_cache(codec, ac.lifecycle, in, 200, Execution::cpu());
    const af::SideFormat kf = side_format(codec.key(), channels, KvSide::key), vf = side_format(codec.value(), channels, KvSide::value);
    REQUIRE(kf.first.layout == gf::CodeLayout::fragment);
    for (std::int64_t h = 0; h < in.heads; ++h) {
      std::vector<double> k, v;
      decoded_head(*cache, h, k, v);
      for (int side = 0; side < 2; ++side) {
        const LayerCache::SideRef s = side == 0 ? cache->key_side() : cache->value_side();
        const af::SideFormat& f = side == 0 ? kf : vf;
        REQUIRE(!s.blocks.empty());
        for (const auto& blk : s.blocks) {
          const std::int64_t n = blk.end - blk.begin;
          const af::PartRef part = af::part_of(f, blk.bytes, in.heads, n, channels, h, 0);
          for (std::int64_t t = 0; t < n; ++t)
            for (std::int64_t c = 0; c < channels; ++c)
              REQUIRE(static_cast<double>(af::side_element(f, part, channels, t, c, 0)) ==
                      (side == 0 ? k : v)[static_cast<std::size_t>((blk.begin + t) * channels + c)]);
        }
      }
    }
  }
}
