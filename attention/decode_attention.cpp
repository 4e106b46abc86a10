#include "vidkv/attention/decode_attention.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <array>
#include <string>
#include <utility>

#include "vidkv/attention/decode_attention_emulation.h"
#include "vidkv/attention/decode_attention_fragment.h"
#include "vidkv/attention/decode_attention_reference.h"
#include "vidkv/attention/decode_attention_tensor_core.h"
#include "vidkv/core/channel_selector.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/parameter_copy.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/identity/identity.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"
#ifdef VIDKV_WITH_CUDA
#include "vidkv/attention/decode_attention_cuda.h"
#include "vidkv/core/cuda/kernel_occupancy.h"
#include "vidkv/core/cuda/row_copy.h"
#endif

namespace vidkv {

namespace af = attention_format;
namespace at = attention_tables;

namespace {

// The format of a primitive quantizer; throws NotSupportedError for others.
af::ChildFormat child_format(const Quantizer& q, bool value_side) {
  af::ChildFormat f;
  if (const auto* u = dynamic_cast<const UniformQuantizer*>(&q)) {
    const UniformParams& p = u->params();
    f.codec = af::ChildCodec::uniform;
    f.axis = p.axis;
    f.layout = p.layout;
    f.bits = static_cast<unsigned>(p.bits);
    f.group = p.group;
    f.scale_dtype = p.scale_dtype;
    return f;
  }
  if (const auto* s = dynamic_cast<const SignQuantizer*>(&q)) {
    const SignParams& p = s->params();
    VIDKV_REQUIRE(!(value_side && p.fft != SignFft::off), NotSupportedError,
                  "decode attention: sign with an fft (real or complex) is read in place for keys only, not values");
    f.codec = af::ChildCodec::sign;
    f.axis = p.axis;
    f.layout = p.layout;
    f.group = p.group;
    f.scale_dtype = p.scale_dtype;
    f.symmetric = p.reconstruction == sign_format::Reconstruction::symmetric;
    f.fft_real = p.fft == SignFft::real;
    f.fft_complex = p.fft == SignFft::complex;
    return f;
  }
  if (const auto* t = dynamic_cast<const TernaryQuantizer*>(&q)) {
    const TernaryParams& p = t->params();
    f.codec = af::ChildCodec::ternary;
    f.axis = p.axis;
    f.packing = p.packing;
    f.group = p.group;
    f.scale_dtype = p.scale_dtype;
    f.scaled = p.reconstruction == ternary_format::Reconstruction::scaled;
    return f;
  }
  if (const auto* id = dynamic_cast<const IdentityQuantizer*>(&q)) {
    f.codec = af::ChildCodec::identity;
    f.axis = group_format::GroupAxis::token;  // rows = (head, token), the channels along them: block order
    f.group = 1;
    f.scale_dtype = id->params().dtype;
    return f;
  }
  VIDKV_THROW(NotSupportedError, "decode attention: quantizer '", q.plugin_name(),
              "' is not read in place (uniform, sign, ternary, identity, mixed_channel of those and, for values, "
              "mixed_token of those are)");
}

// A child in the fragment layout (uniform's or sign's layout fragment, ternary's packing fragment) holds whole lane
// vectors only for a multiple of 64 channels (or FFT components) per part (its encode refuses others with a
// ShapeError); here the same shape is refused as not readable, before any cache is read.
void require_fragment_channels(const af::ChildFormat& f, std::int64_t channels) {
  const std::int64_t components = af::child_components(f, channels);
  VIDKV_REQUIRE(af::child_layout(f) != group_format::CodeLayout::fragment || group_format::fragment_channels_ok(components),
                NotSupportedError, "decode attention: the fragment layout needs a multiple of 64 channels per part, got ",
                components);
}

af::SideFormat side_format_of(const Quantizer& q, std::int64_t channels, bool value_side) {
  af::SideFormat f;
  if (const auto* mt = dynamic_cast<const MixedTokenQuantizer*>(&q)) {
    VIDKV_REQUIRE(value_side, NotSupportedError, "decode attention: mixed_token is read in place for values only, not keys");
    f.token_mixed = true;
    f.first = child_format(mt->protected_quantizer(), value_side);
    f.second = child_format(mt->rest_quantizer(), value_side);
    require_fragment_channels(f.first, channels);
    require_fragment_channels(f.second, channels);
    return f;
  }
  if (const auto* mc = dynamic_cast<const MixedChannelQuantizer*>(&q)) {
    f.mixed = true;
    f.mask_per_head = mc->selector().selection().scope == SelectionScope::head;
    f.high = mc->selector().selected_count(channels);
    f.first = child_format(mc->high(), value_side);
    f.second = child_format(mc->low(), value_side);
    require_fragment_channels(f.first, f.high);
    require_fragment_channels(f.second, channels - f.high);
    return f;
  }
  f.first = child_format(q, value_side);
  require_fragment_channels(f.first, channels);
  return f;
}

bool same_format(const af::ChildFormat& a, const af::ChildFormat& b) {
  return a.codec == b.codec && a.axis == b.axis && a.layout == b.layout && a.packing == b.packing && a.bits == b.bits &&
         a.group == b.group && a.scale_dtype == b.scale_dtype && a.symmetric == b.symmetric && a.scaled == b.scaled &&
         a.fft_real == b.fft_real && a.fft_complex == b.fft_complex;
}
bool same_format(const af::SideFormat& a, const af::SideFormat& b) {
  return a.mixed == b.mixed && a.mask_per_head == b.mask_per_head && a.token_mixed == b.token_mixed && a.high == b.high &&
         same_format(a.first, b.first) && (!(a.mixed || a.token_mixed) || same_format(a.second, b.second));
}

// queries / out: [batch, q_heads, D] (one query token per sequence) or [batch, query_tokens, q_heads, D]; returns
// q_heads / heads.
std::int64_t check_view(const TensorView& v, const char* what, Device device, std::int64_t batch, std::int64_t query_tokens,
                        std::int64_t heads, std::int64_t channels) {
  VIDKV_REQUIRE(v.device == device, ShapeError, "decode attention: ", what, " is on ", device_name(v.device),
                ", the caches on ", device_name(device));
  const bool rank4 = v.shape.size() == 4;
  const bool layout = rank4 ? v.shape[1] == query_tokens : v.shape.size() == 3 && query_tokens == 1;
  const std::int64_t q_heads = layout ? v.shape[rank4 ? 2 : 1] : 0;
  if (!(layout && v.shape[0] == batch && v.shape.back() == channels && q_heads % heads == 0 && q_heads / heads >= 1)) {
    // the message built only here: run() is per step
    const std::string expected = query_tokens == 1 ? "[" + std::to_string(batch) + ", q_heads, " + std::to_string(channels) + "]"
                                                   : "[" + std::to_string(batch) + ", " + std::to_string(query_tokens) +
                                                         " (query tokens), q_heads, " + std::to_string(channels) + "]";
    VIDKV_THROW(ShapeError, "decode attention: ", what, " ", v.shape_str(), ": expected ", expected, " (batch: the ", batch,
                " caches) with q_heads a positive multiple of the ", heads, " KV heads",
                query_tokens == 1 && rank4 && v.shape[1] != 1
                    ? "; several query tokens per sequence: [batch, n, q_heads, D] with query_tokens n given to the call"
                    : "");
  }
  return q_heads / heads;
}

// Splits a sequence's tokens into tiles (decode_attention_tables.h); block indices offset into the batch's arrays.
// Key tiles start on multiples of 32 tokens from their key block's (or the residual's) start, so a tile never
// straddles two per-channel groups of 32; tiles touching either residual window hold at most kResidualTileTokens
// (a divisor of 32).
// Tiles start at token `from`, which must be a tile boundary of the tiling from 0 (0, or a token where both sides'
// blocks have ended: tokens >= min(key.quantized, value.quantized) cut the same tiles from there).
void add_tiles(const LayerCache::SideRef& key, const LayerCache::SideRef& value, std::int64_t from, std::int64_t tokens,
               std::int32_t key_base, std::int32_t value_base, std::int32_t sequence, std::vector<at::TileEntry>& tiles) {
  std::size_t ki = 0, vi = 0;
  for (std::int64_t t = from; t < tokens;) {
    while (ki < key.blocks.size() && t >= key.blocks[ki].end) ++ki;
    while (vi < value.blocks.size() && t >= value.blocks[vi].end) ++vi;
    const bool kb = ki < key.blocks.size(), vb = vi < value.blocks.size();
    const std::int64_t kstart = kb ? key.blocks[ki].begin : key.quantized;
    const std::int64_t span = kb && vb ? DecodeAttention::kTileTokens : DecodeAttention::kResidualTileTokens;
    std::int64_t end = std::min(tokens, kstart + ((t - kstart) / span + 1) * span);
    if (kb) end = std::min(end, key.blocks[ki].end);
    else if (t < key.quantized) end = std::min(end, key.quantized);
    if (vb) end = std::min(end, value.blocks[vi].end);
    else if (t < value.quantized) end = std::min(end, value.quantized);
    at::TileEntry e;
    e.t0 = t;
    e.n = static_cast<std::int32_t>(end - t);
    e.key_block = kb ? key_base + static_cast<std::int32_t>(ki) : -1;
    e.value_block = vb ? value_base + static_cast<std::int32_t>(vi) : -1;
    e.sequence = sequence;
    tiles.push_back(e);
    t = end;
  }
}

// VIDKV_CUDA_FRAGMENT_ATTENTION=off keeps the fragment layout's tiles on the tensor-core kernel (A / B
// measurements); read once.
bool fragment_kernel_enabled() {
  static const bool on = !env_equals("VIDKV_CUDA_FRAGMENT_ATTENTION", "off");
  return on;
}

// VIDKV_CUDA_ATTENTION_COMPACT=off keeps the full general kernel on the fragment presets' residual tiles (Problem::
// general_narrow_only never set: A / B measurements; per tile the same arithmetic, but the default placement then
// follows the full instance's rule too (after the fast kernel at batch 8), so compare it with
// VIDKV_CUDA_ATTENTION_BESIDE=after, whose splits and merge order are the same); read once.
bool compact_general_enabled() {
  static const bool on = !env_equals("VIDKV_CUDA_ATTENTION_COMPACT", "off");
  return on;
}

// VIDKV_CUDA_ATTENTION_RESIDUAL=cuda_cores keeps the fragment presets' residual tiles on the general kernel's compact
// instance (Problem::general_tensor_cores never set: A / B measurements, the same placement and splits); read once.
// By default fp16 stores take the tensor-core residual kernel: on an H100 (2026-12-07, kivi-2-fragment, one process
// per setting) batch 8 at 8k / 32k / 64k / 128k 0.0332-0.0334 / 0.0631 / 0.1009-0.1021 / 0.1763-0.1772 ms against
// 0.0550-0.0556 / 0.0760-0.0762 / 0.1003-0.1017 / 0.1756-0.1771, batch 1 at 8k 0.0226-0.0230 against 0.0262-0.0264
// (at 32k-128k the same), batches 2 and 3 5-12% faster, 2 query tokens at 32k 8-10% faster (docs/performance.md
// section 8).
bool residual_tensor_cores_enabled() {
  static const bool on = !env_equals("VIDKV_CUDA_ATTENTION_RESIDUAL", "cuda_cores");
  return on;
}

// VIDKV_CUDA_ATTENTION_BESIDE=always: the general kernel beside the fast one whenever its blocks take at most half
// of the fast kernel's wave, not 1/16 (A / B measurements at batch 8); read once.
bool general_beside_always() {
  static const bool on = env_equals("VIDKV_CUDA_ATTENTION_BESIDE", "always");
  return on;
}
// The one-split rule: where the 1/16 rule keeps the general kernel after the fast one, run it beside with one split
// per (sequence, KV head) when those blocks take at most 1/8 of the fast kernel's wave (batch 8 at 4 KV heads: 32
// blocks of 396), the fast kernel keeping the rest of the wave. By default for the general kernel's compact instance
// (Problem::general_narrow_only): at kivi-2-fragment 8 x 64k on the H100, 0.1281 ms against 0.1420 after the
// fragment kernel (and 0.1377 with =always), one run, docs/performance.md section 8; the full instance was slower
// beside (0.1766-0.1843 against 0.1514-0.1562 after, on both GPUs). With the tensor-core residual kernel in the compact
// instance's place (2026-12-07, H100): 0.1002-0.1021 ms beside with one split, 0.1085 after, 0.1060 with =always; at
// 8 x 8k 0.0332 against 0.0395 after. VIDKV_CUDA_ATTENTION_BESIDE=one-split takes it for the full instance too,
// =after never (the 1/16 rule only); read once.
bool general_beside_one_split(bool compact) {
  static const bool always = env_equals("VIDKV_CUDA_ATTENTION_BESIDE", "one-split");
  static const bool never = env_equals("VIDKV_CUDA_ATTENTION_BESIDE", "after");
  return always || (compact && !never);
}

// The fewer-splits rule, for the general kernel's compact instance (Problem::general_narrow_only) as the one-split
// rule: where its requested splits break the 1/16 rule but 2 or more splits per (sequence, KV head) keep it, it runs
// beside with that many (batches of 2 to 3 sequences, or query rows of several tokens, at 4 KV heads: 8-12 rows)
// instead of with one split, whose single block per row walked all the row's residual tiles. On an H100 (2026-12-06,
// one process per rule): kivi-2-fragment at batch 2 / 3 and 32k 0.0526 / 0.0612 -> 0.0389 / 0.0464 ms, at 64k
// 0.0703 / 0.0733 -> 0.0492 / 0.0596, 2 query tokens at 32k x 1 0.0529 -> 0.0382; the full instance
// (vidkv-k1.5-v1.58-fragment) was 4-9% slower beside with fewer splits than after the fast kernel (0.0311 -> 0.0333
// at 32k x 2), so it keeps the 1/16 rule alone. (Since 2026-12-07 vidkv-k1.5-v1.58-fragment's residual windows, whose
// keys are exact, take the compact path and so these rules too; their speed there is not measured: the bench's
// prefills of whole 32-token groups leave that preset no residual tokens.) With the tensor-core residual kernel
// (2026-12-07, H100, kivi-2-fragment): batch 2 / 3 at 32k 0.0322 / 0.0385 ms, at 64k 0.0437 / 0.0532, against
// 0.0315 / 0.0382 and 0.0459 / 0.0521 without the rule: the same within the runs' spread, so it stays.
// VIDKV_CUDA_ATTENTION_BESIDE=requested turns the rule off (A / B); read once.
bool general_beside_fewer(bool compact) {
  static const bool on = !env_equals("VIDKV_CUDA_ATTENTION_BESIDE", "requested");
  return on && compact;
}

void check_blocks(const LayerCache::SideRef& side, const char* what, std::size_t b) {
  std::int64_t next = 0;
  for (const auto& blk : side.blocks) {
    VIDKV_ASSERT(blk.begin == next && blk.end > blk.begin, "sequence ", b, ": ", what, " blocks are not contiguous");
    next = blk.end;
  }
  VIDKV_ASSERT(next == side.quantized, "sequence ", b, ": ", what, " blocks end at ", next, ", quantized ", side.quantized);
}

// Entry for entry equality of the tables (every field): same_tables() and the uploads' comparison with the device copy.
bool same_entry(const at::BlockEntry& u, const at::BlockEntry& v) {
  return u.bytes == v.bytes && u.begin == v.begin && u.tokens == v.tokens && u.kept == v.kept && u.sequence == v.sequence;
}
bool same_entry(const at::SequenceEntry& u, const at::SequenceEntry& v) {
  return u.tile_begin == v.tile_begin && u.tile_count == v.tile_count && u.fast_count == v.fast_count &&
         u.key_full == v.key_full && u.value_full == v.value_full && u.key_full_dtype == v.key_full_dtype &&
         u.value_full_dtype == v.value_full_dtype && u.key_capacity == v.key_capacity &&
         u.value_capacity == v.value_capacity && u.key_first == v.key_first && u.value_first == v.value_first;
}
bool same_entry(const at::TileEntry& u, const at::TileEntry& v) {
  return u.t0 == v.t0 && u.n == v.n && u.key_block == v.key_block && u.value_block == v.value_block &&
         u.sequence == v.sequence;
}
template <class T>
bool same_entries(const std::vector<T>& a, const std::vector<T>& b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](const T& u, const T& v) { return same_entry(u, v); });
}
// The index of the first entry where `now` differs from `held` (now.size() when it only appends to it or equals it).
template <class T>
std::size_t first_change(const std::vector<T>& now, const std::vector<T>& held) {
  const std::size_t n = std::min(now.size(), held.size());
  std::size_t i = 0;
  while (i < n && same_entry(now[i], held[i])) ++i;
  return i;
}

}  // namespace

