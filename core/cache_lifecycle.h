// Cache lifecycles (algorithms.md section 5): which tokens of a layer are quantized when, and which stay in full
// precision. One implementation serves trace replay (replay_layer) and the live Hugging Face hook (LayerCache).
//
//  release: prefill quantizes [0, N - N mod G), keeps N mod G tokens full precision; decode appends to that
//           residual; when it reaches R, everything is dequantized, concatenated and re-quantized from scratch.
//  paper:   same prefill; when the residual reaches R, only the residual block is quantized and appended.
//  kivi:    keys quantize whole R-blocks (N - N mod R at prefill), append-only; values keep a FIFO window of the
//           last R tokens in full precision and quantize each token leaving it (the value quantizer should be
//           per-token for KIVI). With value_block B > 1 the values leave it B at a time: after every append the
//           tokens [0, q) are quantized, q the largest multiple of B with N - q >= R (0 while N <= R), in blocks of
//           B tokens (the prefill's [0, q) as one; several B-blocks leaving at once one block where the quantizer is
//           token-separable, below), so the window holds R to R + B - 1 tokens and every value block after the
//           prefill's is a multiple of B tokens starting at a multiple of B (B tokens after one-token appends); B = 1
//           is KIVI's released code. Where the value quantizer is token-separable (Quantizer::token_separable: uniform
//           along tokens, identity), each such one-token block is merged into the value block before it while that
//           block holds fewer than 32 tokens: the same bytes as encoding their tokens at once
//           (core/token_block_merge.h), so that a long generation leaves blocks of 32 tokens and one shorter tail,
//           not one block per token; several tokens leaving at once (a multi-token append) are then encoded as one
//           block, the same bytes (VIDKV_KIVI_VALUE_MERGE=off keeps every token apart, for A / B runs).
//
// Exact tokens: with ExactTokens::all (trace replay, the default) the cache keeps the exact input of every token,
// so that ctx.keys can expose the exact keys of every cached token to protectors (semantic_attention). With
// ExactTokens::residual (the live hook) it keeps only the tokens not yet quantized on that side -- the
// full-precision residual window -- and never reads the rest again once they are encoded: their rows stay in the
// store as dead rows until an append needs the room, which then moves the window's rows to the store's front (one
// copy per window's worth of decode steps instead of a reallocation and copy per step); the store grows to twice
// the rows it must take and at least 2 (R + 1), and one more than twice what the window needs (a prefill's) is
// cut to the window right away, so after single-token appends it holds at most 2 (R + 1) rows per side. ctx.keys
// is then never exposed (semantic_attention, the one protector reading it, needs recorded queries, which only
// trace replay has). The bytes encoded and materialized are the same under
// both policies for plugins that do not read ctx.keys.
//
// Devices: a LayerCache lives on the device of its Execution. On cpu (the default) it works on fp32 host memory
// through Quantizer::encode/decode, exactly as before the backend seam. On cuda every token it holds is in device
// memory: the exact inputs ([heads, capacity, channels] stored in the data dtype, in which they are exact; ctx.keys
// exposes the keys as fp32 device memory with keys.device = cuda),
// the packed blocks (DeviceBuffers, the same bytes as on the host for exact kernel tiers) and the residual;
// blocks are encoded and decoded through Quantizer::encode_view/decode_view on the Execution's stream, and
// materialize() writes into device buffers. Nothing waits for the stream except the calls that return host data
// (the host materialize(), key_block_bytes()). Token metadata, queries and embeddings in the TokenContext stay on
// the host.
#pragma once

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "vidkv/core/cuda/device_buffer_shelf.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/execution.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/packed_layout.h"
#include "vidkv/core/params.h"
#include "vidkv/core/token_context.h"

