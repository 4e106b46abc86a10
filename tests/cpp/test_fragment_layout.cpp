// The fragment layout (group_format.h): dense's codes permuted into the order of mma.m16n8k16's A operands per
// 32-token tile, in every form (keys or values operand, 1- or 2-bit codes: uniform's and sign's layout fragment,
// ternary's packing fragment). The map is a bijection whose inverse is fragment_element; hand-worked positions;
// every lane's registers hold the (row, column) pairs of the PTX fragment; the permutations between the layouts;
// channel-axis metadata group-major (meta_index, the section permutations); uniform, sign and ternary in the fragment
// layout (reference and optimised tiers) write dense's (slots2's) metadata (group-major on the channel axis) and
// permuted codes and decode to dense's values bit for bit; the byte-per-thread packer (code_byte) writes the
// reference's bytes; refusals of what the layout cannot hold; every element read in place by decode attention, and
// the preset vidkv-k1.5-v1.58-fragment read as its dense twin.
#include <cstdint>
#include <cstring>
#include <set>
#include <iostream>
#include <string>
#include <tuple>
#include <vector>

#include "catch.h"
#include "decode_attention_test_support.h"
#include "quantizer_test_helpers.h"
#include "test_registry.h"
#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#include "vidkv/plugins/quantizers/uniform/uniform_format.h"
#include "vidkv/quantization/fragment_permute.h"
#include "vidkv/quantization/group_format.h"

using namespace vidkv;
using namespace vidkv::test;
namespace gf = group_format;

namespace {

std::unique_ptr<Quantizer> make_with(CpuImplementation impl, const KeyValues& params) {
  return test::builtin_registry(impl).make_quantizer(quantizer_block("uniform", params));
}

// uniform's and sign's form: the operand by the grouped axis.
gf::FragmentForm by_axis(gf::GroupAxis axis, unsigned bits = 2) {
  return {axis == gf::GroupAxis::channel ? gf::FragmentOperand::keys : gf::FragmentOperand::values, bits};
}
const char* operand_name(gf::FragmentOperand op) { return op == gf::FragmentOperand::keys ? "keys" : "values"; }

KeyValues with_layout(KeyValues p, const char* layout) {
  p.emplace_back("layout", layout);
  return p;
}

}  // namespace