af::SideFormat side_format(const Quantizer& q, std::int64_t channels, KvSide side) {
  return side_format_of(q, channels, side == KvSide::value);
}

bool decode_attention_supports(const Quantizer& q, std::int64_t channels, KvSide side, std::string* why) {
  try {
    side_format_of(q, channels, side == KvSide::value);
    return true;
  } catch (const NotSupportedError& e) {
    if (why) *why = e.what();
    return false;
  }
}

namespace {

// What update() keeps of one sequence between builds: its blocks as last seen and the tiles of its quantized
// prefix [0, stable), stable = min(key quantized, value quantized) (tiles there hold a key and a value block each;
// past it every tile touches a residual window and is general), the fast ones and the others apart, each in token
// order, block indices local to the sequence. Valid while the sequence is the same cache object
// (LayerCache::instance_id, never reused) whose blocks so far are unchanged (token ranges and byte pointers; blocks
// may have been added after them): the tiles of [0, stable) depend on nothing else (formats aside, checked per
// build), and stable is a tile boundary of every later tiling.
struct SequencePrefix {
  const LayerCache* cache = nullptr;
  std::uint64_t instance = 0;
  std::vector<LayerCache::BlockRef> key_refs, value_refs;
  std::vector<at::BlockEntry> key_blocks, value_blocks;
  std::vector<at::TileEntry> fast, general;
  std::int64_t stable = 0;
  // The leading entries of `fast` / `general` that stand in the tables as they are now (written by the last build at
  // the positions this sequence's region gives them); the rest, and everything after a change of the fast count, is
  // written by the next build (DecodeAttention::Tables::regions).
  std::size_t clean_fast = 0, clean_general = 0;
  std::size_t block_bytes = 0;  // the blocks' packed bytes (cache_bytes)
};

// The layout pointer is not compared: it names the block's slot in the cache's block vector, which moves when the
// vector grows; a block's layout follows from its token range and the codec.
bool same_ref(const LayerCache::BlockRef& a, const LayerCache::BlockRef& b) {
  return a.begin == b.begin && a.end == b.end && a.bytes == b.bytes;
}
// Whether `old` are the first blocks of `now`.
bool extends(const std::vector<LayerCache::BlockRef>& old, const std::vector<LayerCache::BlockRef>& now) {
  if (old.size() > now.size()) return false;
  for (std::size_t i = 0; i < old.size(); ++i)
    if (!same_ref(old[i], now[i])) return false;
  return true;
}

// Where `now` no longer starts with all of sp's blocks (the kivi lifecycle merged the value token it just quantized
// into the tail block before it, cache_lifecycle.h): cuts sp back to the blocks both share and to the tiles before the first block that
// changed (tiles never cross a block, so every kept tile lies in kept blocks), for extend_prefix to rebuild the rest.
// sp must be of the same cache object.
void cut_prefix(SequencePrefix& sp, const LayerCache::SideRef& key, const LayerCache::SideRef& value) {
  const auto shared = [](const std::vector<LayerCache::BlockRef>& old, const std::vector<LayerCache::BlockRef>& now) {
    std::size_t i = 0;
    while (i < old.size() && i < now.size() && same_ref(old[i], now[i])) ++i;
    return i;
  };
  const std::size_t ki = shared(sp.key_refs, key.blocks), vi = shared(sp.value_refs, value.blocks);
  std::int64_t cut = sp.stable;
  if (ki < sp.key_refs.size()) cut = std::min(cut, sp.key_refs[ki].begin);
  if (vi < sp.value_refs.size()) cut = std::min(cut, sp.value_refs[vi].begin);
  sp.key_refs.resize(ki);
  sp.key_blocks.resize(ki);
  sp.value_refs.resize(vi);
  sp.value_blocks.resize(vi);
  for (auto* part : {&sp.fast, &sp.general})
    part->erase(std::remove_if(part->begin(), part->end(), [cut](const at::TileEntry& t) { return t.t0 >= cut; }), part->end());
  sp.clean_fast = std::min(sp.clean_fast, sp.fast.size());
  sp.clean_general = std::min(sp.clean_general, sp.general.size());
  sp.stable = cut;
  // The kept blocks' bytes, from the cache's current layouts (the old refs' layout pointers may have moved).
  sp.block_bytes = 0;
  for (std::size_t i = 0; i < ki; ++i) sp.block_bytes += key.blocks[i].layout->bytes();
  for (std::size_t i = 0; i < vi; ++i) sp.block_bytes += value.blocks[i].layout->bytes();
}

// Brings `sp` to cache c's current sides (whose first blocks are sp's, see extends()) under the formats of p (whose
// block pointers it borrows while deciding which tiles are fast): the new blocks' entries and the tiles of
// [sp.stable, new stable).
void extend_prefix(SequencePrefix& sp, const LayerCache& c, const LayerCache::SideRef& key, const LayerCache::SideRef& value,
                   at::Problem p) {
  for (std::size_t i = sp.key_refs.size(); i < key.blocks.size(); ++i) {
    const LayerCache::BlockRef& blk = key.blocks[i];
    sp.key_blocks.push_back({blk.bytes, blk.begin, blk.end - blk.begin, 0, 0});
    sp.block_bytes += blk.layout->bytes();
  }
  const auto* token_mixed = dynamic_cast<const MixedTokenQuantizer*>(value.quantizer);
  for (std::size_t i = sp.value_refs.size(); i < value.blocks.size(); ++i) {
    const LayerCache::BlockRef& blk = value.blocks[i];
    // mixed_token: the block's protected tokens, from its shape and token context as the encode counted them.
    const std::int64_t kept = token_mixed ? token_mixed->protected_count(blk.end - blk.begin, c.context().range(blk.begin, blk.end)) : 0;
    sp.value_blocks.push_back({blk.bytes, blk.begin, blk.end - blk.begin, kept, 0});
    sp.block_bytes += blk.layout->bytes();
  }
  sp.key_refs.insert(sp.key_refs.end(), key.blocks.begin() + static_cast<std::ptrdiff_t>(sp.key_refs.size()), key.blocks.end());
  sp.value_refs.insert(sp.value_refs.end(), value.blocks.begin() + static_cast<std::ptrdiff_t>(sp.value_refs.size()),
                       value.blocks.end());
  const std::int64_t stable = std::min(key.quantized, value.quantized);
  if (stable <= sp.stable) return;
  std::vector<at::TileEntry> added;
  add_tiles(key, value, sp.stable, stable, 0, 0, 0, added);
  sp.stable = stable;
  // The parts of a block are the same for all its tiles: computed once per block (a 32k-token sequence has about a
  // thousand tiles in a few blocks).
  p.key_blocks = sp.key_blocks.data();
  p.value_blocks = sp.value_blocks.data();
  std::int32_t kblock = -1, vblock = -1;
  af::PartRef kp, vp;
  for (const at::TileEntry& t : added) {
    if (t.key_block != kblock) {
      kp = at::key_part(p, t, 0);
      kblock = t.key_block;
    }
    if (t.value_block != vblock) {
      vp = at::value_part(p, t, 0);
      vblock = t.value_block;
    }
    (at::tile_is_fast(p, t, kp, vp) ? sp.fast : sp.general).push_back(t);
  }
}

// What one query row of the tables reads of its sequence's prefix (sequence b's query token j is row b * n + j,
// decode_attention.h): the first `fast` / `general` tiles of the prefix's lists, then fast_tail / general_tail (block
// indices local to the sequence, like the prefix's). With one query token: all of the prefix's tiles, and the
// residual windows' tiles as general_tail. A query row whose causal limit falls inside the quantized prefix keeps
// the tiles before it, and the tile across it cut there (in the tail of its kind, which query_row_tiles decides anew).
struct QueryRow {
  std::size_t fast = 0, general = 0;
  std::vector<at::TileEntry> fast_tail, general_tail;
};

// Sets `row` to the tiles a query that sees tokens [0, limit) reads of a sequence whose current sides are key / value
// and whose kept prefix is sp. p: the build's formats; its block pointers are set to sp's here. limit >= sp.stable:
// every prefix tile, then the residual windows' tiles up to limit (general). Below: the prefix tiles before limit,
// the one across it cut there (the residual windows' tiles all lie past sp.stable).
void query_row_tiles(const SequencePrefix& sp, const LayerCache::SideRef& key, const LayerCache::SideRef& value,
                     std::int64_t limit, at::Problem p, QueryRow& row) {
  row.fast_tail.clear();
  row.general_tail.clear();
  if (limit >= sp.stable) {
    row.fast = sp.fast.size();
    row.general = sp.general.size();
    add_tiles(key, value, sp.stable, limit, 0, 0, 0, row.general_tail);
    return;
  }
  const auto before = [limit](const std::vector<at::TileEntry>& tiles) {  // token order: the tiles starting before limit
    return static_cast<std::size_t>(std::partition_point(tiles.begin(), tiles.end(),
                                                         [limit](const at::TileEntry& t) { return t.t0 < limit; }) -
                                    tiles.begin());
  };
  row.fast = before(sp.fast);
  row.general = before(sp.general);
  // At most one tile holds both token limit - 1 and token limit (tiles do not overlap): the last kept of its list.
  const std::vector<at::TileEntry>* list = nullptr;
  std::size_t* kept = nullptr;
  if (row.fast > 0 && sp.fast[row.fast - 1].t0 + sp.fast[row.fast - 1].n > limit) {
    list = &sp.fast;
    kept = &row.fast;
  } else if (row.general > 0 && sp.general[row.general - 1].t0 + sp.general[row.general - 1].n > limit) {
    list = &sp.general;
    kept = &row.general;
  }
  if (!list) return;
  at::TileEntry cut = (*list)[*kept - 1];
  --*kept;
  cut.n = static_cast<std::int32_t>(limit - cut.t0);
  // The cut tile starts after every other kept tile: last in token order in either list.
  p.key_blocks = sp.key_blocks.data();
  p.value_blocks = sp.value_blocks.data();
  (at::tile_is_fast(p, cut) ? row.fast_tail : row.general_tail).push_back(cut);
}

// Whether a query row's general tiles are only what the general kernel's compact instance reads (Problem::
// general_narrow_only, for a problem whose fast tiles are the fragment kernel's): no general tile of the quantized
// prefix, and general tail tiles (the residual windows') of at most DecodeAttention::kResidualTileTokens tokens with
// exact values and keys exact or (unless exact_keys_only: vidkv's mixed keys) inside one whole 32-token tile of their
// fragment-layout key block (its codes 4-byte aligned), the two exact stores of one dtype, fp16 or bf16.
bool narrow_residual_only(const SequencePrefix& sp, const QueryRow& row, const LayerCache::SideRef& key,
                          const LayerCache::SideRef& value, bool exact_keys_only) {
  if (row.general > 0 || key.full_dtype != value.full_dtype || (key.full_dtype != DType::f16 && key.full_dtype != DType::bf16))
    return false;
  for (const at::TileEntry& t : row.general_tail) {
    if (t.value_block >= 0 || t.n > DecodeAttention::kResidualTileTokens) return false;
    if (t.key_block < 0) continue;
    if (exact_keys_only) return false;
    const at::BlockEntry& blk = sp.key_blocks[static_cast<std::size_t>(t.key_block)];
    if (!at::fragment_narrow_tile(blk.bytes, blk.tokens, t.t0 - blk.begin, t.n)) return false;  // plain keys: codes first
  }
  return true;
}

// The entries of one region a build rewrote: [lo, hi) of the indices passed to add(), recorded as an absolute range
// of the array (region start `begin`) in `changes` unless the region was laid out anew (then everything goes up).
struct ChangedRange {
  std::size_t lo = SIZE_MAX, hi = 0;
  void add(std::size_t i) {
    lo = std::min(lo, i);
    hi = i + 1;
  }
  void record(bool relaid, std::size_t begin, std::vector<std::pair<std::size_t, std::size_t>>& changes) const {
    if (!relaid && lo < hi) changes.emplace_back(begin + lo, begin + hi);
  }
};

// The entries one build changed, as the writes of parameter-copy launches into the device copy of the tables
// (cuda_parameter_copy::Writes: at most 16 segments and 3,840 bytes each; a range is split across launches where
// it must be). fits: false when they take more than kMaxPatchLaunches launches, or the tiles were laid out anew:
// then the whole tables go up instead.
struct TablePatch {
  static constexpr std::size_t kMaxPatchLaunches = 8;
  std::vector<cuda_parameter_copy::Writes> launches;
  std::size_t bytes = 0;
  bool fits = true;
  // Adds the write of `n` bytes from src at byte `offset` of the device copy.
  void add(std::size_t offset, const void* src, std::size_t n) {
    namespace pc = cuda_parameter_copy;
    const auto* from = static_cast<const std::uint8_t*>(src);
    while (fits && n > 0) {
      if (launches.empty() || launches.back().segments == static_cast<std::uint32_t>(pc::kMaxSegments) ||
          launches.back().bytes() == pc::kMaxBytes) {
        if (launches.size() == kMaxPatchLaunches) {
          fits = false;
          break;
        }
        launches.emplace_back();
      }
      pc::Writes& w = launches.back();
      const std::size_t part = std::min(n, pc::kMaxBytes - w.bytes());
      if (!w.add(offset, from, part)) {  // an offset beyond 32 bits
        fits = false;
        break;
      }
      bytes += part;
      offset += part;
      from += part;
      n -= part;
    }
  }
};

}  // namespace