namespace vidkv {
namespace cache_device_rows {
struct DeviceRowCopy;  // core/cache_device_rows.h
}

enum class LifecycleType { release, paper, kivi };

// Which exact inputs a LayerCache keeps (see above): every token, or only the full-precision residual window.
enum class ExactTokens : std::uint8_t { all, residual };

// Bytes a LayerCache holds right now, in the memory of its device (allocations as requested from the allocator).
struct HeldBytes {
  std::size_t packed = 0;    // packed blocks of both sides
  std::size_t exact = 0;     // exact-token stores of both sides, at their capacity (the residual window and its slack)
  std::size_t total() const { return packed + exact; }
};

// Storage type of full-precision residual tokens. data (default): the dtype the K/V arrive in (the trace's dtype in
// replay, the model's in the live hook), so the residual holds them exactly; fp16 / bf16 / fp32: rounded to that
// type, and a finite value beyond its range is a ValueError naming layer, KV head, token and channel.
enum class ResidualDType : std::uint8_t { data, f16, bf16, f32 };

struct LifecycleParams {
  LifecycleType type = LifecycleType::paper;
  int group = 32;             // G: prefill quantizes a multiple of G tokens
  int residual = 128;         // R: full-precision residual length that triggers quantization
  int prefill_tokens = -1;    // replay: tokens treated as prefill; -1 = the whole trace (the rest are decode steps)
  int value_block = 1;        // B, kivi only: values leave the full-precision window B tokens at a time (see above)
  ResidualDType residual_dtype = ResidualDType::data;  // storage of full-precision tokens (counted in effective bits)

  // Replay of `tokens` tokens: how many are the prefill (prefill_tokens, -1 = all; at most tokens).
  std::int64_t replay_prefill(std::int64_t tokens) const {
    return prefill_tokens < 0 ? tokens : std::min<std::int64_t>(prefill_tokens, tokens);
  }
  // kivi: the value tokens [0, q) quantized once the cache holds `tokens` tokens: q the largest multiple of
  // value_block B with tokens - q >= R, 0 while tokens <= R (B = 1: tokens - R, KIVI's window of R).
  std::int64_t kivi_values_quantized(std::int64_t tokens) const {
    if (tokens <= residual) return 0;
    const std::int64_t leaving = tokens - residual;
    return leaving - leaving % value_block;
  }
  // The full-precision rows a side's window holds at most right after an append of one token, before it is
  // quantized: R + 1 (a kivi value window R + B).
  std::int64_t window_rows() const { return static_cast<std::int64_t>(residual) + (type == LifecycleType::kivi ? value_block : 1); }
  // Tokens of the one block per side that a prefill of `tokens` tokens quantizes (0: none; LayerCache's
  // maybe_quantize, algorithms.md section 5): kivi keys tokens - tokens % R and values kivi_values_quantized(tokens)
  // (tokens - R when more than R, rounded down to a multiple of value_block); paper and release tokens - tokens % G
  // of both sides.
  struct PrefillBlocks {
    std::int64_t key = 0, value = 0;
  };
  PrefillBlocks prefill_blocks(std::int64_t tokens) const {
    if (type == LifecycleType::kivi) return {tokens - tokens % residual, kivi_values_quantized(tokens)};
    const std::int64_t q = tokens - tokens % group;
    return {q, q};
  }

  // The storage dtype of residual tokens when the K/V arrive as `data_dtype`.
  DType residual_storage(DType data_dtype) const {
    switch (residual_dtype) {
      case ResidualDType::f16: return DType::f16;
      case ResidualDType::bf16: return DType::bf16;
      case ResidualDType::f32: return DType::f32;
      default: return data_dtype;
    }
  }

  template <class B>
  static void bind(B& b) {
    b.choice("type", &LifecycleParams::type,
             std::vector<std::pair<std::string, LifecycleType>>{{"release", LifecycleType::release}, {"paper", LifecycleType::paper}, {"kivi", LifecycleType::kivi}},
             "release: re-quantize all at R; paper: append quantized R-blocks (Algorithm 1); kivi: R-blocks for K, FIFO window for V");
    b.integer("group", &LifecycleParams::group, 1, 1 << 16, "tokens", "G: prefill quantizes N - N mod G tokens");
    b.integer("residual", &LifecycleParams::residual, 1, 1 << 20, "tokens", "R: full-precision residual length");
    b.integer("prefill_tokens", &LifecycleParams::prefill_tokens, -1, 1 << 30, "tokens",
              "tokens replayed as prefill; the rest are appended one decode step at a time; -1: all");
    b.integer("value_block", &LifecycleParams::value_block, 1, 1 << 16, "tokens",
              "type kivi only: values leave the full-precision window of R tokens in blocks of this many (the window "
              "holds R to R + value_block - 1 tokens); 1: one token per decode step, as KIVI's released code");
    b.choice("residual_dtype", &LifecycleParams::residual_dtype,
             std::vector<std::pair<std::string, ResidualDType>>{{"data", ResidualDType::data}, {"fp16", ResidualDType::f16},
                                                                {"bf16", ResidualDType::bf16}, {"fp32", ResidualDType::f32}},
             "storage type of full-precision residual tokens; data: the trace's or the model's own dtype");
  }
};

// The cache of one layer (all KV heads) under a codec and lifecycle, on the device of `ex` (see above). A cuda
// cache throws NotSupportedError at construction in a build without CUDA.
class LayerCache {
 public:
  // data_dtype: the dtype the K/V arrive in (trace or model dtype; their fp32 values are exact in it), which
  // residual_dtype data stores.
  // exact: which exact inputs to keep (ExactTokens above).
  LayerCache(const KvCodec& codec, const LifecycleParams& params, std::int64_t heads, std::int64_t channels,
             TokenContext ctx, DType data_dtype, const Execution& ex = Execution::cpu(),
             ExactTokens exact = ExactTokens::all);

