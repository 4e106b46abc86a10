// ternary_base3_spans.h: the base3 bytes that encode_channel_warp writes itself (VIDKV_CUDA_TERNARY_BASE3=in-kernel),
// replayed on the host with the kernel's work split. A warp takes 4 row groups (128 tokens; fewer at a head's end) of
// 16 channels of one head; each channel's groups in it are one span, and the lane of group q gets the first 4 slots
// of group q + 1 of its span (a shuffle from lane + 8). The replay checks what the kernel's correctness rests on, for
// every shape: the bytes equal ternary_format::put_trit's over the whole stream; no byte is stored plainly twice; no
// word takes both a plain store and an atomic add (a data race on the GPU); no atomic add reaches a word past the
// codes; every byte sum stays below 256. The [cuda] test "ternary base3 bytes written by the channel-axis encode
// kernel are the reference's" runs the kernel itself.
#include <cstdint>
#include <random>
#include <set>
#include <vector>

#include "catch.h"
#include "vidkv/plugins/quantizers/ternary/ternary_base3_spans.h"
#include "vidkv/plugins/quantizers/ternary/ternary_format.h"
#include "vidkv/quantization/group_format.h"

using namespace vidkv;

namespace {

struct Replay {
  std::vector<unsigned> bytes;                 // sums as written (plain stores replace, atomic adds add)
  std::set<std::int64_t> stored, atomic_words;  // bytes stored plainly; words that took an atomic add
};

// The kernel's assignment for [heads, tokens, channels] channel-axis groups of 32 (tokens % 32 == 0) and the trits
// t + 1 = slot[stream index].
Replay replay(std::int64_t heads, std::int64_t tokens, std::int64_t channels, const std::vector<unsigned>& slot) {
  const auto g = group_format::make_group_grid(group_format::GroupAxis::channel, heads, tokens, channels, 32);
  const std::int64_t total = heads * channels * tokens, code_bytes = (total + 4) / 5, gpr = tokens / 32;
  Replay r;
  r.bytes.assign(static_cast<std::size_t>(code_bytes), 0u);
  const auto slots_of = [&](std::int64_t p, int n) {  // n slots from stream position p, slot i at bits 2 i
    std::uint64_t s = 0;
    for (int i = 0; i < n; ++i) s |= static_cast<std::uint64_t>(slot[static_cast<std::size_t>(p + i)]) << (2 * i);
    return s;
  };
  for (std::int64_t h = 0; h < heads; ++h)
    for (std::int64_t quad = 0; quad * 4 < gpr; ++quad)
      for (std::int64_t c = 0; c < channels; ++c) {
        const std::int64_t groups = std::min<std::int64_t>(4, gpr - 4 * quad), p0 = g.stream_index(h, c, 128 * quad);
        const ternary_base3::Span span = ternary_base3::span_of(p0, p0 + 32 * groups, total);
        for (std::int64_t q = 0; q < groups; ++q) {
          const std::int64_t p = p0 + 32 * q;
          const unsigned next = q + 1 < groups ? static_cast<unsigned>(slots_of(p + 32, 4)) : 0u;
          ternary_base3::group_bytes(p, slots_of(p, 32), next, q == 0, [&](std::int64_t b, unsigned value) {
            REQUIRE(b >= 0);
            REQUIRE(b < code_bytes);
            if (span.shared_word(b)) {
              REQUIRE(4 * (b / 4) + 3 < code_bytes);  // the whole word lies in the codes
              r.atomic_words.insert(b / 4);
              r.bytes[static_cast<std::size_t>(b)] += value;
            } else {
              REQUIRE(r.stored.insert(b).second);  // stored once
              r.bytes[static_cast<std::size_t>(b)] = value;
            }
          });
        }
      }
  return r;
}

}  // namespace

TEST_CASE("ternary_base3: a byte of five slots is the sum of digit * 3^i", "[cpu][ternary]") {
  // Slots (digit 0 first) 2, 0, 1, 2, 1: 2 + 0 * 3 + 1 * 9 + 2 * 27 + 1 * 81 = 146; all 2: 242; all 0: 0.
  CHECK(ternary_base3::byte_of_slots(2u | (0u << 2) | (1u << 4) | (2u << 6) | (1u << 8)) == 146u);
  CHECK(ternary_base3::byte_of_slots(0x2AAu) == 242u);
  CHECK(ternary_base3::byte_of_slots(0u) == 0u);
  // Digits 3 and 4 only (a byte's trailing part): 1 * 27 + 2 * 81 = 189; its leading part 2 + 1 * 3 adds to 194.
  CHECK(ternary_base3::byte_of_slots((1u << 6) | (2u << 8)) + ternary_base3::byte_of_slots(2u | (1u << 2)) ==
        ternary_base3::byte_of_slots(2u | (1u << 2) | (1u << 6) | (2u << 8)));
}

TEST_CASE("ternary_base3: the kernel's spans write the reference's bytes without a mixed word", "[cpu][ternary]") {
  // Token counts at every residue mod 5 (T = 160, 96, 32, 288, 64, ...: rows start at (h C + c) T) and spans ending
  // after 1 to 4 row groups (T / 32 mod 4), 1 to 3 heads, channel counts of one or more warps' 16.
  std::mt19937 rng(11);
  int shapes = 0;
  for (const std::int64_t heads : {1, 2, 3})
    for (const std::int64_t channels : {16, 32, 48})
      for (const std::int64_t tokens : {32, 64, 96, 128, 160, 224, 256, 288, 416}) {
        INFO("heads " << heads << " tokens " << tokens << " channels " << channels);
        const auto g = group_format::make_group_grid(group_format::GroupAxis::channel, heads, tokens, channels, 32);
        const std::int64_t total = heads * channels * tokens;
        std::vector<unsigned> slot(static_cast<std::size_t>(total));
        for (auto& s : slot) s = static_cast<unsigned>(rng() % 3);
        std::vector<std::uint8_t> want(static_cast<std::size_t>((total + 4) / 5), 0);
        for (std::int64_t h = 0; h < heads; ++h)
          for (std::int64_t c = 0; c < channels; ++c)
            for (std::int64_t j = 0; j < tokens; ++j)
              ternary_format::put_trit(ternary_format::Packing::base3, want.data(), g, h, c, j,
                                       static_cast<int>(slot[static_cast<std::size_t>(g.stream_index(h, c, j))]) - 1);
        const Replay r = replay(heads, tokens, channels, slot);
        for (const std::int64_t w : r.atomic_words)
          for (std::int64_t b = 4 * w; b < 4 * w + 4; ++b) REQUIRE(r.stored.count(b) == 0);  // no plain store there
        for (std::size_t b = 0; b < want.size(); ++b) {
          INFO("byte " << b);
          REQUIRE(r.bytes[b] < 256u);
          REQUIRE(r.bytes[b] == want[b]);
        }
        ++shapes;
      }
  CHECK(shapes == 81);
}