struct DecodeAttention::Tables {
  at::Problem problem;  // formats, shapes, table pointers (host arrays below, or their device copy)
  std::vector<at::SequenceEntry> sequences;
  std::vector<at::BlockEntry> key_blocks, value_blocks;
  std::vector<at::TileEntry> tiles;
  std::vector<SequencePrefix> prefixes;  // per sequence, kept between update()s
  // Where each query row's (each sequence's, with one query token) tiles and blocks sit in `tiles`, `key_blocks` and
  // `value_blocks`: regions of its own with
  // room to grow (laid out anew when a sequence outgrows one, the batch changes size, the formats change or a build
  // failed), so that a decode step rewrites only the entries that changed in each sequence -- its residual windows'
  // tiles, mostly, and a block now and then -- and moves no other sequence's entries (a tile's block index is its
  // region's start plus the block's index in the sequence, fixed until the next layout). The tile entries between
  // one sequence's tiles and the next region are stale and never read (the kernels read tiles[tile_begin,
  // tile_begin + tile_count) of each sequence); the block entries there are zero (tokens 0: the query transform,
  // which runs over every key block entry, skips them). keys / values / fast: the block and fast tile counts the last
  // build wrote; prefix_fast / prefix_general: how many of the sequence prefix's fast / general tiles it wrote at the
  // start of each part (QueryRow::fast / general; the rest of a part was the row's tails).
  struct SequenceRegions {
    std::size_t tile_begin = 0, tile_capacity = 0, key_begin = 0, key_capacity = 0, value_begin = 0, value_capacity = 0;
    std::size_t keys = 0, values = 0, fast = 0, prefix_fast = 0, prefix_general = 0;
  };
  std::vector<SequenceRegions> regions;
  bool regions_valid = false;
  // What the last build changed: laid out anew (relaid), else the entry ranges [first, last) it rewrote in `tiles`,
  // `key_blocks` and `value_blocks` (what the device copy must receive; plan_patch).
  bool relaid = true;
  std::vector<std::pair<std::size_t, std::size_t>> tile_changes, key_block_changes, value_block_changes;
  // Per table row (sequence b's query token j and query head group g: (b * query_tokens + j) * head_groups + g): this
  // build's tiles of it (scratch).
  std::vector<QueryRow> rows;
  std::int64_t query_tokens = 1, head_groups = 1;  // the last build's
  // This build's changes against the last build's arrays, at the device regions' offsets (plan_patch).
  TablePatch patch;
  bool built = false;
  // cuda, splits 0: the kernels' resident blocks per multiprocessor times the multiprocessors (one full wave), for
  // the formats of the last build (-1: not known yet).
  std::int64_t fast_wave = -1, generic_wave = -1;
  // cuda: the four arrays (sequences, key blocks, value blocks, tiles) in `device`, each in a region (byte offset,
  // capacity) fixed until one outgrows its region. held_sequences: the sequence array as the device holds it (the
  // last build's, swapped in at the start of a build), to which plan_patch() compares the new one; device_current: whether
  // the device holds them (false before the first upload and after a failed build). A whole upload goes through two
  // pinned buffers used in turn (a buffer is rewritten only after the copy that read it, `staged`).
  DeviceBuffer device;
  std::size_t region_offset[4] = {}, region_capacity[4] = {};
  bool device_current = false;
  std::vector<at::SequenceEntry> held_sequences;
  DecodeAttention::Uploads uploads;
  PinnedBuffer pinned[2];
  HostSyncEvent staged[2];
  int slot = 0;
  DeviceBuffer workspace;  // run()'s, kept between runs (grown when a run needs more)
#ifdef VIDKV_WITH_CUDA
  DeviceBuffer head_group_io;  // run_head_groups()'s staging of the groups' queries and outputs, kept like the workspace
  // The one-run staging whose padding heads the buffer holds zeroed: its query rows x KV heads, head_dim, query element
  // size and qpk (all 0: none; after another layout or a run per group the padding positions may hold other queries).
  std::array<std::int64_t, 4> head_group_layout{};
  // cuda, splits 0: whether the general kernel runs beside the fast one (its few blocks fit beside that kernel's
  // wave, update()), on `side` (created on the first such run).
  bool beside = false;
  std::unique_ptr<attention_cuda::SideStream> side;
  // Beside on one stream (run()): the counters of Problem::generic_done, [2, done_rows] uint32 on the device, zero
  // between runs (done_rows 0: none, or not known to be zero).
  DeviceBuffer generic_done;
  std::int64_t done_rows = 0;
#endif