  // Appends `tokens` tokens: key and value are [heads, tokens, channels] fp32 host memory (a cuda cache uploads
  // them). The first call is the prefill. On a cpu cache: throws ValueError when a value is not finite (nothing
  // appended), or when a token that stays full precision holds a finite value beyond the range of the residual
  // storage dtype (the message names layer, KV head, token, channel and lifecycle residual_dtype; the cache is then
  // unusable). A cuda cache does not scan its input for these (it would take a reduction and a synchronisation
  // per append); the quantizers' metadata saturates as on the cpu (uniform_format::stored_group).
  void append(const float* key, const float* value, std::int64_t tokens);
  // Appends the tokens [begin, end) of key and value, [heads, T, channels] views (fp32, fp16 or bf16; values kept
  // exactly as fp32) on the cache's device. The first call is the prefill. ShapeError for a view on another device
  // or of another head/channel count.
  void append(const TensorView& key, const TensorView& value, std::int64_t begin, std::int64_t end);
  // One append per cache (a batch's decode step in the live hook): caches[i]->append(keys[i], values[i], 0, t_i) for
  // every i, in order, with the same results and errors. Where all caches are on cuda with one stream, the same heads
  // and channels, and no cache named twice, every cache's rows go into its store by one launch per 8 caches
  // (row_copy_cuda: 16 copies per launch, two per cache), before the caches' encodes in batch order on that stream;
  // else one append after the other. cuda caches must be on the current device (Execution names no device: the
  // caller switches to it, as _vidkv.append_rows does). The views are checked first: a ShapeError names the cache's
  // index and appends nothing.
  static void append_batch(const std::vector<LayerCache*>& caches, const std::vector<TensorView>& keys,
                           const std::vector<TensorView>& values);
  // Current cache contents as the model would read them: [heads, tokens(), channels] fp32 (dequantized blocks
  // followed by full-precision tokens, rounded to residual_dtype), in host memory (a cuda cache copies them back
  // and waits for its stream).
  void materialize(std::vector<float>& key, std::vector<float>& value) const;
  // The same into views [heads, tokens(), channels] of fp32, fp16 or bf16 (rounded from the fp32 values) on the
  // cache's device; on cuda enqueued on the Execution's stream.
  void materialize(const TensorView& key, const TensorView& value) const;
  std::int64_t tokens() const { return tokens_; }
  const Execution& execution() const { return ex_; }
  // Packed bytes of the i-th key / value block, copied to the host (tests compare the devices' bytes).
  std::size_t key_block_count() const { return key_blocks_.size(); }
  std::size_t value_block_count() const { return value_blocks_.size(); }
  // cuda, kivi lifecycle: requests for the buffers of the one-token value encodes and merges (scratch rows, block,
  // merged block) served from the spare shelf, and those that allocated ({reuses, allocations}; tests).
  std::pair<std::size_t, std::size_t> buffer_reuse() const { return {shelf_.reuses(), shelf_.allocations()}; }
  std::vector<std::uint8_t> key_block_bytes(std::size_t i) const;
  std::vector<std::uint8_t> value_block_bytes(std::size_t i) const;
  // Everything stored right now: packed blocks and full-precision residual.
  PackedLayout key_layout() const;
  PackedLayout value_layout() const;
  // Times the whole cache was re-quantized (release lifecycle).
  int requantizations() const { return requantizations_; }
  // Tokens [0, n) of the key / value side live in packed blocks; the rest is the full-precision residual.
  std::int64_t key_quantized() const { return key_quantized_; }
  std::int64_t value_quantized() const { return value_quantized_; }

