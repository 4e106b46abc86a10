// The tables fused decode attention runs on (built by decode_attention.cpp, read by decode_attention.cu and by the
// CPU emulation of the kernel, decode_attention_emulation.h), and the per-token reads both make through
// decode_attention_format.h. C++17, host-device, no CUDA headers.
//
// Tokens of sequence b are cut into tiles of at most 32 tokens that never cross a key block, a value block or the
// start of either residual. Each sequence's tiles and blocks sit in regions of their own (decode_attention.cpp
// builds them with room to grow); entries between regions are not the sequence's: tiles there are never read, block
// entries there have tokens == 0 (whoever walks every block entry skips those). The sequence's tiles are
// tiles[seq.tile_begin, seq.tile_begin + seq.tile_count): first
// its `fast_count` fast tiles (tile_is_fast: packed keys and values whose metadata the kernels stage per tile), then
// the others (residual tokens, layouts where a tile spans groups), each part in token order. The fast tiles go to
// the fast kernel (no code for the other paths, fewer registers), the others to the general one: split s of S of
// a part takes its tiles [s * per, min((s + 1) * per, count)), per = ceil(count / S) (variable lengths: a short
// sequence leaves its last splits empty). Partials: splits of the fast kernel first, then generic_splits.
#pragma once

#include <cstdint>

#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/attention/decode_attention_staging.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

namespace vidkv::attention_tables {

struct BlockEntry {
  const std::uint8_t* bytes = nullptr;
  std::int64_t begin = 0, tokens = 0;  // token range [begin, begin + tokens) of the block
  std::int64_t kept = 0;               // mixed_token values: protected tokens of the block (part_of); else 0
  std::int32_t sequence = 0;           // the sequence (batch index) holding the block
};

struct SequenceEntry {
  std::int64_t tile_begin = 0, tile_count = 0, fast_count = 0;
  // The exact-input stores holding the residual tokens (LayerCache::SideRef): [heads, capacity, D] of *_full_dtype,
  // row r = token *_first + r.
  const void* key_full = nullptr;
  const void* value_full = nullptr;
  DType key_full_dtype = DType::f32, value_full_dtype = DType::f32;
  std::int64_t key_capacity = 0, value_capacity = 0, key_first = 0, value_first = 0;
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
  int splits = 1;          // splits of the fast tiles (0: no sequence has any)
  int generic_splits = 0;  // splits of the other tiles (0: none has any)
  // The fast tiles go to the tensor-core kernel (decode_attention_tensor_core.h formats_ok) instead of the fast one.
  bool tensor_cores = false;
  // The fast tiles go to the fragment kernel (decode_attention_fragment.h formats_ok; tensor_cores is then false):
  // a tile is fast only when it is a whole fragment tile of both sides (fragment_tile).
  bool fragment = false;
  // The general part of every sequence is only narrow residual-window tiles whose values are exact and whose keys
  // are exact or (kivi's formats) whole fragment tiles of a fragment-layout block (4-byte aligned codes), both stores
  // of one dtype, fp16 or bf16 (the fragment presets' residual windows; DecodeAttention's build decides): the general
  // kernel's compact instance takes them (decode_attention.cu, split_kernel<kC, true, F>), F = general_narrow_dtype,
  // the stores' dtype in every sequence. Set only with fragment.
  bool general_narrow_only = false;
  DType general_narrow_dtype = DType::f16;
  // With general_narrow_only: those tiles go to the residual tiles' tensor-core kernel instead of the compact instance
  // (decode_attention_fragment.cu fragment_residual_kernel: fp16 stores, either fragment format; attention_fragment::
  // residual_tensor_core_formats; DecodeAttention's build decides, VIDKV_CUDA_ATTENTION_RESIDUAL=cuda_cores never).
  bool general_tensor_cores = false;
  float score_scale = 1.0f;  // log2(e) / sqrt(D): scores in log2 units
  const void* queries = nullptr;  // [batch, heads * qpk, D]
  DType query_dtype = DType::f32;
  void* out = nullptr;  // [batch, heads * qpk, D]
  DType out_dtype = DType::f32;
  // Keys that need the query transform (af::needs_transform), cuda: the query carried into each key block's
  // coordinates, tqT of (key block, KV head): [key_block_count, heads, key_width, 8 (kMaxQueryHeadsPerKv)] floats,
  // zeros for the heads past qpk; written by the launch's first kernel, read by the attention kernels. nullptr
  // otherwise (the emulation computes it per warp).
  float* transformed = nullptr;
  std::int64_t key_block_count = 0;
  // cuda: the fragment kernel was launched as a programmatic dependent of the transform kernel (launch_fragment,
  // FragmentLaunch::after_transform) and waits for it (griddepcontrol.wait) before its first read of `transformed`.
  bool wait_for_transform = false;
  float* partial_acc = nullptr;  // [batch, heads, splits + generic_splits, qpk, D]
  float* partial_ml = nullptr;   // [batch, heads, splits + generic_splits, qpk, 2]: m, l
  // cuda, the general kernel beside the fast / tensor-core one on the same stream (attention_cuda::launch with
  // generic_target != 0): device counters [2, batch, heads], all zero between launches: per (sequence, KV head) the
  // general-kernel blocks that have written their partials, then the combine blocks that have seen them all (the
  // last of those zeroes both); generic_target: the count the combine kernel waits for, generic_splits (0: no wait,
  // the kernels run one after another). nullptr / 0 otherwise.
  std::uint32_t* generic_done = nullptr;
  std::uint32_t generic_target = 0;
};

// The split combine (out = sum_s f_s acc_s / sum_s f_s l_s, f_s = exp2(m_s - max m)) of one output row (sequence,
// query head) runs kCombineThreads threads: thread (part k, column j) sums channels j V .. j V + V - 1
// (V = combine_vector(D): 4-channel vector loads where D is a multiple of 4) over the splits s = k mod
// combine_parts(D), in split order, and the parts are added in k order. The parts run side by side: at batch 1
// the splits are about 100 (one wave of blocks for 4 KV heads), and their chain of loads is the combine's time.
// The emulation (decode_attention_emulation.cpp) sums in the same order.
constexpr int kCombineThreads = 512;
VIDKV_HOST_DEVICE inline int combine_vector(std::int64_t d) { return d % 4 == 0 ? 4 : 1; }
// Parts per row: every thread one column (D <= kMaxHeadDim = 256 gives at least 2 parts).
VIDKV_HOST_DEVICE inline int combine_parts(std::int64_t d) { return kCombineThreads / static_cast<int>(d / combine_vector(d)); }

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
  return attention_format::part_of(p.value, b.bytes, p.heads, b.tokens, p.channels, h, b.kept);
}