  Tables() = default;
  Tables(const Tables&) = delete;
  Tables& operator=(const Tables&) = delete;
  ~Tables() {
    try {  // the pinned buffers outlive the copies that read them
      staged[0].wait();
      staged[1].wait();
    } catch (...) {
    }
  }
};

namespace {

// This build's changes against the last build's (tb.held_sequences and the ranges the build rewrote) as tb.patch, at
// the byte offsets of the device regions the last whole upload laid out (tb.region_offset; all 0 on cpu, where the
// plan only counts): the sequence array from its first changed entry to its end, the tiles and blocks by the ranges
// the build rewrote.
void plan_patch(DecodeAttention::Tables& tb) {
  tb.patch.launches.clear();  // keeps its storage: a build per decode step
  tb.patch.bytes = 0;
  tb.patch.fits = !tb.relaid;
  const std::size_t first = first_change(tb.sequences, tb.held_sequences);
  tb.patch.add(tb.region_offset[0] + first * sizeof(at::SequenceEntry), tb.sequences.data() + first,
               (tb.sequences.size() - first) * sizeof(at::SequenceEntry));
  const auto ranges = [&](int i, const auto& array, const std::vector<std::pair<std::size_t, std::size_t>>& changes) {
    const std::size_t size = sizeof(array[0]);
    for (const auto& [a, b] : changes) tb.patch.add(tb.region_offset[i] + a * size, array.data() + a, (b - a) * size);
  };
  ranges(1, tb.key_blocks, tb.key_block_changes);
  ranges(2, tb.value_blocks, tb.value_block_changes);
  ranges(3, tb.tiles, tb.tile_changes);
}

}  // namespace

#ifdef VIDKV_WITH_CUDA
namespace {

// Brings the device copy of tb's four arrays to this build's and points tb.problem's tables at it. A decode step
// changes little: the sequence entries, a block or two appended, the residual windows' tiles at the end of each
// sequence's region. Those changes (plan_patch) go up as the parameters of at most kMaxPatchLaunches kernel launches
// (cuda_parameter_copy: no memcpy, no event, which cost a host-bound decode step far more than a launch,
// parameter_copy.h). When they do not fit (a first build, tiles laid out anew, an array outgrowing its device
// region), the device regions are laid out anew with room to grow and the whole arrays go up through pinned memory.
void upload_tables(DecodeAttention::Tables& tb, void* stream) {
  at::Problem& p = tb.problem;
  const std::size_t bytes[4] = {tb.sequences.size() * sizeof(at::SequenceEntry), tb.key_blocks.size() * sizeof(at::BlockEntry),
                                tb.value_blocks.size() * sizeof(at::BlockEntry), tb.tiles.size() * sizeof(at::TileEntry)};
  bool whole = !tb.device_current || !tb.patch.fits;
  for (int i = 0; i < 4; ++i) whole = whole || bytes[i] > tb.region_capacity[i];
  if (!whole) {
    for (const cuda_parameter_copy::Writes& w : tb.patch.launches) cuda_parameter_copy::enqueue(tb.device.data(), w, stream);
    ++(tb.patch.launches.empty() ? tb.uploads.unchanged : tb.uploads.patched);
  }
  if (whole) {
    tb.device_current = false;  // until the copy below is enqueued
    std::size_t total = 0;
    for (int i = 0; i < 4; ++i) {
      tb.region_offset[i] = total;
      tb.region_capacity[i] = (std::max<std::size_t>(2 * bytes[i], 1024) + 15) / 16 * 16;  // room to grow
      total += tb.region_capacity[i];
    }
    if (tb.device.bytes() < total) tb.device = DeviceBuffer(total, stream);
    const int slot = tb.slot;
    tb.slot ^= 1;
    tb.staged[slot].wait();  // the copy that last read this buffer has run
    if (tb.pinned[slot].bytes() < total) tb.pinned[slot] = PinnedBuffer(total);
    auto* staging = static_cast<std::uint8_t*>(tb.pinned[slot].data());
    const void* from[4] = {tb.sequences.data(), tb.key_blocks.data(), tb.value_blocks.data(), tb.tiles.data()};
    for (int i = 0; i < 4; ++i)
      if (bytes[i] > 0) std::memcpy(staging + tb.region_offset[i], from[i], bytes[i]);
    copy_to_device(tb.device.data(), staging, tb.region_offset[3] + bytes[3], stream);  // the gaps go up unused
    tb.staged[slot].record(stream);
    tb.device_current = true;
    ++tb.uploads.whole;
  }
  auto* base = tb.device.as<std::uint8_t>();
  p.sequences = reinterpret_cast<const at::SequenceEntry*>(base + tb.region_offset[0]);
  p.key_blocks = reinterpret_cast<const at::BlockEntry*>(base + tb.region_offset[1]);
  p.value_blocks = reinterpret_cast<const at::BlockEntry*>(base + tb.region_offset[2]);
  p.tiles = reinterpret_cast<const at::TileEntry*>(base + tb.region_offset[3]);
}

}  // namespace
#endif