TEST_CASE("fragment layout: the code index is a bijection onto the dense stream's codes, fragment_element its inverse",
          "[quantizer][uniform][fragment]") {
  // Every form (keys or values operand, 1- or 2-bit codes) on either axis (the tail's order).
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token})
    for (gf::FragmentOperand op : {gf::FragmentOperand::keys, gf::FragmentOperand::values})
      for (unsigned bits : {1u, 2u})
        for (std::int64_t tokens : {1, 31, 32, 45, 64, 100})
          for (std::int64_t channels : {64, 128}) {
            const gf::FragmentForm form{op, bits};
            INFO("axis " << (axis == gf::GroupAxis::channel ? "channel" : "token") << " operand " << operand_name(op) << " bits "
                         << bits << " tokens " << tokens << " channels " << channels);
            const std::int64_t heads = 2, n = heads * tokens * channels;
            std::vector<char> seen(static_cast<std::size_t>(n), 0);
            for (std::int64_t h = 0; h < heads; ++h)
              for (std::int64_t t = 0; t < tokens; ++t)
                for (std::int64_t c = 0; c < channels; ++c) {
                  const std::int64_t k = gf::fragment_code_index(axis, form, tokens, channels, h, t, c);
                  REQUIRE(k >= 0);
                  REQUIRE(k < n);
                  REQUIRE(seen[static_cast<std::size_t>(k)] == 0);
                  seen[static_cast<std::size_t>(k)] = 1;
                  const gf::FragmentElement e = gf::fragment_element(axis, form, tokens, channels, k);
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
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, by_axis(gf::GroupAxis::channel), 32, 64, 0, 9, 3) == 329);
  // Values (token axis), same element: A row = channel 3 -> g = 3, a & 1 = 0; column = token 9 -> t4 = 0, the high
  // half, a >> 1 = 1; lane 12, register 2, word 0 field 2; tile word 48; bit 48 * 32 + 16 + 4 = 1556, code 778.
  CHECK(gf::fragment_code_index(gf::GroupAxis::token, by_axis(gf::GroupAxis::token), 32, 64, 0, 9, 3) == 778);
  // The values' orientation on a channel-axis grid (ternary's per-channel values): the same tile position, code 778;
  // with 40 tokens the tail (8 tokens) channel-major as the grid's dense order: token 33 of channel 3 is code
  // 32 * 64 + 3 * 8 + 1.
  const gf::FragmentForm values2{gf::FragmentOperand::values, 2};
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, values2, 40, 64, 0, 9, 3) == 778);
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, values2, 40, 64, 0, 33, 3) == 32 * 64 + 3 * 8 + 1);
  // 1-bit keys (sign's FFT components), 64 channels, token 9, channel 35: row 9 -> g 1, a & 1 = 1; column 35 % 16 = 3
  // -> t4 1, high half, a >> 1 = 0; lane 5; pair kc = 2, register 4 * 2 + 1 = 9: word 0 (16 registers a word) field
  // 9; 8-byte pairs per lane: tile word 2 * 5 + 0 = 10; bit 10 * 32 + 16 + 9 = 345.
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, by_axis(gf::GroupAxis::channel, 1), 32, 64, 0, 9, 35) == 345);
  // 1-bit keys, 128 channels, token 40 (tile 1, tt 8), channel 100: row 8 -> g 0, a & 1 = 1; kc 6, column 4 -> t4 2,
  // low half, a >> 1 = 0; lane 2; register 4 * 6 + 1 = 25: word 1 field 9; tile word (1 / 2) 64 + 2 * 2 + 1 = 5;
  // bit 32 * 128 (one tile) + 5 * 32 + 9 = 4265.
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, by_axis(gf::GroupAxis::channel, 1), 64, 128, 0, 40, 100) == 4265);
  // Keys, 128 channels, token 40 (second tile, tt 8), channel 100: row 8 -> g 0, a & 1 = 1; kc 6, column 4 -> t4 2,
  // low half, a >> 1 = 0; lane 2; pair mt 0 * 8 + kc 6 = 6, register 4 * 6 + 1 = 25: word 3 field 1; tile word
  // 0 * 128 + 4 * 2 + 3 = 11; code 32 * 128 (one tile) + 11 * 16 + 0 + 1 = 4273.
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, by_axis(gf::GroupAxis::channel), 64, 128, 0, 40, 100) == 4273);
  // Head 1 starts after head 0's tokens x channels codes; the tail (45 - 32 = 13 tokens) after the tile, dense:
  // channel axis channel-major (channel 5, tail token 2: 5 * 13 + 2), token axis token-major (2 * 64 + 5).
  CHECK(gf::fragment_code_index(gf::GroupAxis::channel, by_axis(gf::GroupAxis::channel), 45, 64, 1, 34, 5) == 45 * 64 + 32 * 64 + 5 * 13 + 2);
  CHECK(gf::fragment_code_index(gf::GroupAxis::token, by_axis(gf::GroupAxis::token), 45, 64, 1, 34, 5) == 45 * 64 + 32 * 64 + 2 * 64 + 5);
}

TEST_CASE("fragment layout: each lane's registers hold the elements of its mma.m16n8k16 A fragment",
          "[quantizer][uniform][fragment]") {
  // The PTX ISA's A layout for .f16 m16n8k16: lane l = 4 g + t4 holds, in register a (two halves), row g + 8 (a & 1),
  // columns 2 t4 + 8 (a >> 1) + {0, 1}. Register r of a lane (r = 4 pair + a) is field r % F of its word r / F
  // (F = 16 / bits), the word at (w / V) * 32 V + V l + w % V of the tile (V = 2 bits); read back here from the
  // code index, for both operands and code widths.
  for (unsigned bits : {1u, 2u})
  for (std::int64_t D : {64, 128, 256})
  for (std::int64_t tile : {0, 1})  // of a block of 70 tokens: two whole tiles and a tail
  for (gf::FragmentOperand op : {gf::FragmentOperand::keys, gf::FragmentOperand::values})
    for (std::int64_t pair = 0; pair < D / 8; ++pair)
      for (std::int64_t lane = 0; lane < 32; ++lane)
        for (std::int64_t a = 0; a < 4; ++a)
          for (std::int64_t half = 0; half < 2; ++half) {
            const bool keys = op == gf::FragmentOperand::keys;
            const std::int64_t row = lane / 4 + 8 * (a & 1), col = 2 * (lane % 4) + 8 * (a >> 1) + half;
            // keys: pair = mt * (D / 16) + kc, A = [tokens x channels]; values: pair = 2 mv + kt, A = [channels x tokens]
            const std::int64_t t = keys ? 16 * (pair / (D / 16)) + row : 16 * (pair % 2) + col;
            const std::int64_t c = keys ? 16 * (pair % (D / 16)) + col : 16 * (pair / 2) + row;
            const std::int64_t F = 16 / bits, V = 2 * bits;
            const std::int64_t r = 4 * pair + a, w = r / F;
            const std::int64_t word = (w / V) * 32 * V + V * lane + w % V;
            const std::int64_t bit = 32 * D * bits * tile + 32 * word + 16 * half + bits * (r % F);
            for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token})
              REQUIRE(gf::fragment_code_index(axis, gf::FragmentForm{op, bits}, 70, D, 0, 32 * tile + t, c) * bits == bit);
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
                        gf::fragment_code_index(gf::GroupAxis::channel, by_axis(gf::GroupAxis::channel), 70, D, h, t, c));
              }
}

