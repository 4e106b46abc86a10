// mixed_channel's channel split as index arithmetic, shared by the CUDA kernels (mixed_channel.cu) and the [cpu]
// tests that replay them tile by tile against the CPU gather. C++17, no CUDA headers.
//
// Rows are (head, token) pairs in order; row r uses mask m = r / rows_per_mask. Dense child blocks: the high block
// holds, per row, the k high channels in ascending index (rows back to back), the low block the D - k others.
// Tables (per mask, from the mask section): slot[m][c] = channel_slot(...) (>= 0: index in the high row; < 0:
// -1 - index in the low row), high_source[m][i] = the channel at index i of a high row, low_source[m][i] likewise.
// A tile is `tile_rows` consecutive rows starting at r0; its part of the high block is the contiguous range of
// elements [r0 * k, (r0 + tile_rows) * k), and of the low block [r0 * (D - k), ...), which the kernels write or
// read as 16-byte runs.
#pragma once

#include <cstdint>

#include "vidkv/core/host_device.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"

namespace vidkv::mixed_channel_split {

// top_k_indices (core/channel_selector.h) as a per-channel predicate: channel c of n scores is among the k kept
// when fewer than k channels rank before it, a channel c' ranking before c when scores[c'] > scores[c], or when they
// are equal and c' < c (the stable sort by descending score, ties to the lower index). Exactly k channels pass for
// any scores without NaN. O(n) per channel: the device ranks a few hundred scores per mask this way.
VIDKV_HOST_DEVICE inline bool in_top_k(const double* scores, std::int64_t n, std::int64_t c, std::int64_t k) {
  const double s = scores[c];
  std::int64_t before = 0;
  for (std::int64_t i = 0; i < n; ++i) before += (scores[i] > s || (scores[i] == s && i < c)) ? 1 : 0;
  return before < k;
}

// The slot channel c takes in the split "first `high` channels high" (c < high: index c of the high row; else
// -1 - (c - high), index c - high of the low row): where the kernels put the elements of an invalid mask's rows.
VIDKV_HOST_DEVICE inline std::int32_t fallback_slot(std::int64_t c, std::int64_t high) {
  return static_cast<std::int32_t>(c < high ? c : -1 - (c - high));
}

// The slot table's entry of every channel of an invalid mask (see fill_tables).
constexpr std::int32_t kInvalidSlot = -2147483647 - 1;

// The table entries of channel c of mask m: `slot` as the slot table holds it (kInvalidSlot for an invalid mask) and
// `moved`, the slot by which the gather moves the channel (the valid slot, or fallback_slot for an invalid mask).
struct TableEntry {
  std::int32_t slot;
  std::int32_t moved;
  bool valid;
};
VIDKV_HOST_DEVICE inline TableEntry table_entry(const std::uint8_t* mask, std::int64_t channels, std::int64_t high,
                                                std::int64_t m, std::int64_t c) {
  const auto d = static_cast<std::size_t>(channels);
  const bool valid = mixed_channel_format::mask_rank(mask, d, static_cast<std::size_t>(m), d) == static_cast<std::size_t>(high);
  const std::int32_t s =
      valid ? mixed_channel_format::channel_slot(mask, d, static_cast<std::size_t>(m), static_cast<std::size_t>(c))
            : fallback_slot(c, high);
  return {valid ? s : kInvalidSlot, s, valid};
}

// Set bits of a 32-bit word (__popc on the device).
VIDKV_HOST_DEVICE inline int popcount32(std::uint32_t v) {
#if defined(__CUDA_ARCH__)
  return __popc(v);
#else
  return __builtin_popcount(v);
#endif
}

// table_entry of channel c from one mask copied into 32-bit words (words[w] bit b: channel 32 w + b, LSB first as
// in the mask section, read as a little-endian copy of the mask's D / 8 bytes, zero past D): the same entry, the
// ranks counted a word at a time (the fused CUDA kernels stage the words in shared memory).
VIDKV_HOST_DEVICE inline TableEntry table_entry_from_words(const std::uint32_t* words, int channels, int high, int c) {
  const int word_count = (channels + 31) / 32, cw = c / 32, cb = c % 32;
  int total = 0, rank = 0;
  for (int w = 0; w < word_count; ++w) {
    const int p = popcount32(words[w]);
    total += p;
    rank += w < cw ? p : 0;
  }
  rank += popcount32(words[cw] & ((1u << cb) - 1u));
  const bool is_high = ((words[cw] >> cb) & 1u) != 0, valid = total == high;
  const std::int32_t s = valid ? (is_high ? rank : -1 - (c - rank)) : fallback_slot(c, high);
  return {valid ? s : kInvalidSlot, s, valid};
}

// Fills the three tables' entries of channel c of mask m (slot[m * D + c] and the matching source entry) from the
// mask section; returns false when mask m does not have `high` channels set: slot = kInvalidSlot (the scatter writes
// NaN for the mask's rows), and the source entry of position c by fallback_slot, so that a gather by an invalid mask
// still reads only channels of its own rows. Such a mask comes from scores with NaN (in_top_k then passes every NaN
// channel); before, its source entries stayed unwritten and the gather indexed its tile with whatever the scratch
// held.
VIDKV_HOST_DEVICE inline bool fill_tables(const std::uint8_t* mask, std::int64_t channels, std::int64_t high,
                                          std::int64_t m, std::int64_t c, std::int32_t* slot, std::int32_t* high_source,
                                          std::int32_t* low_source) {
  const TableEntry e = table_entry(mask, channels, high, m, c);
  slot[m * channels + c] = e.slot;
  if (e.moved >= 0) {
    high_source[m * high + e.moved] = static_cast<std::int32_t>(c);
  } else {
    low_source[m * (channels - high) + (-1 - e.moved)] = static_cast<std::int32_t>(c);
  }
  return e.valid;
}

// Mask of row r: r / rows_per_mask (no division with a single mask, scope layer).
VIDKV_HOST_DEVICE inline std::int64_t mask_of_row(std::int64_t r, std::int64_t masks, std::int64_t rows_per_mask) {
  return masks == 1 ? 0 : r / rows_per_mask;
}

// Walks the elements e, e + 1, ... of a tile's part of a child block (rows of `width` elements, tile starting at
// row r0) and yields, for each, the element's index within the tile's input rows (row * channels + source channel).
// One 32-bit division at construction (tile-local indices are small), then increments: the kernels take a 16-byte
// run of elements per thread.
struct PartWalk {
  std::uint32_t channels, width, row, pos;
  std::int64_t masks, rows_per_mask, r0;
  const std::int32_t* source;  // high_source or low_source, all masks
  const std::int32_t* row_source;

  VIDKV_HOST_DEVICE PartWalk(std::int64_t channels_, std::int64_t width_, std::int64_t masks_, std::int64_t rows_per_mask_,
                             std::int64_t r0_, const std::int32_t* source_, std::int64_t e)
      : channels(static_cast<std::uint32_t>(channels_)), width(static_cast<std::uint32_t>(width_)),
        row(static_cast<std::uint32_t>(e) / static_cast<std::uint32_t>(width_)),
        pos(static_cast<std::uint32_t>(e) % static_cast<std::uint32_t>(width_)), masks(masks_),
        rows_per_mask(rows_per_mask_), r0(r0_), source(source_),
        row_source(source_ + mask_of_row(r0_ + row, masks_, rows_per_mask_) * width_) {}
  // Index in the tile's input rows of the current element.
  VIDKV_HOST_DEVICE std::uint32_t tile_index() const {
    return row * channels + static_cast<std::uint32_t>(row_source[pos]);
  }
  VIDKV_HOST_DEVICE void next() {
    if (++pos == width) {
      pos = 0;
      ++row;
      if (masks != 1) row_source = source + mask_of_row(r0 + row, masks, rows_per_mask) * width;
    }
  }
};

}  // namespace vidkv::mixed_channel_split