// First token of the tile's key / value block (0 for the residual: its tokens are addressed absolutely).
VIDKV_HOST_DEVICE inline std::int64_t key_block_begin(const Problem& p, const TileEntry& tile) {
  return tile.key_block < 0 ? 0 : p.key_blocks[tile.key_block].begin;
}
VIDKV_HOST_DEVICE inline std::int64_t value_block_begin(const Problem& p, const TileEntry& tile) {
  return tile.value_block < 0 ? 0 : p.value_blocks[tile.value_block].begin;
}

// Key element i of token t (absolute) in a tile's coordinates: gathered order / FFT component in a packed block
// (part_element), channel i in the residual. begin: key_block_begin(p, tile).
VIDKV_HOST_DEVICE inline float key_element(const Problem& p, const SequenceEntry& seq, const TileEntry& tile,
                                           const attention_format::PartRef& part, std::int64_t begin, std::int64_t h,
                                           std::int64_t t, std::int64_t i) {
  if (tile.key_block < 0)
    return attention_format::residual_element(seq.key_full, seq.key_full_dtype, seq.key_capacity, seq.key_first, p.channels,
                                              p.residual_dtype, h, t, i);
  return attention_format::part_element(part, t - begin, i);
}

// Value element of channel c of token t (absolute). begin: value_block_begin(p, tile). rank: mixed_token values,
// the protected tokens of the block before t (attention_format::side_element); ignored otherwise.
VIDKV_HOST_DEVICE inline float value_element(const Problem& p, const SequenceEntry& seq, const TileEntry& tile,
                                             const attention_format::PartRef& part, std::int64_t begin, std::int64_t h,
                                             std::int64_t t, std::int64_t c, std::int64_t rank = 0) {
  if (tile.value_block < 0)
    return attention_format::residual_element(seq.value_full, seq.value_full_dtype, seq.value_capacity, seq.value_first,
                                              p.channels, p.residual_dtype, h, t, c);
  return attention_format::side_element(p.value, part, p.channels, t - begin, c, rank);
}