TEST_CASE("fragment layout: dense and fragment codes sections permute into each other", "[quantizer][uniform][fragment]") {
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token})
    for (gf::FragmentOperand op : {gf::FragmentOperand::keys, gf::FragmentOperand::values})
      for (unsigned bits : {1u, 2u}) {
        INFO("axis " << (axis == gf::GroupAxis::channel ? "channel" : "token") << " operand " << operand_name(op) << " bits " << bits);
        const gf::FragmentForm form{op, bits};
        const gf::GroupGrid g = gf::make_group_grid(axis, 3, 77, 64, 32);
        const std::size_t n = gf::code_bytes(gf::CodeLayout::dense, g, bits);
        REQUIRE(gf::code_bytes(gf::CodeLayout::fragment, g, bits) == n);
        std::vector<std::uint8_t> dense(n), fragment(n, 0), back(n);
        std::uint64_t x = 0x9E3779B97F4A7C15ull;
        for (auto& b : dense) b = static_cast<std::uint8_t>((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
        gf::fragment_from_dense(g, form, dense.data(), fragment.data());
        for (std::int64_t h = 0; h < g.heads; ++h)
          for (std::int64_t r = 0; r < g.rows; ++r)
            for (std::int64_t j = 0; j < g.length; ++j) {
              const auto k = static_cast<std::size_t>(gf::fragment_index(g, form, h, r, j));
              REQUIRE(bits::dense_get(fragment.data(), k, bits) == gf::get_code(gf::CodeLayout::dense, dense.data(), g, bits, h, r, j));
              if (op == gf::fragment_form(g, bits).operand)  // get_code reads uniform's and sign's form
                REQUIRE(gf::get_code(gf::CodeLayout::fragment, fragment.data(), g, bits, h, r, j) ==
                        gf::get_code(gf::CodeLayout::dense, dense.data(), g, bits, h, r, j));
            }
        gf::dense_from_fragment(g, form, fragment.data(), back.data());
        REQUIRE(back == dense);
      }
}

TEST_CASE("fragment_permute's word-at-a-time permutation writes group_format's bytes, both ways, with the metadata",
          "[quantizer][fragment]") {
  // The CPU tiers' permutation (fragment_permute.cpp: each tile's lane words built forward from lane and register, then
  // the tail) against the per-byte definition (group_format::fragment_from_dense / dense_from_fragment) for every form
  // and axis, token counts with and without a tail (and all tail: nothing moves), two metadata sections of fp16 moved
  // group-major on the channel axis; the round trip restores the dense block.
  for (gf::GroupAxis axis : {gf::GroupAxis::channel, gf::GroupAxis::token})
    for (gf::FragmentOperand op : {gf::FragmentOperand::keys, gf::FragmentOperand::values})
      for (unsigned bits : {1u, 2u})
        for (std::int64_t tokens : {7, 32, 45, 100})
          for (std::int64_t channels : {64, 128, 192}) {
            INFO("axis " << (axis == gf::GroupAxis::channel ? "channel" : "token") << " operand " << operand_name(op) << " bits "
                         << bits << " tokens " << tokens << " channels " << channels);
            const gf::GroupGrid g = gf::make_group_grid(axis, 3, tokens, channels, 32);
            const fragment_permute::BlockSections sec{g, gf::FragmentForm{op, bits}, 2, 2};
            const std::size_t n = sec.code_bytes(), total = n + sec.meta_bytes() + 5;  // 5 bytes past the sections
            std::vector<std::uint8_t> dense(total);
            std::uint64_t x = 0x9E3779B97F4A7C15ull ^ static_cast<std::uint64_t>(tokens * channels + bits);
            for (auto& byte : dense) byte = static_cast<std::uint8_t>((x = x * 6364136223846793005ull + 1442695040888963407ull) >> 56);
            std::vector<std::uint8_t> frag = dense;
            fragment_permute::dense_to_fragment(sec, frag.data());
            std::vector<std::uint8_t> want = dense;
            if (!gf::fragment_all_tail(g)) {
              gf::fragment_from_dense(g, sec.form, dense.data(), want.data());
              if (sec.group_major()) gf::permute_group_major_meta(g, 2, 2, dense.data() + n, want.data() + n, true);
            }
            REQUIRE(frag == want);
            std::vector<std::uint8_t> back(total, 0xEE);
            fragment_permute::fragment_to_dense(sec, frag.data(), back.data(), total);
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
        gf::fragment_from_dense(g, gf::fragment_form(g, 2), dense.data(), want.data());
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
  CHECK(why.find("high (32 of 128 channels): uniform layout fragment") != std::string::npos);
  CHECK_FALSE(decode_attention_supports(*mc, 128, KvSide::key, &why));
  CHECK(why.find("multiple of 64 channels per part, got 32") != std::string::npos);
  mixed.set("selector", quantizer_block("range"));  // half: 64 high channels, 64 low (sign, dense)
  CHECK(test::builtin_registry().make_quantizer(mixed)->supports(Device::cpu, BlockShape{1, 32, 128}, &why));
  // sign (1-bit codes) and ternary (packing fragment) need a multiple of 64 quantized values per token too: sign over
  // the real FFT of 48 channels has 48 components; ternary over 96 channels.
  const auto sq = make("sign", {{"layout", "fragment"}, {"fft", "real"}});
  why.clear();
  CHECK_FALSE(sq->supports(Device::cpu, BlockShape{1, 32, 48}, &why));
  CHECK(why.find("sign layout fragment needs a multiple of 64 quantized values per token") != std::string::npos);
  CHECK_THROWS_AS(sq->layout(BlockShape{1, 32, 48}, TokenContext{}), ShapeError);
  CHECK(sq->supports(Device::cpu, BlockShape{1, 32, 64}, &why));
  const auto tq = make("ternary", {{"packing", "fragment"}});
  why.clear();
  CHECK_FALSE(tq->supports(Device::cpu, BlockShape{1, 32, 96}, &why));
  CHECK(why.find("ternary packing fragment needs a multiple of 64 channels") != std::string::npos);
  CHECK_THROWS_AS(tq->layout(BlockShape{1, 32, 96}, TokenContext{}), ShapeError);
  // ternary's layout key is `packing`: a `layout` key is unknown to it.
  CHECK_THROWS_AS(make("ternary", {{"layout", "fragment"}}), ConfigError);
}

TEST_CASE("sign and ternary in the fragment layout store dense's (slots2's) bytes permuted and decode to the same values",
          "[quantizer][sign][ternary][fragment]") {
  // sign layout fragment: 1-bit codes in the form by the axis (keys on the channel axis), scales group-major on the
  // channel axis with a whole tile; ternary packing fragment: slots2's 2-bit slots in the values' form on either axis,
  // scales (reconstruction scaled) group-major likewise. Against the same plugin in layout dense / packing slots2 on
  // the same tier, for the reference and the optimised tiers: the codes are fragment_from_dense of dense's, the metadata
  // dense's permuted, the decode bit for bit the same.
  struct Case {
    const char* plugin;
    KeyValues params;     // besides the layout / packing
    const char* dense;    // the key and value of the dense twin
    const char* key;
    bool scales;          // a metadata section follows the codes
    gf::FragmentOperand operand_on_channel_axis;
  };
  const std::vector<Case> cases{
      {"sign", {{"axis", "channel"}}, "dense", "layout", true, gf::FragmentOperand::keys},
      {"sign", {{"axis", "channel"}, {"fft", "real"}}, "dense", "layout", true, gf::FragmentOperand::keys},
      {"sign", {{"axis", "token"}, {"group", "16"}, {"scale_dtype", "fp32"}}, "dense", "layout", true, gf::FragmentOperand::keys},
      {"ternary", {{"axis", "channel"}}, "slots2", "packing", false, gf::FragmentOperand::values},
      {"ternary", {{"axis", "channel"}, {"reconstruction", "scaled"}}, "slots2", "packing", true, gf::FragmentOperand::values},
      {"ternary", {{"axis", "token"}, {"reconstruction", "scaled"}, {"group", "16"}}, "slots2", "packing", true,
       gf::FragmentOperand::values},
  };
  const std::vector<BlockShape> shapes{{1, 32, 64}, {2, 45, 128}, {3, 100, 64}, {1, 7, 64}, {2, 256, 128}};
  std::uint64_t seed = 11;
  for (const Case& c : cases)
    for (const BlockShape& s : shapes)
      for (CpuImplementation impl : {CpuImplementation::reference, CpuImplementation::optimized}) {
        INFO(c.plugin << " " << c.params.front().second << (c.params.size() > 1 ? " +" + c.params[1].first : std::string())
                      << " shape " << s.str() << (impl == CpuImplementation::reference ? " reference" : " optimized"));
        const auto x = gaussian(static_cast<std::size_t>(s.elements()), ++seed);
        KeyValues dp = c.params, fp = c.params;
        dp.emplace_back(c.key, c.dense);
        fp.emplace_back(c.key, "fragment");
        // The twin on the same tier (sign's optimised FFT is not FFTW's bits: sign_fft_avx512.cpp's tolerance).
        const auto dense_q = test::builtin_registry(impl).make_quantizer(quantizer_block(c.plugin, dp));
        const auto frag_q = test::builtin_registry(impl).make_quantizer(quantizer_block(c.plugin, fp));
        const auto dense = encode(*dense_q, s, x);
        const auto frag = encode(*frag_q, s, x);
        REQUIRE(frag.size() == dense.size());
        REQUIRE(frag_q->layout(s, TokenContext{}).bytes() == dense_q->layout(s, TokenContext{}).bytes());
        const bool channel = c.params.front().second == std::string("channel");
        const std::int64_t group = c.params.size() > 1 && c.params[1].first == "group" ? std::stoll(c.params[1].second)
                                   : c.params.size() > 2 && c.params[2].first == "group" ? std::stoll(c.params[2].second)
                                                                                         : 32;
        const auto g = gf::make_group_grid(channel ? gf::GroupAxis::channel : gf::GroupAxis::token, s.heads, s.tokens, s.channels,
                                           group);
        const gf::FragmentForm form{channel ? c.operand_on_channel_axis : gf::FragmentOperand::values,
                                    std::string(c.plugin) == "sign" ? 1u : 2u};
        const std::size_t nc = gf::code_bytes(gf::CodeLayout::dense, g, form.bits);
        std::vector<std::uint8_t> want(nc);
        gf::fragment_from_dense(g, form, dense.data(), want.data());
        REQUIRE(std::vector<std::uint8_t>(frag.begin(), frag.begin() + std::ptrdiff_t(nc)) == want);
        std::vector<std::uint8_t> want_meta(dense.begin() + std::ptrdiff_t(nc), dense.end());
        REQUIRE(want_meta.size() == (c.scales ? static_cast<std::size_t>(g.group_count()) * (c.params.size() > 2 &&
                                                                                             c.params[2].second == "fp32" ? 4 : 2)
                                              : 0u));
        if (c.scales && gf::group_major_meta(gf::CodeLayout::fragment, g))
          gf::permute_group_major_meta(g, static_cast<int>(want_meta.size() / static_cast<std::size_t>(g.group_count())), 1,
                                       dense.data() + nc, want_meta.data(), true);
        CHECK(gf::group_major_meta(gf::CodeLayout::fragment, g) == (channel && s.tokens >= 32));
        REQUIRE(std::vector<std::uint8_t>(frag.begin() + std::ptrdiff_t(nc), frag.end()) == want_meta);
        const auto a = decode(*dense_q, s, dense), b = decode(*frag_q, s, frag);
        REQUIRE(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
      }
  // Hand-worked (ternary, 1 head, 32 tokens x 64 channels, axis channel, magnitude_free): channel 3 of token 9 above
  // the dead zone (all else 0) has slot t + 1 = 2 at the values' form's code 778 (the hand-worked position above:
  // bits 1556-1557, byte 194, bits 4-5); every other slot is 1 (t = 0, 0b01), so byte 194 is 0b01'10'01'01 = 0x65 and
  // every other byte 0x55.
  std::vector<float> x(32 * 64, 0.0f);
  x[9 * 64 + 3] = 5.0f;
  const auto tq = make("ternary", {{"packing", "fragment"}});
  const auto bytes = encode(*tq, BlockShape{1, 32, 64}, x);
  REQUIRE(bytes.size() == 32 * 64 / 4);
  for (std::size_t b = 0; b < bytes.size(); ++b) CHECK(bytes[b] == (b == 194 ? 0x65 : 0x55));
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

TEST_CASE("decode attention reads VidKV's fragment codec as its dense twin, and the kernels' emulation agrees with the reference",
          "[cpu][attention][fragment]") {
  // attention_codecs()'s preset vidkv-k1.5-v1.58-fragment (uniform 2-bit + sign fft real keys in layout fragment, ternary
  // values in packing fragment; paper lifecycle) at 128 channels (each key part 64), against the same codec in layout
  // dense / packing slots2 filled with the same tokens: every child view element read in place (view_element: codes
  // through fragment_code_index in each child's form, metadata group-major) is the twin's, bit for bit, in every block
  // and KV head; and the emulated kernels' output is within the tolerance of the reference attention.
  namespace af = attention_format;
  const auto found = [] {
    for (const AttentionCodec& ac : attention_codecs())
      if (ac.name == "preset vidkv-k1.5-v1.58-fragment") return ac;
    FAIL("no preset vidkv-k1.5-v1.58-fragment in attention_codecs()");
    return attention_codecs().front();
  }();
  const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
  const KvCodec codec(reg.make_quantizer(found.key), reg.make_quantizer(found.value));
  ConfigNode twin_key = quantizer_block("mixed_channel");
  twin_key.set("high", quantizer_block("uniform", {{"bits", "2"}, {"layout", "dense"}}));
  twin_key.set("low", quantizer_block("sign", {{"fft", "real"}, {"layout", "dense"}}));
  const KvCodec twin(reg.make_quantizer(twin_key), reg.make_quantizer(quantizer_block("ternary", {{"packing", "slots2"}})));
  std::string why;
  CHECK_FALSE(decode_attention_supports(codec.key(), 64, KvSide::key, &why));  // key parts of 32 channels
  CHECK(why.find("multiple of 64 channels per part, got 32") != std::string::npos);
  const std::int64_t channels = 128;
  REQUIRE(decode_attention_supports(codec.key(), channels, KvSide::key, &why));
  REQUIRE(decode_attention_supports(codec.value(), channels, KvSide::value, &why));
  const LayerInput in = synthetic_input(2, 300, channels, 21);
  const auto cache = filled_cache(codec, found.lifecycle, in, 250, Execution::cpu());
  const auto dense = filled_cache(twin, found.lifecycle, in, 250, Execution::cpu());
  int fragment_children = 0;
  for (std::int64_t h = 0; h < in.heads; ++h) {
    std::vector<std::tuple<af::ChildView, std::int64_t, std::int64_t>> a, b;
    for_each_child_view(codec, *cache, channels, h, [&](const af::ChildView& v, std::int64_t w, std::int64_t n) { a.emplace_back(v, w, n); });
    for_each_child_view(twin, *dense, channels, h, [&](const af::ChildView& v, std::int64_t w, std::int64_t n) { b.emplace_back(v, w, n); });
    REQUIRE(a.size() == b.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      const auto& [va, wa, na] = a[i];
      const auto& [vb, wb, nb] = b[i];
      REQUIRE(wa == wb);
      REQUIRE(na == nb);
      if (na >= 32) {
        CHECK(va.f.layout == gf::CodeLayout::fragment);
        ++fragment_children;
      }
      for (std::int64_t t = 0; t < na; ++t)
        for (std::int64_t c = 0; c < wa; ++c) {
          const float x = af::view_element(va, t, c), y = af::view_element(vb, t, c);
          if (std::memcmp(&x, &y, sizeof x) != 0) {
            INFO("child " << i << " token " << t << " component " << c << ": " << x << " against the twin's " << y);
            REQUIRE(false);
          }
        }
    }
  }
  CHECK(fragment_children >= 6);  // keys: high and low of the prefill's block per head; values: the prefill's block
  const std::vector<const LayerCache*> caches{cache.get()};
  for (int splits : {1, 3}) {
    const DecodeAttention attn(caches, Execution::cpu(), splits);
    const std::vector<float> q = random_queries(1, 2 * 3, channels, 1.5f, 23);
    std::vector<float> out(q.size(), 0.0f);
    attn.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {1, 6, channels}},
                      TensorView{out.data(), DType::f32, Device::cpu, {1, 6, channels}});
    const double worst = check_against_reference(caches, q, out, 3);
    std::cout << "[attention] VidKV fragment codec, " << splits << " splits: largest error / tolerance " << worst << "\n";
  }
}