  // --- Copies, crop and serialisation (cache_lifecycle_state.cpp; the live hook's beam search, crop, pickle) ---
  // A copy of `other` bound to `codec` (equal to other's) and `ctx` (other's token metadata, copied by the caller):
  // the same blocks, residual and counters on the same device (cuda buffers copied device to device on ex's stream).
  LayerCache(const LayerCache& other, const KvCodec& codec, TokenContext ctx);
  // Drops the tokens [n, tokens()). Exact (nothing re-encoded) and only allowed when n lies in the full-precision
  // residual of both sides: max(key_quantized(), value_quantized()) <= n <= tokens(); otherwise a ValueError
  // naming both counts (the caller then rebuilds the cache from the materialized first n tokens).
  void crop(std::int64_t n);
  // Everything a restored cache needs: counters, the packed bytes of every block, and per side the exact rows the
  // cache holds, [heads, tokens - first, channels] fp32 of the tokens [first, tokens) (first = 0 under
  // ExactTokens::all, the side's quantized count under ExactTokens::residual). Host memory (a cuda cache copies its
  // buffers back).
  struct State {
    std::int64_t tokens = 0, key_quantized = 0, value_quantized = 0, key_first = 0, value_first = 0;
    int requantizations = 0;
    struct BlockBytes {
      std::int64_t begin = 0, end = 0;
      std::vector<std::uint8_t> bytes;
    };
    std::vector<BlockBytes> key_blocks, value_blocks;
    std::vector<float> key_rows, value_rows;
  };
  State state() const;
  // Replaces this (empty) cache's contents with `s` (as state() gave it, from a cache of the same codec, lifecycle,
  // heads and channels, on any device); each block's layout is recomputed by the codec and must match its byte
  // count (ShapeError otherwise).
  void restore(const State& s);
  // Bytes held now on the cache's device: packed blocks (at their buffers' sizes: on cuda a KIVI value tail block's
  // buffer has room for kValueTailTokens tokens) and the spare buffers kept for reuse, as `packed`; the exact-token
  // stores as `exact`.
  HeldBytes held_bytes() const;
  // Tokens whose exact inputs the cache keeps and reads, per side (all tokens under ExactTokens::all, the residual
  // window under ExactTokens::residual; dead rows of tokens already in blocks are not counted, held_bytes() counts
  // them).
  std::int64_t exact_key_tokens() const { return tokens_ - live_first(key_full_); }
  std::int64_t exact_value_tokens() const { return tokens_ - live_first(value_full_); }

  // Read-only access for fused decode attention (attention/decode_attention.h), which reads the packed bytes in
  // place. One side (K or V): its packed blocks in token order, covering [0, quantized) back to back (bytes in host
  // memory on a cpu cache, device memory on a cuda one; the pointers stay valid until the next append), and the
  // exact-input store `full`, [heads, capacity, channels] of `full_dtype` on the same device (fp32 on the host, the
  // data dtype on the device), whose row r holds token first + r; its tokens [quantized, tokens()) are the
  // full-precision residual (read rounded to residual_storage(), as materialize() does).
  struct BlockRef {
    std::int64_t begin = 0, end = 0;     // token range
    const std::uint8_t* bytes = nullptr; // layout->bytes() packed bytes
    const PackedLayout* layout = nullptr;
  };
  struct SideRef {
    const Quantizer* quantizer = nullptr;  // the codec's key or value quantizer
    std::vector<BlockRef> blocks;
    std::int64_t quantized = 0;
    const void* full = nullptr;
    DType full_dtype = DType::f32;
    std::int64_t capacity = 0, first = 0;
  };
  SideRef key_side() const;
  SideRef value_side() const;
  DType residual_storage() const { return residual_storage_; }
  const KvCodec& codec() const { return codec_; }
  // Unique per LayerCache object in the process, never reused (a copy gets its own): for callers that keep state
  // derived from a cache between calls (decode attention's tables) and must not mistake a new cache at a freed
  // one's address for it.
  std::uint64_t instance_id() const { return instance_; }
  std::int64_t heads() const { return heads_; }
  std::int64_t channels() const { return channels_; }
  const TokenContext& context() const { return ctx_; }