DecodeAttention::DecodeAttention(const std::vector<const LayerCache*>& caches, const Execution& ex, int splits,
                                 FastKernel fast, bool side_stream, std::int64_t query_tokens, std::int64_t query_head_groups)
    : ex_(ex), requested_splits_(splits), fast_(fast), side_stream_(side_stream), tables_(std::make_unique<Tables>()) {
  VIDKV_REQUIRE(splits >= 0, ShapeError, "decode attention: splits must be >= 0, got ", splits);
  update(caches, query_tokens, query_head_groups);
}

void DecodeAttention::update(const std::vector<const LayerCache*>& caches, std::int64_t query_tokens,
                             std::int64_t query_head_groups) {
  // A throw below leaves the tables half built: run() refuses until an update() completes, and the kept prefixes
  // are dropped (the next update builds afresh).
  usable_ = false;
  try {
    build(caches, query_tokens, query_head_groups);
  } catch (...) {
    tables_->prefixes.clear();
    tables_->regions_valid = false;   // the arrays may be half written: the next build lays them out anew
    tables_->built = false;
    tables_->device_current = false;  // held_* may not be what the device holds: the next upload is whole
    throw;
  }
  usable_ = true;
}

void DecodeAttention::build(const std::vector<const LayerCache*>& caches, std::int64_t query_tokens, std::int64_t head_groups) {
  VIDKV_REQUIRE(!caches.empty(), ShapeError, "decode attention: no caches (batch of 0 sequences)");
  VIDKV_REQUIRE(query_tokens >= 1 && query_tokens <= kMaxQueryTokens, ShapeError, "decode attention: ", query_tokens,
                " query tokens per sequence, expected 1 to ", kMaxQueryTokens);
  VIDKV_REQUIRE(head_groups >= 1, ShapeError, "decode attention: ", head_groups, " query head groups, expected at least 1");
  const LayerCache& first = *caches[0];
  const std::int64_t channels = first.channels();
  VIDKV_REQUIRE(channels <= kMaxHeadDim, NotSupportedError, "decode attention: head_dim ", channels, " above ", kMaxHeadDim);
  Tables& tb = *tables_;
  at::Problem& p = tb.problem;
  const af::SideFormat key_format = side_format_of(first.codec().key(), channels, false);
  const af::SideFormat value_format = side_format_of(first.codec().value(), channels, true);
  // The kept prefixes assume the formats and shapes of the last build.
  if (!tb.built || !same_format(key_format, p.key) || !same_format(value_format, p.value) || first.heads() != heads_ ||
      channels != channels_ || first.residual_storage() != p.residual_dtype) {
    tb.prefixes.clear();
    tb.regions_valid = false;
    tb.fast_wave = tb.generic_wave = -1;
  }
  // Another number of query rows per sequence: the regions' rows are other (sequence, query token) pairs, so what each
  // region holds (its prefix counts included) belongs to another row.
  if (query_tokens != tb.query_tokens || head_groups != tb.head_groups) tb.regions_valid = false;
  tb.query_tokens = query_tokens;
  tb.head_groups = head_groups;
  query_tokens_ = query_tokens;
  head_groups_ = head_groups;
  tb.built = true;
  caches_ = caches;
  heads_ = first.heads();
  channels_ = channels;
  cache_bytes_ = 0;
  p.key = key_format;
  p.value = value_format;
  p.batch = static_cast<std::int64_t>(caches.size()) * query_tokens * head_groups;  // the table rows
  p.heads = heads_;
  p.channels = channels_;
  p.residual_dtype = first.residual_storage();
  p.score_scale = static_cast<float>(1.4426950408889634074 / std::sqrt(static_cast<double>(channels_)));
  // The fragment kernel before the tensor-core one where the formats allow it (VIDKV_CUDA_FRAGMENT_ATTENTION=off:
  // the tensor-core kernel, for A / B measurements). Set before the tiles are sorted: it decides which are fast.
  p.fragment = fast_ == FastKernel::tensor_cores && ex_.on_cuda() && attention_fragment::formats_ok(p) &&
               fragment_kernel_enabled();
  p.tensor_cores = !p.fragment && fast_ == FastKernel::tensor_cores && ex_.on_cuda() && attention_tensor_core::formats_ok(p);
  // The last build's sequence array becomes held_sequences (what the device holds once it was uploaded); the storage
  // of the one before is reused for this build's. The tiles and blocks stay in place (regions).
  tb.held_sequences.swap(tb.sequences);
  tb.sequences.clear();
  tb.tile_changes.clear();
  tb.key_block_changes.clear();
  tb.value_block_changes.clear();
  const std::size_t batch = caches.size(), n = static_cast<std::size_t>(query_tokens), groups = static_cast<std::size_t>(head_groups);
  const std::size_t per_sequence = n * groups, query_rows = batch * per_sequence;  // table rows
  // The kernels' grids hold a row per block index in y or z (at most 65,535).
  VIDKV_REQUIRE((!ex_.on_cuda() && groups == 1) || query_rows <= 65535, NotSupportedError, "decode attention: ", batch, " sequences x ",
                query_tokens, " query tokens x ", head_groups, " query head groups = ", query_rows,
                " rows, above the kernels' 65,535");
  if (tb.regions.size() != query_rows) tb.regions_valid = false;
  tb.prefixes.resize(batch);
  tb.rows.resize(query_rows);
  std::int64_t max_fast = 0, max_generic = 0;
  // Problem::general_narrow_only: the fragment kernel's formats; vidkv's with exact keys only (the compact instance and
  // the tensor-core residual kernel read plain uniform keys in a fragment tile, kivi's, besides exact ones).
  const attention_fragment::FragmentFormats formats =
      p.fragment ? attention_fragment::fragment_formats(p) : attention_fragment::FragmentFormats::none;
  bool narrow_only = formats != attention_fragment::FragmentFormats::none && compact_general_enabled();
  const bool exact_keys_only = formats == attention_fragment::FragmentFormats::vidkv;
  // Pass 1: each sequence's kept prefix brought up to date, then each of its query rows' tiles into tb.rows (the
  // residual windows' tiles rebuilt every time: they change with each appended token), block indices local to the
  // sequence like the prefix's.
  for (std::size_t b = 0; b < batch; ++b) {
    const LayerCache& c = *caches[b];
    VIDKV_REQUIRE(c.execution().device == ex_.device, ShapeError, "decode attention: sequence ", b, "'s cache is on ",
                  c.execution().str(), ", the call on ", ex_.str());
    VIDKV_REQUIRE(c.heads() == heads_ && c.channels() == channels_, ShapeError, "decode attention: sequence ", b, " has ",
                  c.heads(), " KV heads x ", c.channels(), " channels, sequence 0 ", heads_, " x ", channels_);
    VIDKV_REQUIRE(c.tokens() > 0, ShapeError, "decode attention: sequence ", b, " holds no tokens");
    VIDKV_REQUIRE(c.tokens() >= query_tokens, ShapeError, "decode attention: sequence ", b, " holds ", c.tokens(),
                  " tokens, fewer than its ", query_tokens, " query tokens (each query token is one of the cache's tokens)");
    VIDKV_REQUIRE(c.residual_storage() == p.residual_dtype, ShapeError, "decode attention: sequence ", b,
                  " stores its residual as ", dtype_name(c.residual_storage()), ", sequence 0 as ", dtype_name(p.residual_dtype));
    const LayerCache::SideRef key = c.key_side(), value = c.value_side();
    VIDKV_REQUIRE(b == 0 || (same_format(side_format_of(*key.quantizer, channels_, false), p.key) &&
                             same_format(side_format_of(*value.quantizer, channels_, true), p.value)),
                  ShapeError, "decode attention: sequence ", b, " has another codec than sequence 0");
    check_blocks(key, "key", b);
    check_blocks(value, "value", b);
    SequencePrefix& sp = tb.prefixes[b];
    if (sp.cache != &c || sp.instance != c.instance_id()) {
      sp = SequencePrefix{};
      sp.cache = &c;
      sp.instance = c.instance_id();
    } else if (!extends(sp.key_refs, key.blocks) || !extends(sp.value_refs, value.blocks)) {
      cut_prefix(sp, key, value);
    }
    extend_prefix(sp, c, key, value, p);
    if (b == 0) p.general_narrow_dtype = key.full_dtype;  // every sequence's stores must have sequence 0's dtype
    const auto rsize = static_cast<std::size_t>(dtype_size(p.residual_dtype));
    for (std::size_t s = b * per_sequence; s < (b + 1) * per_sequence; ++s) {
      const std::size_t j = (s / groups) % n;  // every query head group of token j reads what j reads
      QueryRow& row = tb.rows[s];
      // Query token j sees tokens [0, T - n + 1 + j) (decode_attention.h); its groups after the first take the first's
      // tiles.
      const std::int64_t limit = c.tokens() - query_tokens + 1 + static_cast<std::int64_t>(j);
      if (s % groups == 0) query_row_tiles(sp, key, value, limit, p, row);
      else row = tb.rows[s - s % groups];
      if (narrow_only)
        narrow_only = key.full_dtype == p.general_narrow_dtype && narrow_residual_only(sp, row, key, value, exact_keys_only);
      const std::size_t fast = row.fast + row.fast_tail.size(), tiles = fast + row.general + row.general_tail.size();
      if (tb.regions_valid) {
        const Tables::SequenceRegions& r = tb.regions[s];
        if (tiles > r.tile_capacity || sp.key_blocks.size() > r.key_capacity || sp.value_blocks.size() > r.value_capacity)
          tb.regions_valid = false;
      }
      at::SequenceEntry e;  // tile_begin: pass 2
      e.tile_count = static_cast<std::int64_t>(tiles);
      e.fast_count = static_cast<std::int64_t>(fast);
      e.key_full = key.full;
      e.value_full = value.full;
      e.key_full_dtype = key.full_dtype;
      e.value_full_dtype = value.full_dtype;
      e.key_capacity = key.capacity;
      e.value_capacity = value.capacity;
      e.key_first = key.first;
      e.value_first = value.first;
      tb.sequences.push_back(e);
      max_fast = std::max(max_fast, e.fast_count);
      max_generic = std::max(max_generic, e.tile_count - e.fast_count);
      // The row reads the blocks that start before its limit (every block, unless the limit falls inside the quantized
      // prefix; a cut one in part) and the residual tokens before its limit.
      if (limit >= sp.stable) {
        cache_bytes_ += sp.block_bytes;
      } else {
        for (const LayerCache::SideRef* side : {&key, &value})
          for (const LayerCache::BlockRef& blk : side->blocks)
            if (blk.begin < limit) cache_bytes_ += blk.layout->bytes();
      }
      const std::int64_t exact = std::max<std::int64_t>(0, limit - key.quantized) + std::max<std::int64_t>(0, limit - value.quantized);
      cache_bytes_ += static_cast<std::size_t>(heads_ * channels_ * exact) * rsize;
    }
  }
  // Pass 2: each query row's blocks (its sequence's) and tiles into its regions (tiles: fast ones first
  // (tile_is_fast), each part in token order, the residual windows' last). Laid out anew -- every region with room
  // for an eighth more entries, and 64 tiles (about 2k tokens of decode steps) or 16 blocks (512 tokens of 32-token
  // value blocks) besides -- or, where the regions still fit, only each row's entries that changed.
  tb.relaid = !tb.regions_valid;
  if (tb.relaid) {
    tb.regions.assign(query_rows, Tables::SequenceRegions{});
    std::size_t tiles = 0, keys = 0, values = 0;
    for (std::size_t s = 0; s < query_rows; ++s) {
      Tables::SequenceRegions& r = tb.regions[s];
      const SequencePrefix& sp = tb.prefixes[s / per_sequence];
      const auto room = [](std::size_t count, std::size_t extra) { return count + count / 8 + extra; };
      r.tile_begin = tiles;
      r.tile_capacity = room(static_cast<std::size_t>(tb.sequences[s].tile_count), 64);
      tiles += r.tile_capacity;
      r.key_begin = keys;
      r.key_capacity = room(sp.key_blocks.size(), 16);
      keys += r.key_capacity;
      r.value_begin = values;
      r.value_capacity = room(sp.value_blocks.size(), 16);
      values += r.value_capacity;
    }
    tb.tiles.assign(tiles, at::TileEntry{});
    tb.key_blocks.assign(keys, at::BlockEntry{});  // tokens 0 between the regions' blocks
    tb.value_blocks.assign(values, at::BlockEntry{});
    tb.regions_valid = true;
  }
  // The blocks of one side of query row s into its region: entries that differ from what the region holds (and
  // entries it no longer uses, zeroed) are written, and their range recorded.
  const auto put_blocks = [&](std::size_t s, const std::vector<at::BlockEntry>& blocks, std::vector<at::BlockEntry>& array,
                              std::size_t begin, std::size_t& written, std::vector<std::pair<std::size_t, std::size_t>>& changes) {
    ChangedRange changed;
    for (std::size_t i = 0; i < std::max(blocks.size(), written); ++i) {
      at::BlockEntry e;  // zero past the sequence's blocks
      if (i < blocks.size()) {
        e = blocks[i];
        e.sequence = static_cast<std::int32_t>(s);
      }
      if (tb.relaid || !same_entry(array[begin + i], e)) {
        array[begin + i] = e;
        changed.add(i);
      }
    }
    written = blocks.size();
    changed.record(tb.relaid, begin, changes);
  };
  for (std::size_t s = 0; s < query_rows; ++s) {
    SequencePrefix& sp = tb.prefixes[s / per_sequence];
    const QueryRow& row = tb.rows[s];
    Tables::SequenceRegions& r = tb.regions[s];
    put_blocks(s, sp.key_blocks, tb.key_blocks, r.key_begin, r.keys, tb.key_block_changes);
    put_blocks(s, sp.value_blocks, tb.value_blocks, r.value_begin, r.values, tb.value_block_changes);
    const std::size_t nf = row.fast + row.fast_tail.size(), ng = row.general;
    // The prefix's tiles that stand in the region as they are: those of each part that the prefix still holds
    // unchanged (its clean counts), that the last build wrote there (prefix_*) and that this row reads. From the
    // first other entry on, every entry is compared (put() writes only those that differ): from the fast part's
    // first such tile where the fast part changed (a new or cut tile, a fast tail) or its length did (the general
    // tiles then move), else from the general part's.
    const std::size_t kept_fast = std::min({sp.clean_fast, r.prefix_fast, row.fast});
    std::size_t from = nf + std::min({sp.clean_general, r.prefix_general, row.general});
    if (tb.relaid) from = 0;
    else if (kept_fast < row.fast || !row.fast_tail.empty() || nf != r.fast) from = kept_fast;
    const auto key_base = static_cast<std::int32_t>(r.key_begin), value_base = static_cast<std::int32_t>(r.value_begin);
    // Entries from `from` on are written where they differ from what the region holds (most of a step's residual
    // tiles do not change), and the range of those that did is recorded.
    ChangedRange changed;
    const auto put = [&](std::size_t i, at::TileEntry t) {
      if (t.key_block >= 0) t.key_block += key_base;  // -1: the key residual
      if (t.value_block >= 0) t.value_block += value_base;
      t.sequence = static_cast<std::int32_t>(s);
      at::TileEntry& slot = tb.tiles[r.tile_begin + i];
      if (!tb.relaid && same_entry(slot, t)) return;
      slot = t;
      changed.add(i);
    };
    for (std::size_t i = from; i < row.fast; ++i) put(i, sp.fast[i]);
    for (std::size_t i = std::max(from, row.fast); i < nf; ++i) put(i, row.fast_tail[i - row.fast]);
    for (std::size_t i = std::max(from, nf); i < nf + ng; ++i) put(i, sp.general[i - nf]);
    for (std::size_t i = 0; i < row.general_tail.size(); ++i) put(nf + ng + i, row.general_tail[i]);
    changed.record(tb.relaid, r.tile_begin, tb.tile_changes);
    r.fast = nf;
    r.prefix_fast = row.fast;
    r.prefix_general = row.general;
    tb.sequences[s].tile_begin = static_cast<std::int64_t>(r.tile_begin);
  }
  // Every row's region holds the prefix's tiles it reads (prefix_fast / prefix_general say how many), and the
  // prefix's lists are clean again (cut_prefix lowers these counts where it drops tiles; the tiles extend_prefix adds
  // lie past them).
  for (SequencePrefix& sp : tb.prefixes) {
    sp.clean_fast = sp.fast.size();
    sp.clean_general = sp.general.size();
  }
  p.key_block_count = static_cast<std::int64_t>(tb.key_blocks.size());
  p.general_narrow_only = narrow_only;
  p.general_tensor_cores = residual_tensor_cores_enabled() && attention_fragment::residual_tensor_core_formats(p);
  // splits given: both parts use it. 0: each kernel gets one full wave of blocks on the GPU (as many as it holds at
  // once, by its registers and shared memory; rounded down so that no second, nearly empty wave follows: each block
  // then takes many tiles), at most one split per 4 tiles.
  std::int64_t want_fast = 1, want_generic = 1;
#ifdef VIDKV_WITH_CUDA
  if (requested_splits_ == 0 && ex_.on_cuda()) {
    if (tb.fast_wave < 0) {  // occupancy queries: once per formats, not per decode step
      const std::int64_t sms = cuda_kernels::multiprocessors();
      tb.fast_wave = attention_cuda::fast_blocks_per_sm(p) * sms;
      tb.generic_wave = attention_cuda::generic_blocks_per_sm(p) * sms;
    }
    const std::int64_t rows = p.batch * heads_;
    want_fast = std::max<std::int64_t>(1, tb.fast_wave / rows);
    want_generic = std::max<std::int64_t>(1, tb.generic_wave / rows);
  }
#endif
  auto parts = [&](std::int64_t tiles, std::int64_t want) -> int {
    if (tiles == 0) return 0;
    return static_cast<int>(requested_splits_ > 0 ? requested_splits_
                                                  : std::max<std::int64_t>(1, std::min<std::int64_t>(want, (tiles + 3) / 4)));
  };
  p.splits = parts(max_fast, want_fast);
  p.generic_splits = parts(max_generic, want_generic);
#ifdef VIDKV_WITH_CUDA
  // The general kernel's tiles (the residual window's) are few and its time a fixed latency, tens of us at every
  // batch: run it beside the fast kernel when its blocks take at most 1/16 of the fast kernel's wave, which then
  // leaves room for them (a full wave plus any other block would leave a second, nearly empty wave). Above that
  // (batch 8 and more: a block per sequence and KV head) the wave would lose more than the full general kernel's
  // latency hides; its compact instance is short enough to run beside with one split (general_beside_one_split).
  // Between the two (8-12 rows at 4 KV heads: batches of 2-3, or query rows of several tokens), the compact instance
  // runs beside with as many splits as keep the 1/16 rule when that is 2 or more (general_beside_fewer).
  // Beside on one stream where the GPU allows it (attention_cuda::general_beside_on_one_stream: no events, so also
  // for the live cache, whose side_stream is false), else on the side stream where side_stream allows it.
  tb.beside = false;
  const bool can_beside = ex_.on_cuda() && (side_stream_ || attention_cuda::general_beside_on_one_stream());
  if (requested_splits_ == 0 && can_beside && p.splits > 0 && p.generic_splits > 0) {
    const std::int64_t rows = p.batch * heads_, generic_blocks = p.generic_splits * rows;
    const bool fits = 16 * generic_blocks <= tb.fast_wave || (general_beside_always() && 2 * generic_blocks <= tb.fast_wave);
    const std::int64_t fitting = tb.fast_wave / (16 * rows);  // splits per row that keep the 1/16 rule
    const bool fewer = !fits && fitting >= 2 && general_beside_fewer(p.general_narrow_only);
    const bool one_split = !fits && !fewer && general_beside_one_split(p.general_narrow_only) && 8 * rows <= tb.fast_wave;
    if (fits || fewer || one_split) {
      tb.beside = true;
      if (fewer) p.generic_splits = static_cast<int>(fitting);
      if (one_split) p.generic_splits = 1;
      p.splits = parts(max_fast, std::max<std::int64_t>(1, (tb.fast_wave - p.generic_splits * rows) / rows));
    }
  }
#endif
  splits_ = p.splits + p.generic_splits;
  p.sequences = tb.sequences.data();
  p.key_blocks = tb.key_blocks.data();
  p.value_blocks = tb.value_blocks.data();
  p.tiles = tb.tiles.data();
  plan_patch(tb);
  if (!ex_.on_cuda()) return;
#ifdef VIDKV_WITH_CUDA
  upload_tables(tb, ex_.cuda_stream);
#endif
}

