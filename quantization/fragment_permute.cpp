// Host permutations of a whole block between layout dense and the fragment layout (fragment_permute.h).
#include "vidkv/quantization/fragment_permute.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "vidkv/core/error.h"

namespace vidkv::fragment_permute {

namespace {

// The codes sections of the two layouts side by side, a tile's lane word at a time: for every whole tile, each 32-bit
// word of the fragment layout is built from (or spread into) the dense codes of its 2 F fields (group_format.h: lane
// l's word w at tile word (w / V) 32 V + V l + w % V, field f of it register F w + f, its low half's code at bit b f
// and its high half's at 16 + b f), so the (row, column) of each code is computed forward from the lane and the
// register instead of group_format's per-byte inverse (fragment_element: 64-bit divisions per code); then the tail's
// codes one by one. `to_fragment`: read dense, write fragment (both sections' bytes start zeroed where written by OR).
// The same bytes as group_format::fragment_from_dense / dense_from_fragment (tests/cpp/test_fragment_layout.cpp).
void permute_codes(const group_format::GroupGrid& g, group_format::FragmentForm f, const std::uint8_t* from,
                   std::uint8_t* to, bool to_fragment) {
  const bool channel_axis = g.axis == group_format::GroupAxis::channel;
  const bool keys = f.operand == group_format::FragmentOperand::keys;
  const std::int64_t T = group_format::grid_tokens(g), C = group_format::grid_channels(g), b = f.bits;
  const std::int64_t full = group_format::fragment_tiled_tokens(T), tail = T - full;
  const std::int64_t F = 16 / b, V = 2 * b, W = C * b / 32, kcs = C / 16;  // fields per word, lane vector, lane words
  const unsigned mask = (1u << b) - 1u;
  const std::int64_t n_bytes = static_cast<std::int64_t>(group_format::code_bytes(group_format::CodeLayout::dense, g, f.bits));
  std::fill(to, to + n_bytes, std::uint8_t{0});
  auto dense_index = [&](std::int64_t h, std::int64_t t, std::int64_t c) {
    return channel_axis ? (h * C + c) * T + t : (h * T + t) * C + c;
  };
  auto get = [&](const std::uint8_t* x, std::int64_t k) { return (static_cast<unsigned>(x[(k * b) >> 3]) >> ((k * b) & 7)) & mask; };
  auto put = [&](std::uint8_t* x, std::int64_t k, unsigned code) {
    x[(k * b) >> 3] = static_cast<std::uint8_t>(x[(k * b) >> 3] | (code << ((k * b) & 7)));
  };
  for (std::int64_t h = 0; h < g.heads; ++h) {
    const std::int64_t head = h * T * C;  // first code of the head in either layout
    for (std::int64_t tile = 0; tile * group_format::kFragmentTileTokens < full; ++tile) {
      const std::int64_t t0 = tile * group_format::kFragmentTileTokens;
      const std::int64_t tile_byte = (head + t0 * C) * b / 8;
      for (std::int64_t lane = 0; lane < 32; ++lane) {
        const std::int64_t g8 = lane / 4, t2 = 2 * (lane % 4);
        for (std::int64_t w = 0; w < W; ++w) {
          const std::int64_t word = tile_byte + 4 * ((w / V) * 32 * V + V * lane + w % V);  // its byte offset
          std::uint32_t acc = 0;
          if (!to_fragment)
            for (int i = 0; i < 4; ++i) acc |= static_cast<std::uint32_t>(from[word + i]) << (8 * i);
          for (std::int64_t field = 0; field < F; ++field) {
            const std::int64_t r = F * w + field, a = r & 3, pair = r >> 2;
            const std::int64_t row = g8 + 8 * (a & 1), col0 = t2 + 8 * (a >> 1);
            for (std::int64_t half = 0; half < 2; ++half) {
              const std::int64_t col = col0 + half;
              const std::int64_t t = keys ? t0 + 16 * (pair / kcs) + row : t0 + 16 * (pair % 2) + col;
              const std::int64_t c = keys ? 16 * (pair % kcs) + col : 16 * (pair / 2) + row;
              const std::int64_t k = dense_index(h, t, c);
              const unsigned shift = static_cast<unsigned>(16 * half + b * field);
              if (to_fragment) acc |= get(from, k) << shift;
              else put(to, k, (acc >> shift) & mask);
            }
          }
          if (to_fragment)
            for (int i = 0; i < 4; ++i) to[word + i] = static_cast<std::uint8_t>(acc >> (8 * i));
        }
      }
    }
    for (std::int64_t u = 0; u < tail; ++u)  // the tail, in the grid's dense order after the tiles
      for (std::int64_t c = 0; c < C; ++c) {
        const std::int64_t kf = head + full * C + (channel_axis ? c * tail + u : u * C + c), kd = dense_index(h, full + u, c);
        if (to_fragment) put(to, kf, get(from, kd));
        else put(to, kd, get(from, kf));
      }
  }
}

}  // namespace

void dense_to_fragment(const BlockSections& s, std::uint8_t* bytes) {
  if (group_format::fragment_all_tail(s.grid)) return;  // dense's bytes already
  const std::size_t n = s.code_bytes();
  const std::vector<std::uint8_t> dense(bytes, bytes + s.moved_bytes());
  permute_codes(s.grid, s.form, dense.data(), bytes, true);
  if (s.group_major())
    group_format::permute_group_major_meta(s.grid, s.meta_size, s.meta_sections, dense.data() + n, bytes + n, true);
}

void fragment_to_dense(const BlockSections& s, const std::uint8_t* fragment, std::uint8_t* dense, std::size_t total) {
  VIDKV_REQUIRE(total >= s.code_bytes() + s.meta_bytes(), ShapeError, "fragment_to_dense: a block of ", total,
                " bytes is shorter than its codes and metadata");
  if (group_format::fragment_all_tail(s.grid)) {
    std::memcpy(dense, fragment, total);
    return;
  }
  const std::size_t n = s.code_bytes();
  permute_codes(s.grid, s.form, fragment, dense, false);
  if (s.group_major()) {
    group_format::permute_group_major_meta(s.grid, s.meta_size, s.meta_sections, fragment + n, dense + n, false);
    std::memcpy(dense + n + s.meta_bytes(), fragment + n + s.meta_bytes(), total - n - s.meta_bytes());
  } else {
    std::memcpy(dense + n, fragment + n, total - n);
  }
}

}  // namespace vidkv::fragment_permute
