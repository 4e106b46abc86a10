// Run-level packing of group_format.h (WordRunWriter / WordRunReader / code_byte), the path the CUDA kernels and
// the fused attention kernel use, against the per-element definition (put_code / get_code) that the CPU reference
// uses: the same bytes for every grid, layout and bit width, so there is one bit layout.
#include <array>
#include <cstdint>
#include <random>
#include <vector>

#include "catch.h"
#include "vidkv/quantization/group_format.h"

using namespace vidkv;
using namespace vidkv::group_format;

namespace {

struct HostWordStore {
  std::uint8_t* bytes;
  void operator()(std::int64_t w, std::uint32_t v) const { put_word(bytes, w, v); }
};
struct HostWordLoad {
  const std::uint8_t* bytes;
  std::uint32_t operator()(std::int64_t w) const { return get_word(bytes, w); }
};

// Codes of a pseudo-random block, one per element in canonical order.
std::vector<unsigned> random_codes(const GroupGrid& g, unsigned bits, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned> c(static_cast<std::size_t>(g.elements()));
  for (auto& x : c) x = rng() & ((1u << bits) - 1u);
  return c;
}

std::vector<std::uint8_t> reference_bytes(CodeLayout layout, const GroupGrid& g, unsigned bits, const std::vector<unsigned>& codes) {
  std::vector<std::uint8_t> out(code_bytes(layout, g, bits), 0);
  for (std::int64_t h = 0; h < g.heads; ++h)
    for (std::int64_t r = 0; r < g.rows; ++r)
      for (std::int64_t j = 0; j < g.length; ++j) put_code(layout, out.data(), g, bits, h, r, j, codes[g.stream_index(h, r, j)]);
  return out;
}

}  // namespace

TEST_CASE("code_byte writes every codes byte as put_code does, for any grid, layout and bit width", "[cpu][format]") {
  // Tails (45 = 32 + 13), odd lengths, widths 1..8 (3, 5, 6, 7 straddle bytes), both axes' shapes.
  for (auto [heads, tokens, channels, group] : std::vector<std::array<std::int64_t, 4>>{{1, 45, 3, 32}, {2, 64, 5, 32}, {1, 7, 9, 5}, {3, 33, 16, 8}}) {
    for (GroupAxis axis : {GroupAxis::channel, GroupAxis::token}) {
      const GroupGrid g = make_group_grid(axis, heads, tokens, channels, group);
      for (unsigned bits = 1; bits <= 8; ++bits) {
        for (CodeLayout layout : {CodeLayout::dense, CodeLayout::release}) {
          if (layout == CodeLayout::release && !release_bits_ok(bits)) continue;
          const auto codes = random_codes(g, bits, bits * 7 + static_cast<unsigned>(tokens));
          const auto want = reference_bytes(layout, g, bits, codes);
          std::vector<std::uint8_t> got(want.size(), 0xAB);
          for (std::size_t b = 0; b < got.size(); ++b)
            got[b] = code_byte(layout, g, bits, static_cast<std::int64_t>(b),
                               [&](std::int64_t h, std::int64_t r, std::int64_t j) { return codes[g.stream_index(h, r, j)]; });
          INFO("bits " << bits << " layout " << (layout == CodeLayout::dense ? "dense" : "release") << " tokens " << tokens);
          CHECK(got == want);
        }
      }
    }
  }
}

TEST_CASE("word runs of word-aligned groups are the bytes put_code writes, and read back as get_code", "[cpu][format]") {
  // G = 32 with 1, 2, 4, 8 bits (the CUDA fast path), and G = 32 with 3 bits (96 bits = 3 whole words).
  for (unsigned bits : {1u, 2u, 3u, 4u, 8u}) {
    for (GroupAxis axis : {GroupAxis::channel, GroupAxis::token}) {
      const GroupGrid g = make_group_grid(axis, 2, 64, 64, 32);
      for (CodeLayout layout : {CodeLayout::dense, CodeLayout::release}) {
        if (layout == CodeLayout::release && !release_bits_ok(bits)) continue;
        REQUIRE(word_aligned_groups(layout, g, bits));
        const auto codes = random_codes(g, bits, 100 + bits);
        const auto want = reference_bytes(layout, g, bits, codes);
        std::vector<std::uint8_t> got(want.size(), 0xAB);
        for (std::int64_t h = 0; h < g.heads; ++h)
          for (std::int64_t r = 0; r < g.rows; ++r)
            for (std::int64_t gi = 0; gi < g.groups_per_row(); ++gi) {
              const std::int64_t j0 = gi * g.group;
              WordRunWriter<HostWordStore> w(HostWordStore{got.data()}, code_word(layout, g, bits, h, r, j0), bits);
              for (std::int64_t j = j0; j < j0 + g.group; ++j) w.put(codes[g.stream_index(h, r, j)]);
              w.flush();
              WordRunReader<HostWordLoad> rd(HostWordLoad{want.data()}, code_word(layout, g, bits, h, r, j0), bits);
              for (std::int64_t j = j0; j < j0 + g.group; ++j) REQUIRE(rd.next() == get_code(layout, want.data(), g, bits, h, r, j));
            }
        INFO("bits " << bits);
        CHECK(got == want);
      }
    }
  }
}

TEST_CASE("word_aligned_groups refuses tails, odd rows and runs that end inside a word", "[cpu][format]") {
  CHECK_FALSE(word_aligned_groups(CodeLayout::dense, make_group_grid(GroupAxis::channel, 1, 45, 4, 32), 2));  // tail group
  CHECK_FALSE(word_aligned_groups(CodeLayout::dense, make_group_grid(GroupAxis::channel, 1, 32, 4, 8), 2));   // 16-bit runs
  CHECK_FALSE(word_aligned_groups(CodeLayout::dense, make_group_grid(GroupAxis::token, 1, 4, 48, 16), 1));    // 16-bit runs
  CHECK(word_aligned_groups(CodeLayout::release, make_group_grid(GroupAxis::channel, 4, 1024, 128, 32), 2));
  CHECK(word_aligned_groups(CodeLayout::dense, make_group_grid(GroupAxis::token, 4, 1024, 128, 32), 1));
}