DecodeAttention::~DecodeAttention() = default;

std::int64_t DecodeAttention::tiles() const {
  std::int64_t n = 0;
  for (const auto& s : tables_->sequences) n += s.tile_count;
  return n;
}
bool DecodeAttention::tensor_cores() const { return tables_->problem.tensor_cores; }
bool DecodeAttention::fragment() const { return tables_->problem.fragment; }
bool DecodeAttention::general_compact() const { return tables_->problem.general_narrow_only; }
bool DecodeAttention::general_tensor_cores() const { return tables_->problem.general_tensor_cores; }
DecodeAttention::GeneralKernel DecodeAttention::general_kernel() const {
#ifdef VIDKV_WITH_CUDA
  if (tables_->beside) return attention_cuda::general_beside_on_one_stream() ? GeneralKernel::one_stream : GeneralKernel::side_stream;
#endif
  return GeneralKernel::after;
}

bool DecodeAttention::same_tables(const DecodeAttention& other) const {
  const Tables &a = *tables_, &b = *other.tables_;
  // Each sequence's entry, tiles and blocks, wherever their regions start (tiles' block indices taken from their
  // regions' starts).
  if (a.sequences.size() != b.sequences.size() || a.regions.size() != b.regions.size()) return false;
  for (std::size_t i = 0; i < a.sequences.size(); ++i) {
    at::SequenceEntry u = a.sequences[i], v = b.sequences[i];
    u.tile_begin = v.tile_begin = 0;
    if (!same_entry(u, v)) return false;
    const auto tiles = [](const Tables& t, std::size_t s) {
      const Tables::SequenceRegions& r = t.regions[s];
      std::vector<at::TileEntry> out;
      for (std::int64_t k = 0; k < t.sequences[s].tile_count; ++k) {
        at::TileEntry e = t.tiles[r.tile_begin + static_cast<std::size_t>(k)];
        if (e.key_block >= 0) e.key_block -= static_cast<std::int32_t>(r.key_begin);
        if (e.value_block >= 0) e.value_block -= static_cast<std::int32_t>(r.value_begin);
        out.push_back(e);
      }
      return out;
    };
    const auto blocks = [](const std::vector<at::BlockEntry>& array, std::size_t begin, std::size_t n) {
      return std::vector<at::BlockEntry>(array.begin() + static_cast<std::ptrdiff_t>(begin),
                                         array.begin() + static_cast<std::ptrdiff_t>(begin + n));
    };
    const Tables::SequenceRegions &ra = a.regions[i], &rb = b.regions[i];
    if (!same_entries(tiles(a, i), tiles(b, i)) ||
        !same_entries(blocks(a.key_blocks, ra.key_begin, ra.keys), blocks(b.key_blocks, rb.key_begin, rb.keys)) ||
        !same_entries(blocks(a.value_blocks, ra.value_begin, ra.values), blocks(b.value_blocks, rb.value_begin, rb.values)))
      return false;
  }
  return a.problem.splits == b.problem.splits && a.problem.generic_splits == b.problem.generic_splits &&
         a.problem.tensor_cores == b.problem.tensor_cores &&
         a.problem.fragment == b.problem.fragment && a.problem.general_narrow_only == b.problem.general_narrow_only &&
         a.problem.general_tensor_cores == b.problem.general_tensor_cores &&
         cache_bytes_ == other.cache_bytes_;
}