// --- Staged metadata ----------------------------------------------------------------------------------------------
// Per tile, the kernels read each group's metadata once into shared memory instead of once per element, where the
// tile's layout allows it (else every element reads its own, view_element):
//   keys in a packed block: every child channel-axis with the tile inside one group -> meta of part index i;
//   values of a plain side: channel-axis with the tile in one group -> meta of channel c (kValueMetaPerChannel);
//     token-axis -> meta of (token j of the tile, group g) (kValueMetaPerTokenGroup) when n * groups fit.
constexpr int kValueMetaNone = 0, kValueMetaPerChannel = 1, kValueMetaPerTokenGroup = 2;
// Metadata entries per warp for the values: 4 per channel (token-axis groups of 32 channels, 32 tokens: 1 per channel).
VIDKV_HOST_DEVICE inline std::int64_t value_meta_capacity(std::int64_t channels) { return 4 * channels; }

VIDKV_HOST_DEVICE inline bool key_meta_staged(const attention_format::PartRef& kp, std::int64_t tr0, std::int64_t n) {
  return (kp.first_n == 0 || attention_format::one_group_per_row(kp.first, tr0, n)) &&
         (kp.second_n == 0 || attention_format::one_group_per_row(kp.second, tr0, n));
}
// Metadata of part index i for a tile starting at block token tr0 (key_meta_staged).
VIDKV_HOST_DEVICE inline attention_format::Meta key_meta_entry(const attention_format::PartRef& kp, std::int64_t tr0, std::int64_t i) {
  namespace af = attention_format;
  return i < kp.first_n ? af::view_meta(kp.first, af::view_group(kp.first, tr0, i))
                        : af::view_meta(kp.second, af::view_group(kp.second, tr0, i - kp.first_n));
}

VIDKV_HOST_DEVICE inline int value_meta_mode(const attention_format::SideFormat& f, const attention_format::PartRef& vp,
                                             std::int64_t tr0, std::int64_t n, std::int64_t channels) {
  if (f.mixed || f.token_mixed || f.first.codec == attention_format::ChildCodec::identity) return kValueMetaNone;
  if (attention_format::one_group_per_row(vp.first, tr0, n)) return kValueMetaPerChannel;
  if (f.first.axis == group_format::GroupAxis::token && n * vp.first.groups_per_row <= value_meta_capacity(channels))
    return kValueMetaPerTokenGroup;
  return kValueMetaNone;
}
// Entries to stage: channels (per channel) or n * groups_per_row (per token and group).
VIDKV_HOST_DEVICE inline std::int64_t value_meta_count(int mode, const attention_format::PartRef& vp, std::int64_t n,
                                                       std::int64_t channels) {
  return mode == kValueMetaPerChannel ? channels : (mode == kValueMetaPerTokenGroup ? n * vp.first.groups_per_row : 0);
}
VIDKV_HOST_DEVICE inline attention_format::Meta value_meta_entry(int mode, const attention_format::PartRef& vp, std::int64_t tr0,
                                                                 std::int64_t e) {
  namespace af = attention_format;
  const af::ChildView& v = vp.first;
  if (mode == kValueMetaPerChannel) return af::view_meta(v, af::view_group(v, tr0, e));
  const std::int64_t j = e / v.groups_per_row, g = e % v.groups_per_row;
  return af::view_meta(v, (v.head * v.rows + tr0 + j) * v.groups_per_row + g);
}
// Whether the fast kernels (fast, tensor-core) read p's sides at all: keys over D part indices (no fft: complex
// child) and plain values (not mixed_token). The general kernel takes the others.
VIDKV_HOST_DEVICE inline bool fast_kernels_read(const Problem& p) {
  return attention_format::key_width(p.key, p.channels) == p.channels && !p.value.token_mixed;
}

// Whether a tile is fast: keys and values in packed blocks whose codes the fast kernel stages (staged_bits), the keys'
// metadata staged per part index and the values' per channel or per (token, group). Independent of the KV head (the group of a row does not depend on it).
VIDKV_HOST_DEVICE inline bool tile_is_fast(const Problem& p, const TileEntry& tile);

// Value of channel c of tile token j (block token tr0 + j) from the staged metadata.
VIDKV_HOST_DEVICE inline float value_staged_element(int mode, const attention_format::PartRef& vp, std::int64_t tr0, std::int64_t j,
                                                    std::int64_t c, const attention_format::Meta* meta) {
  namespace af = attention_format;
  const af::ChildView& v = vp.first;
  const std::int64_t e = mode == kValueMetaPerChannel
                             ? c
                             : j * v.groups_per_row + (v.group_shift >= 0 ? (c >> v.group_shift) : c / v.f.group);
  return af::decode_code(v, af::view_code(v, tr0 + j, c), meta[e]);
}