 private:
  struct Block {
    std::int64_t begin = 0, end = 0;  // token range
    std::vector<std::uint8_t> bytes;  // cpu
    DeviceBuffer device_bytes;        // cuda
    PackedLayout layout;
  };
  // Exact inputs of the tokens [first, tokens_) of one side, [heads, capacity, channels]: `host` fp32 on cpu,
  // `device` of `dtype` (the data dtype) on cuda; row r holds token first + r. Under ExactTokens::residual the rows
  // of tokens [first, live_first()) are dead (already in blocks, never read again) until an append moves the live
  // rows to the front (reserve_rows).
  struct FullTokens {
    std::vector<float> host;
    DeviceBuffer device;
    DType dtype = DType::f32;
    std::int64_t capacity = 0;
    std::int64_t first = 0;
  };
  // Encodes tokens [begin, end) of one side (K or V) as a new block; `full` holds that side's exact tokens,
  // `quantized` its count of tokens in blocks (== begin).
  void quantize_range(const Quantizer& q, const FullTokens& full, std::vector<Block>& blocks, std::int64_t& quantized,
                      std::int64_t begin, std::int64_t end);
  void quantize_key_range(std::int64_t begin, std::int64_t end);
  // cuda: the two halves of append(views): room in the exact-input stores and the copies of the views' tokens
  // [begin, end) into them (added to `copies`, not launched), then, once the copies are enqueued, the counters and
  // the quantization they trigger (`n` tokens, the prefill when the cache was empty before).
  void add_device_row_copies(const TensorView& key, const TensorView& value, std::int64_t begin, std::int64_t end,
                             std::vector<cache_device_rows::DeviceRowCopy>& copies);
  void finish_device_append(std::int64_t n);
  void quantize_value_range(std::int64_t begin, std::int64_t end);
  void maybe_quantize(bool prefill);
  // kivi: merges the last value block, one token just quantized, into the one before it when that one holds fewer
  // than kValueTailTokens tokens, the value quantizer is token-separable and the merged layout is the two blocks'
  // sections interleaved per head (see the top of the file).
  static constexpr std::int64_t kValueTailTokens = 32;  // one decode-attention tile
  void merge_value_tail();
  // ExactTokens::residual: the rows of tokens [first, quantized) of `full` are dead from now on; a store more than
  // twice what its live rows and the window (R + 1 rows) need is cut to the live rows at once (after a prefill).
  void drop_quantized(FullTokens& full, std::int64_t quantized);
  // First token of `full` whose row is read (the side's quantized count under ExactTokens::residual, else first).
  std::int64_t live_first(const FullTokens& full) const;
  void check_finite(const float* x, const char* side, std::int64_t tokens) const;
  void check_residual_range(const FullTokens& full, const char* side, std::int64_t begin) const;
  // Makes room in `full` (host or device store) for the rows of the tokens [live_first(full), end): nothing when
  // they fit from `first`; else the live rows move to row 0 of the same store when they take at most half of it,
  // or to a store of grown_capacity() rows (the dead rows are dropped either way, first = live_first).
  void reserve_rows(FullTokens& full, std::int64_t end);
  // The live rows to row 0 of `full`: in place when cap == full.capacity, else in a new store of cap rows; sets
  // first = live_first(full) and capacity = cap. Shared by reserve_rows and drop_quantized.
  void relocate_live_rows(FullTokens& full, std::int64_t cap);
  std::int64_t grown_capacity(const FullTokens& full, std::int64_t rows) const;
  // cuda: the pieces of quantize_*_range / maybe_quantize / materialize on device memory (cache_lifecycle.cpp).
  // The release lifecycle's re-encode: `data` ([heads, end - begin, channels] on the device) as a block of a new
  // buffer, encoded on ex_.
  Block encode_device_block(const Quantizer& q, const TensorView& data, std::int64_t begin, std::int64_t end,
                            const TokenContext& ctx);
  // A side's range prepared (rows dense, block buffer allocated: KIVI's one-token value blocks from shelf_; the exact
  // keys exposed, or those of `exposed`, the other side's range prepared before it), then encoded on `ex`;
  // quantize_range on cuda is the two.
  struct DeviceRange;
  DeviceRange prepare_device_range(const Quantizer& q, const FullTokens& full, const std::vector<Block>& blocks,
                                   std::int64_t begin, std::int64_t end, const DeviceRange* exposed = nullptr);
  void encode_device_range(const Quantizer& q, DeviceRange& r, std::vector<Block>& blocks, std::int64_t& quantized,
                           const Execution& ex);
  // Tokens [key_begin, key_end) of the keys and [value_begin, value_end) of the values as one block each. On cuda,
  // with both ranges non-empty, both are prepared before either is encoded and the values' encode is paired with
  // the keys' (KvCodec::pairs_values, Execution::after_independent_kernel); else quantize_key_range, then
  // quantize_value_range.
  void quantize_range_pair(std::int64_t key_begin, std::int64_t key_end, std::int64_t value_begin, std::int64_t value_end);
  void expose_device_keys(TokenContext& ctx, DeviceBuffer& keys) const;
  bool exposes_keys() const;
  // Plans the decodes of the side's blocks into `decodes` (in place where their rows are dense in `out`, else into
  // scratch allocated now and kept in `copies`) and adds the row copies that finish `out` (scratch rows and the
  // residual) to `copies`; materialize() then decodes both sides and makes the copies in one launch.
  struct DeviceRowCopies;
  struct DeviceDecode;
  void plan_side(const std::vector<Block>& blocks, const FullTokens& full, std::int64_t quantized, const TensorView& out,
                 DeviceRowCopies& copies, std::vector<DeviceDecode>& decodes) const;
  std::vector<std::uint8_t> block_bytes(const std::vector<Block>& blocks, std::size_t i, const char* side) const;
  SideRef side_ref(const Quantizer& q, const std::vector<Block>& blocks, std::int64_t quantized,
                   const FullTokens& full) const;