DecodeAttention::Uploads DecodeAttention::uploads() const { return tables_->uploads; }

DecodeAttention::TableChange DecodeAttention::last_change() const {
  const TablePatch& patch = tables_->patch;
  TableChange c;
  c.whole = !patch.fits;
  if (!c.whole) {
    c.bytes = patch.bytes;
    c.launches = static_cast<int>(patch.launches.size());
  }
  return c;
}

std::int64_t DecodeAttention::fast_tiles() const {
  std::int64_t n = 0;
  for (const auto& s : tables_->sequences) n += s.fast_count;
  return n;
}

std::int64_t DecodeAttention::table_head_groups(const TensorView& queries, std::int64_t kv_heads, std::int64_t query_rows) {
  if (queries.device != Device::cuda || queries.rank() < 2 || kv_heads < 1) return 1;
  const std::int64_t q_heads = queries.shape[queries.shape.size() - 2];
  if (q_heads % kv_heads != 0 || q_heads / kv_heads <= kMaxQueryHeadsPerKv) return 1;
  const auto groups = static_cast<std::int64_t>(query_head_groups(q_heads / kv_heads).size());
  return query_rows * groups <= 65535 ? groups : 1;
}

std::int64_t DecodeAttention::check_head_groups(std::int64_t qpk) const {
  const auto G = static_cast<std::int64_t>(query_head_groups(qpk).size());
  VIDKV_REQUIRE(head_groups_ == 1 || head_groups_ == G, ShapeError, "decode attention: the tables hold ", head_groups_,
                " query head groups per query row (update()), the queries' ", qpk, " query heads per KV head make ", G);
  return G;
}

std::vector<DecodeAttention::QueryHeadGroup> DecodeAttention::query_head_groups(std::int64_t qpk) {
  VIDKV_REQUIRE(qpk >= 1, ShapeError, "decode attention: ", qpk, " query heads per KV head, expected at least 1");
  const std::int64_t groups = (qpk + kMaxQueryHeadsPerKv - 1) / kMaxQueryHeadsPerKv, base = qpk / groups, larger = qpk % groups;
  std::vector<QueryHeadGroup> out;
  std::int64_t first = 0;
  for (std::int64_t g = 0; g < groups; ++g) {  // the first qpk % groups groups take one head more
    const std::int64_t count = base + (g < larger ? 1 : 0);
    out.push_back({first, count});
    first += count;
  }
  return out;
}

void DecodeAttention::run_head_groups(const TensorView& queries, const TensorView& out, std::int64_t qpk, bool emulated) const {
  const std::vector<QueryHeadGroup> groups = query_head_groups(qpk);
  const auto G = static_cast<std::int64_t>(groups.size());  // the callers checked it against head_groups_
  // One run over G rows per query row (each of `width` heads per KV head: the largest group's), or one run per group
  // on the query rows (width: that group's count).
  const bool one_run = head_groups_ == G;
  const std::int64_t width = one_run ? groups[0].count : 0;  // groups[0] is a largest one (query_head_groups)
  const std::int64_t query_rows = this->query_rows();
  const auto d = static_cast<std::size_t>(channels_);
  const auto qs = static_cast<std::size_t>(dtype_size(queries.dtype)), os = static_cast<std::size_t>(dtype_size(out.dtype));
  // Staged heads: one run's G * width per KV head and query row, or one group's (at most 8).
  const std::size_t heads = static_cast<std::size_t>(query_rows * heads_) *
                            static_cast<std::size_t>(one_run ? G * width : kMaxQueryHeadsPerKv);
  const std::size_t q_bytes = (heads * d * qs + 15) / 16 * 16, o_bytes = heads * d * os;
  std::vector<std::uint8_t> host;
  std::uint8_t* staging = nullptr;
  bool zero_padding = false;  // the staged queries' padding heads must be zeroed (cuda: once per layout)
  if (emulated) {
    host.assign(q_bytes + o_bytes, 0);
    staging = host.data();
  } else {
#ifdef VIDKV_WITH_CUDA
    DeviceBuffer& io = tables_->head_group_io;  // kept between runs, like the workspace (stream-ordered reuse)
    if (io.bytes() < q_bytes + o_bytes) {
      io = DeviceBuffer(q_bytes + o_bytes, ex_.cuda_stream);
      tables_->head_group_layout = {};
    }
    staging = io.as<std::uint8_t>();
    std::array<std::int64_t, 4> layout{};
    if (one_run) layout = {query_rows * heads_, channels_, static_cast<std::int64_t>(qs), qpk};
    if (one_run && G * width != qpk && tables_->head_group_layout != layout) zero_padding = true;
    tables_->head_group_layout = layout;
#endif
  }
  // The copies of one direction as copy_rows_batch takes them, over `rows` "heads" of the buffers: one run's over the
  // query rows (each of qpk * heads_ heads of D in queries / out, G * width * heads_ in the staging), a group's run's
  // over query rows x KV heads (qpk heads of D, count in the staging); on cuda as few row-copy launches as the copies
  // need (16 per launch), which cost a host-bound decode step less than cudaMemcpy2DAsync calls (row_copy.h). A
  // run's first kernel is a plain launch (the query transform, the general kernel or the fast one), so it starts
  // after the gather has completed, and the scatter (plain too) after the run's combine kernel.
  struct HeadCopy {
    void* dst;
    std::int64_t dst_heads, to;
    const void* src;
    std::int64_t src_heads, from, count;
  };
  const auto copy_heads = [&](const std::vector<HeadCopy>& copies, std::int64_t rows, DType dtype) {
    const auto es = static_cast<std::size_t>(dtype_size(dtype));
    if (emulated) {
      for (const HeadCopy& c : copies)
        for (std::int64_t r = 0; r < rows; ++r)
          std::memcpy(static_cast<std::uint8_t*>(c.dst) + static_cast<std::size_t>(r * c.dst_heads + c.to) * d * es,
                      static_cast<const std::uint8_t*>(c.src) + static_cast<std::size_t>(r * c.src_heads + c.from) * d * es,
                      static_cast<std::size_t>(c.count) * d * es);
    } else {
#ifdef VIDKV_WITH_CUDA
      std::vector<row_copy_cuda::RowCopy> rc;
      rc.reserve(copies.size());
      for (const HeadCopy& c : copies)
        rc.push_back({{c.dst, dtype, c.dst_heads}, c.to, {const_cast<void*>(c.src), dtype, c.src_heads}, c.from, c.count, DType::f32});
      row_copy_cuda::copy_rows_batch(rc.data(), rc.size(), rows, channels_, ex_.cuda_stream);
#endif
    }
  };
  const std::int64_t all = qpk * heads_;
  if (one_run) {
    // Staged row (query row r, group g): [heads_, width] heads, KV head h's at h * width, the group's count first (a
    // smaller group's last head stays zero); its output rows likewise.
    if (zero_padding) {
#ifdef VIDKV_WITH_CUDA
      fill_device(staging, 0, q_bytes, ex_.cuda_stream);
#endif
    }
    const std::int64_t staged = G * width * heads_;
    std::vector<HeadCopy> gather, scatter;
    for (std::int64_t g = 0; g < G; ++g)
      for (std::int64_t h = 0; h < heads_; ++h) {
        const QueryHeadGroup& grp = groups[static_cast<std::size_t>(g)];
        const std::int64_t at = (g * heads_ + h) * width, from = h * qpk + grp.first;
        gather.push_back({staging, staged, at, queries.data, all, from, grp.count});
        scatter.push_back({out.data, all, from, staging + q_bytes, staged, at, grp.count});
      }
    copy_heads(gather, query_rows, queries.dtype);
    run_rows(staging, queries.dtype, staging + q_bytes, out.dtype, width, emulated);
    copy_heads(scatter, query_rows, out.dtype);
    return;
  }
  for (const QueryHeadGroup& g : groups) {
    // A group's heads of every (query row, KV head): [query rows, heads_ * count, D], one copy each way.
    copy_heads({{staging, g.count, 0, queries.data, qpk, g.first, g.count}}, query_rows * heads_, queries.dtype);
    run_rows(staging, queries.dtype, staging + q_bytes, out.dtype, g.count, emulated);
    copy_heads({{out.data, qpk, g.first, staging + q_bytes, g.count, 0, g.count}}, query_rows * heads_, out.dtype);
  }
}