// Whether a tile is a whole 32-token tile of the fragment layout on both sides (Problem::fragment): 32 tokens
// starting on a multiple of 32 from each block's first token and ending at or before the block's last whole tile
// (the tail, tokens mod 32, is in dense order), or the first n < 32 tokens of such a tile (a tile cut by a query row's
// causal limit, DecodeAttention with several query tokens: the fragment kernels read the whole tile and mask the
// tokens from n on; no other tile of fewer than 32 tokens lies in a whole tile of both sides, as the others end at a
// block's end or a residual's start), the codes 16-byte aligned (the kernel's quad copies; a tile is
// 8 D bytes from the child's codes), and the keys' metadata group-major (group_format::group_major_meta: a block with
// a whole tile has it) with 16-byte aligned sections (a tile's D scales are 2 D bytes at a multiple of 2 D: the kernel's
// quad copies). Codes aligned imply the sections are (the codes section is a multiple of 16 bytes at 64 channels).
VIDKV_HOST_DEVICE inline bool fragment_tile(const Problem& p, const TileEntry& tile, const attention_format::PartRef& kp,
                                            const attention_format::PartRef& vp) {
  if (tile.n < 1 || tile.n > group_format::kFragmentTileTokens) return false;
  const BlockEntry& kb = p.key_blocks[tile.key_block];
  const BlockEntry& vb = p.value_blocks[tile.value_block];
  auto whole = [](std::int64_t tr0, std::int64_t tokens) {
    const std::int64_t t = group_format::kFragmentTileTokens;
    return tr0 % t == 0 && tr0 + t <= group_format::fragment_tiled_tokens(tokens);
  };
  auto aligned = [](const std::uint8_t* x, unsigned n = 16) { return reinterpret_cast<std::uintptr_t>(x) % n == 0; };
  if (!whole(tile.t0 - kb.begin, kb.tokens) || !whole(tile.t0 - vb.begin, vb.tokens) || !aligned(kp.first.codes) ||
      !aligned(vp.first.codes) || !kp.first.group_major)
    return false;
  if (!p.key.mixed) return aligned(kp.first.scales) && aligned(kp.first.mins);  // kivi
  // vidkv (attention_fragment::FragmentFormats): the low keys' 1-bit codes by 8-byte copies, every metadata section
  // (high scales and mins, low scales: group-major) word by word; the ternary values have none.
  return aligned(kp.second.codes, 8) && kp.second.group_major && aligned(kp.first.scales, 4) && aligned(kp.first.mins, 4) &&
         aligned(kp.second.scales, 4);
}

// Whether the tokens [tr0, tr0 + n) of a fragment-layout key block of `tokens` tokens, whose codes start at `codes`,
// can be read by lane words (the general kernel's fragment_key_scores, decode_attention.cu): inside one whole 32-token
// tile (so in one key group: the fragment kernel's groups are multiples of 32) and the codes 4-byte aligned.
VIDKV_HOST_DEVICE inline bool fragment_narrow_tile(const std::uint8_t* codes, std::int64_t tokens, std::int64_t tr0, std::int64_t n) {
  const std::int64_t t = group_format::kFragmentTileTokens;
  return reinterpret_cast<std::uintptr_t>(codes) % 4 == 0 && tr0 + n <= group_format::fragment_tiled_tokens(tokens) &&
         tr0 % t + n <= t;
}

// The same with the tile's key and value parts of KV head 0 given (key_part / value_part: the caller may reuse them
// for the tiles of one block).
VIDKV_HOST_DEVICE inline bool tile_is_fast(const Problem& p, const TileEntry& tile, const attention_format::PartRef& kp,
                                           const attention_format::PartRef& vp) {
  if (tile.key_block < 0 || tile.value_block < 0) return false;
  if (p.fragment) return fragment_tile(p, tile, kp, vp);
  if (!fast_kernels_read(p)) return false;
  // The fast kernel stages every child's codes a run at a time (decode_attention_staging.h).
  if (attention_staging::staged_bits(p.key.first) == 0 || (p.key.mixed && attention_staging::staged_bits(p.key.second) == 0) ||
      p.value.mixed || attention_staging::staged_bits(p.value.first) == 0)
    return false;
  const std::int64_t ktr0 = tile.t0 - p.key_blocks[tile.key_block].begin, vtr0 = tile.t0 - p.value_blocks[tile.value_block].begin;
  return key_meta_staged(kp, ktr0, tile.n) && value_meta_mode(p.value, vp, vtr0, tile.n, p.channels) != kValueMetaNone;
}
VIDKV_HOST_DEVICE inline bool tile_is_fast(const Problem& p, const TileEntry& tile) {
  if (tile.key_block < 0 || tile.value_block < 0) return false;
  return tile_is_fast(p, tile, key_part(p, tile, 0), value_part(p, tile, 0));
}

}  // namespace vidkv::attention_tables