  const KvCodec& codec_;
  LifecycleParams params_;
  DType data_dtype_;
  DType residual_storage_;  // params_.residual_storage(data dtype)
  std::int64_t heads_, channels_;
  TokenContext ctx_;
  Execution ex_;
  ExactTokens exact_;
  std::int64_t tokens_ = 0;
  FullTokens key_full_, value_full_;  // exact inputs of the tokens [first, tokens_) of each side
  std::int64_t key_quantized_ = 0, value_quantized_ = 0;  // tokens [0, n) live in blocks
  std::vector<Block> key_blocks_, value_blocks_;
  // cuda: buffers of the one-token value encodes and merges of KIVI's lifecycle kept for reuse (merge_value_tail),
  // counted in held_bytes(). A copy starts with an empty shelf.
  DeviceBufferShelf shelf_;
  int requantizations_ = 0;
  static std::uint64_t next_instance_id();
  std::uint64_t instance_ = next_instance_id();
};

// Replays one layer of a trace: the first prefill_tokens tokens as prefill, the rest as decode steps.
struct ReplayedLayer {
  std::vector<float> key, value;  // reconstruction, [heads, tokens, channels] (host; empty from replay_layer_device)
  PackedLayout key_layout, value_layout;
  int requantizations = 0;
};
ReplayedLayer replay_layer(const KvCodec& codec, const LifecycleParams& params, const float* key, const float* value,
                           const BlockShape& shape, const TokenContext& ctx, DType data_dtype);
// The same on the device of `ex`: key and value are [heads, T, channels] views on that device (fp32, fp16 or
// bf16), key_hat and value_hat fp32/fp16/bf16 views of the same shape on that device receive the reconstruction
// (enqueued on ex's stream; the returned layouts and counts are host data, known without waiting). On cpu it
// equals replay_layer (views converted to fp32). data_dtype: the dtype the K/V came in (the trace's), which
// residual_dtype data stores, whatever the views' dtype.
ReplayedLayer replay_layer(const KvCodec& codec, const LifecycleParams& params, const TensorView& key,
                           const TensorView& value, const TokenContext& ctx, const TensorView& key_hat,
                           const TensorView& value_hat, const Execution& ex, DType data_dtype);

}  // namespace vidkv