void DecodeAttention::run(const TensorView& queries, const TensorView& out) const {
  VIDKV_REQUIRE(usable_, ShapeError, "decode attention: the last update() failed; update() the tables again before run()");
  const std::int64_t qpk = check_view(queries, "queries", ex_.device, batch(), query_tokens_, heads_, channels_);
  VIDKV_REQUIRE(check_view(out, "out", ex_.device, batch(), query_tokens_, heads_, channels_) == qpk, ShapeError,
                "decode attention: out ", out.shape_str(), " differs from queries ", queries.shape_str());
  check_head_groups(qpk);
  if (!ex_.on_cuda()) {
    // The reference, per query row (sequence b's query token j: row b * n + j of queries and out) and KV head, over
    // the row's causal limit, every query head at once (the tables' query head groups play no part).
    std::vector<float> q(static_cast<std::size_t>(qpk * channels_));
    for (std::int64_t s = 0; s < query_rows(); ++s) {
      const LayerCache& cache = *caches_[static_cast<std::size_t>(s / query_tokens_)];
      const std::int64_t limit = cache.tokens() - query_tokens_ + 1 + s % query_tokens_;
      for (std::int64_t h = 0; h < heads_; ++h) {
        for (std::int64_t i = 0; i < qpk * channels_; ++i)
          q[static_cast<std::size_t>(i)] = load_as_float(queries.data, queries.dtype,
                                                         static_cast<std::size_t>((s * heads_ * qpk + h * qpk) * channels_ + i));
        const std::vector<double> o = reference_decode_attention(cache, h, q.data(), qpk, limit);
        for (std::int64_t i = 0; i < qpk * channels_; ++i)
          store_from_float(out.data, out.dtype, static_cast<std::size_t>((s * heads_ * qpk + h * qpk) * channels_ + i),
                           static_cast<float>(o[static_cast<std::size_t>(i)]));
      }
    }
    return;
  }
  if (qpk > kMaxQueryHeadsPerKv || head_groups_ > 1) return run_head_groups(queries, out, qpk, false);
  run_rows(queries.data, queries.dtype, out.data, out.dtype, qpk, false);
}

void DecodeAttention::run_rows(const void* queries, DType query_dtype, void* out, DType out_dtype, std::int64_t qpk,
                               bool emulated) const {
  at::Problem p = tables_->problem;
  p.qpk = qpk;
  p.queries = queries;
  p.query_dtype = query_dtype;
  p.out = out;
  p.out_dtype = out_dtype;
  const std::size_t partials = static_cast<std::size_t>(table_rows() * heads_ * splits_ * qpk);  // both kinds of splits
  if (emulated) {
    std::vector<float> acc(partials * static_cast<std::size_t>(channels_)), ml(partials * 2);
    p.partial_acc = acc.data();
    p.partial_ml = ml.data();
    attention_emulation::run(p);
    return;
  }
#ifdef VIDKV_WITH_CUDA
  // One allocation (the accumulators, the transformed queries, then (max, sum) pairs: 16-byte aligned pieces).
  const std::size_t acc_floats = (partials * static_cast<std::size_t>(channels_) + 3) / 4 * 4;
  const std::size_t transformed_floats =
      af::needs_transform(p.key)
          ? static_cast<std::size_t>(p.key_block_count * heads_ * af::key_width(p.key, channels_) * kMaxQueryHeadsPerKv)
          : 0;
  DeviceBuffer& workspace = tables_->workspace;  // kept between runs: the earlier runs' kernels precede on the stream
  const std::size_t workspace_bytes = (acc_floats + transformed_floats + partials * 2) * sizeof(float);
  if (workspace.bytes() < workspace_bytes) workspace = DeviceBuffer(workspace_bytes + workspace_bytes / 2, ex_.cuda_stream);  // room to grow
  p.partial_acc = workspace.as<float>();
  p.transformed = transformed_floats ? workspace.as<float>() + acc_floats : nullptr;
  p.partial_ml = workspace.as<float>() + acc_floats + transformed_floats;
  Tables& tb = *tables_;
  const bool one_stream = tb.beside && attention_cuda::general_beside_on_one_stream();
  if (one_stream) {
    // Counters [2, rows] that the combine kernel returns to zero after each launch (attention_cuda::launch): zeroed
    // here when first allocated or grown, and after a launch that failed part way (its counts are unknown).
    const std::int64_t rows = table_rows() * heads_;
    if (tb.done_rows < rows) {
      tb.done_rows = 0;
      tb.generic_done = DeviceBuffer(static_cast<std::size_t>(2 * rows) * sizeof(std::uint32_t), ex_.cuda_stream);
      fill_device(tb.generic_done.data(), 0, static_cast<std::size_t>(2 * rows) * sizeof(std::uint32_t), ex_.cuda_stream);
      tb.done_rows = rows;
    }
    p.generic_done = tb.generic_done.as<std::uint32_t>();
    p.generic_target = static_cast<std::uint32_t>(p.generic_splits);
  } else if (tb.beside && !tb.side) {
    tb.side = std::make_unique<attention_cuda::SideStream>();
  }
  try {
    attention_cuda::launch(p, ex_.cuda_stream, tb.beside && !one_stream ? tb.side.get() : nullptr);
  } catch (...) {
    if (one_stream) tb.done_rows = 0;  // the counts of a launch that failed part way are unknown
    throw;
  }
#else
  VIDKV_THROW(NotSupportedError, "decode attention on cuda: this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
#endif
}

void DecodeAttention::run_emulated(const TensorView& queries, const TensorView& out) const {
  VIDKV_REQUIRE(usable_, ShapeError, "decode attention: the last update() failed; update() the tables again before run()");
  VIDKV_REQUIRE(!ex_.on_cuda(), NotSupportedError, "decode attention: the emulation reads host memory (cpu caches only)");
  const std::int64_t qpk = check_view(queries, "queries", ex_.device, batch(), query_tokens_, heads_, channels_);
  VIDKV_REQUIRE(check_view(out, "out", ex_.device, batch(), query_tokens_, heads_, channels_) == qpk, ShapeError,
                "decode attention: out ", out.shape_str(), " differs from queries ", queries.shape_str());
  check_head_groups(qpk);
  if (qpk > kMaxQueryHeadsPerKv || head_groups_ > 1) return run_head_groups(queries, out, qpk, true);
  run_rows(queries.data, queries.dtype, out.data, out.dtype, qpk, true);
}

void decode_attention(const std::vector<const LayerCache*>& caches, const TensorView& queries, const TensorView& out,
                      const Execution& ex, std::int64_t query_tokens) {
  // On cuda, the queries' query head groups as rows of one run (run() checks the shape; a malformed one gets its
  // error there).
  const std::int64_t groups =
      caches.empty() || caches[0] == nullptr
          ? 1
          : DecodeAttention::table_head_groups(queries, caches[0]->heads(), static_cast<std::int64_t>(caches.size()) * query_tokens);
  DecodeAttention(caches, ex, 0, DecodeAttention::FastKernel::tensor_cores, true, query_tokens, groups).run(queries, out);
}

}  // namespace vidkv
