// The tables fused decode attention runs on (built by decode_attention.cpp, read by decode_attention.cu and by the
// CPU emulation of the kernel, decode_attention_emulation.h), and the per-token reads both make through
// decode_attention_format.h. C++17, host-device, no CUDA headers.
//
// Tokens of sequence b are cut into tiles of at most 32 tokens that never cross a key block, a value block or the
// start of either residual; tile i of b is tiles[seq.tile_begin + i], in token order. Split s of S takes the tiles
// [s * per, min((s + 1) * per, count)) of its sequence, per = ceil(count / S) (variable lengths: a short sequence
// leaves its last splits empty).
#pragma once

#include <cstdint>

#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

namespace vidkv::attention_tables {

struct BlockEntry {
  const std::uint8_t* bytes = nullptr;
  std::int64_t begin = 0, tokens = 0;  // token range [begin, begin + tokens) of the block
};

struct SequenceEntry {
  std::int64_t tile_begin = 0, tile_count = 0;
  const float* key_full = nullptr;    // [heads, key_capacity, D] fp32: the residual keys (and older exact inputs)
  const float* value_full = nullptr;  // [heads, value_capacity, D]
  std::int64_t key_capacity = 0, value_capacity = 0;
};

struct TileEntry {
  std::int64_t t0 = 0;            // first token
  std::int32_t n = 0;             // tokens, 1..32
  std::int32_t key_block = -1;    // index into key_blocks, -1: the key residual
  std::int32_t value_block = -1;  // index into value_blocks, -1: the value residual
  std::int32_t sequence = 0;
};

// Everything one launch reads and writes. Pointers are device pointers on cuda, host pointers in the emulation.
struct Problem {
  attention_format::SideFormat key, value;
  std::int64_t batch = 0, heads = 0, channels = 0, qpk = 0;  // qpk: query heads per KV head
  DType residual_dtype = DType::f32;
  const SequenceEntry* sequences = nullptr;
  const BlockEntry* key_blocks = nullptr;
  const BlockEntry* value_blocks = nullptr;
  const TileEntry* tiles = nullptr;
  int splits = 1;
  float score_scale = 1.0f;  // log2(e) / sqrt(D): scores in log2 units
  const void* queries = nullptr;  // [batch, heads * qpk, D]
  DType query_dtype = DType::f32;
  void* out = nullptr;  // [batch, heads * qpk, D]
  DType out_dtype = DType::f32;
  float* partial_acc = nullptr;  // [batch, heads, splits, qpk, D]
  float* partial_ml = nullptr;   // [batch, heads, splits, qpk, 2]: m, l
};

// Tiles [first, last) of split s of a sequence with `count` tiles.
struct TileRange {
  std::int64_t first, last;
};
VIDKV_HOST_DEVICE inline TileRange split_tiles(std::int64_t count, int splits, int s) {
  const std::int64_t per = (count + splits - 1) / splits;
  const std::int64_t first = per * s < count ? per * s : count;
  const std::int64_t last = first + per < count ? first + per : count;
  return {first, last};
}

// Query element (b, query head qh, channel c) as fp32.
VIDKV_HOST_DEVICE inline float query_element(const Problem& p, std::int64_t b, std::int64_t qh, std::int64_t c) {
  return load_as_float(p.queries, p.query_dtype, static_cast<std::size_t>((b * p.heads * p.qpk + qh) * p.channels + c));
}

// The key part of a tile of KV head h (valid when tile.key_block >= 0).
VIDKV_HOST_DEVICE inline attention_format::PartRef key_part(const Problem& p, const TileEntry& tile, std::int64_t h) {
  const BlockEntry& b = p.key_blocks[tile.key_block];
  return attention_format::part_of(p.key, b.bytes, p.heads, b.tokens, p.channels, h);
}
VIDKV_HOST_DEVICE inline attention_format::PartRef value_part(const Problem& p, const TileEntry& tile, std::int64_t h) {
  const BlockEntry& b = p.value_blocks[tile.value_block];
  return attention_format::part_of(p.value, b.bytes, p.heads, b.tokens, p.channels, h);
}

// Key element i of token t (absolute) in a tile's coordinates: gathered order / FFT component in a packed block
// (part_element), channel i in the residual.
VIDKV_HOST_DEVICE inline float key_element(const Problem& p, const SequenceEntry& seq, const TileEntry& tile,
                                           const attention_format::PartRef& part, std::int64_t h, std::int64_t t,
                                           std::int64_t i) {
  if (tile.key_block < 0)
    return attention_format::residual_element(seq.key_full, seq.key_capacity, p.channels, p.residual_dtype, h, t, i);
  const BlockEntry& b = p.key_blocks[tile.key_block];
  return attention_format::part_element(p.key, part, b.tokens, t - b.begin, i);
}

// Value element of channel c of token t (absolute).
VIDKV_HOST_DEVICE inline float value_element(const Problem& p, const SequenceEntry& seq, const TileEntry& tile,
                                             const attention_format::PartRef& part, std::int64_t h, std::int64_t t,
                                             std::int64_t c) {
  if (tile.value_block < 0)
    return attention_format::residual_element(seq.value_full, seq.value_capacity, p.channels, p.residual_dtype, h, t, c);
  const BlockEntry& b = p.value_blocks[tile.value_block];
  return attention_format::side_element(p.value, part, b.tokens, p.channels, t - b.begin, c);
}

}  // namespace vidkv::attention_tables
