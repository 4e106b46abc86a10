// Fused decode attention straight from the packed cache (issue 13, docs/decode-attention.md): for each sequence b
// of a batch (one LayerCache per sequence, all of one layer and one codec) and each query head qh of KV head
// h = qh / query_heads_per_kv (GQA: the query heads of one KV head share every read of its K/V),
//   out[b, qh, :] = softmax_t(q[b, qh, :] . K[b, h, t, :] / sqrt(D)) V[b, h, t, :],  t over all cached tokens,
// where K and V are the cache's contents as LayerCache::materialize() gives them (packed blocks decoded by the
// codec, full-precision residual rounded to the lifecycle's residual_dtype). Decode-time attention: with one query
// token per sequence there is no mask (every cached token precedes the query). With n query tokens per sequence (a
// step that appended n tokens to each cache: assisted decoding's candidates, a chunk of teacher-forced tokens), the
// causal mask of those n tokens among themselves: query token j (0-based) of a sequence holding T tokens attends to
// tokens [0, T - n + j] (the standard causal mask of a decoder with a KV cache), i.e. t runs over T - n + 1 + j tokens.
//
// On cuda the packed bytes are read in place, never written out as full-precision K/V: online softmax in fp32,
// split-K over the tokens with a combine kernel (decode_attention.cu). On cpu the result is the reference
// (decode_attention_reference.h). Formats: attention/decode_attention_format.h.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/execution.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/attention/decode_attention_format.h"

namespace vidkv {

// Which side of the cache a quantizer encodes: keys may use sign FFTs (the query is transformed), values may use
// mixed_token (a token mask per block); not the other way round.
enum class KvSide { key, value };

// The format of a side's quantizer as decode attention reads it. Throws NotSupportedError naming the plugin (and
// the option) for a quantizer it cannot read in place on that side (sign with an FFT on values, mixed_token on keys,
// a plugin without an in-place read).
attention_format::SideFormat side_format(const Quantizer& q, std::int64_t channels, KvSide side);
// Whether side_format() accepts q on that side; `why` gets the reason when not.
bool decode_attention_supports(const Quantizer& q, std::int64_t channels, KvSide side, std::string* why = nullptr);

// The tables of one batch of caches in their current state (block pointers, tiles of <= 32 tokens that never cross a
// key or value block or the residual start). Built on the host; on cuda uploaded on the Execution's stream and
// valid until any cache of the batch is appended to (its block list and pointers change): then update() them. Build
// once per layer, update() once per decode step, run for every query of that step.
// Several query tokens per sequence (query_tokens n > 1): each (sequence b, query token j) is a row of the tables of
// its own, b * n + j (with G query head groups, below: G rows), whose tiles stop at its causal limit T - n + 1 + j (a
// tile crossing it is cut there: the fragment kernels read such a tile whole and mask the tokens past the limit, the
// others read the cut tile's tokens);
// its blocks are the sequence's. The kernels are the one-token kernels over
// these rows, so a step reads each sequence's packed bytes once per query token: n times the bytes of a one-token
// step (cache_bytes() counts them), no full-precision K or V written.
// More than kMaxQueryHeadsPerKv query heads per KV head (query_head_groups: G groups): built with query_head_groups G,
// the tables hold a row per (sequence b, query token j, group g), (b * n + j) * G + g, with (b, j)'s tiles and
// causal limit, so that one run of the kernels takes every group (each reading the cache: G times the bytes);
// built with 1, run() runs the kernels once per group on the same rows.
class DecodeAttention {
 public:
  // caches: one per sequence, all on ex's device, same heads, channels and codec formats, each with >= 1 token
  // (>= query_tokens). query_tokens: 1 to kMaxQueryTokens query tokens per sequence (run()'s queries), each with the
  // causal limit above.
  // ShapeError / NotSupportedError otherwise, naming the sequence. splits: split-K parts per (sequence, KV head) of
  // each kind of tile (fast and general, decode_attention_tables.h); 0 gives each kernel one full wave of the blocks
  // the GPU holds at once (its occupancy), at most one split per 4 tiles.
  // fast: which kernel takes the fast tiles on cuda. tensor_cores: the fragment kernel (fp16 MMAs on the codes of
  // uniform's layout fragment, decode_attention_fragment.h) where its formats allow (attention_fragment::formats_ok:
  // kivi-2-fragment), else the tensor-core kernel (bf16 MMAs on the integer codes, decode_attention_tensor_core.h)
  // where its formats allow (attention_tensor_core::formats_ok), else the fast kernel; cuda_cores: the fast kernel
  // (fp32 FMAs on the decoded elements). fragment() / tensor_cores() say which ran (their tolerances differ).
  // side_stream: whether run() may put the general kernel on a second stream beside the fast one (splits 0, small
  // batches; see run()): 2-4% less GPU time at batch 1, for two event records and two stream waits of host time per
  // run. The live cache passes false: its decode step is bound by the host, where those four calls per layer cost
  // more than the overlap saves (docs/performance.md section 8). The choice changes the fast kernel's splits, so
  // two objects give the same bits only with the same choice.
  enum class FastKernel { tensor_cores, cuda_cores };
  // query_head_groups: 1, or the number of query_head_groups(qpk) of the queries that run() will take (qpk above
  // kMaxQueryHeadsPerKv; table_head_groups): the rows above, one run of the kernels instead of one per group.
  // ShapeError below 1; NotSupportedError where the rows would pass 65,535.
  DecodeAttention(const std::vector<const LayerCache*>& caches, const Execution& ex, int splits = 0,
                  FastKernel fast = FastKernel::tensor_cores, bool side_stream = true, std::int64_t query_tokens = 1,
                  std::int64_t query_head_groups = 1);
  ~DecodeAttention();

  // Brings the tables to `caches` in their current state (the constructor's rules and errors; the batch may differ
  // from the last build's), typically after one appended token per sequence. The tiles of a sequence's quantized
  // prefix (tokens that both sides hold in blocks) are kept from the last build while it is the same cache object
  // (LayerCache::instance_id) whose earlier blocks are unchanged (token ranges and byte pointers; blocks added since
  // extend the kept tiles),
  // so a decode step builds only the tiles of its new blocks and the residual windows; the result equals a fresh
  // construction's tables entry for entry (same_tables). Each sequence's tiles have a region of their own with room to
  // grow (its blocks too), so a step rewrites only each sequence's changed tiles (its residual windows', mostly) and
  // blocks and moves no other sequence's. On cuda the device keeps the tables across updates: the entries that
  // changed (the sequence array from its first changed entry on, each sequence's changed blocks and tiles) go up as
  // the parameters of at most eight kernel launches of 3,840 bytes each (no memcpy, no event: the host time of a live
  // decode step; 1-5 KB per step at batch 8), else the whole tables through two pinned staging buffers used in turn (uploads()
  // counts both, last_change() says what the last update changed);
  // run()'s workspace is kept too: the live cache's per-step host cost (docs/decode-attention.md). The caches
  // must stay alive until the last run() enqueued after this call has been enqueued. On an error (the
  // constructor's) the object keeps nothing and run() refuses (ShapeError) until an update() succeeds.
  // query_tokens: as the constructor's, for the runs after this update (a change of it lays the tables out anew; with
  // the same count, each query row's region keeps the prefix tiles it holds, as with one token).
  // query_head_groups: as the constructor's (a change of it lays the tables out anew too).
  void update(const std::vector<const LayerCache*>& caches, std::int64_t query_tokens = 1,
              std::int64_t query_head_groups = 1);
  DecodeAttention(const DecodeAttention&) = delete;
  DecodeAttention& operator=(const DecodeAttention&) = delete;

  // queries: [batch, q_heads, D] (query_tokens() 1) or [batch, query_tokens(), q_heads, D] (fp32, fp16 or bf16,
  // contiguous) on the caches' device; out: the same shape, fp32/fp16/bf16. q_heads must be a multiple of the KV
  // heads (any ratio: above kMaxQueryHeadsPerKv query heads per KV head the kernels take them in query_head_groups,
  // as rows of one run or one run per group, head_groups()), D <= kMaxHeadDim. ShapeError otherwise, and where the
  // tables hold G > 1 query head groups per row (update()) but qpk gives another number of groups.
  // On cuda enqueued on ex's stream (no synchronisation; at small batches, where the general kernel's blocks take at
  // most 1/16 of the fast kernel's wave, that kernel runs on a second stream of the object's, forked from and joined
  // back into ex's, so that work enqueued on ex's stream after run() sees the whole output); on cpu computed at once
  // (the reference). Not for concurrent calls on one object (the kept workspace is shared).
  void run(const TensorView& queries, const TensorView& out) const;
  // cpu caches only: the general CUDA kernel's computation run on the host in the kernels' order (tiles, warps,
  // splits, online softmax in fp32, the same per-element reads; decode_attention_emulation.h), for the [cpu] tests
  // of the kernels' logic on machines without a GPU (the fast kernel's staged reads are checked code for code by
  // their own [cpu] test). Same views as run().
  void run_emulated(const TensorView& queries, const TensorView& out) const;

  std::int64_t batch() const { return static_cast<std::int64_t>(caches_.size()); }
  // Query tokens per sequence of the last update(), and the query rows: batch() * query_tokens().
  std::int64_t query_tokens() const { return query_tokens_; }
  std::int64_t query_rows() const { return batch() * query_tokens_; }
  // Query head groups per query row of the last update() (1 unless it asked for more), and the tables' rows:
  // query_rows() * head_groups().
  std::int64_t head_groups() const { return head_groups_; }
  std::int64_t table_rows() const { return query_rows() * head_groups_; }
  std::int64_t kv_heads() const { return heads_; }
  std::int64_t head_dim() const { return channels_; }
  // Split-K partials per (table row, KV head): the fast kernel's splits plus the general kernel's.
  int splits() const { return splits_; }
  // Tiles of the whole batch, and those on the fast path (decode_attention_tables.h tile_is_fast).
  std::int64_t tiles() const;
  std::int64_t fast_tiles() const;
  // Whether run() on cuda takes the fast tiles with the tensor-core kernel (its tolerance:
  // decode_attention_tolerance.h Arithmetic::tensor_cores).
  bool tensor_cores() const;
  // Whether run() on cuda takes the fast tiles with the fragment kernel instead (kivi-2-shaped caches in uniform's
  // layout fragment: decode_attention_fragment.h; its tolerance: Arithmetic::fragment). Its fast tiles are the whole
  // 32-token fragment tiles of both sides; the others go to the general kernel.
  bool fragment() const;
  // Whether run() on cuda takes the general tiles with the general kernel's compact instance (decode_attention_tables.h
  // Problem::general_narrow_only: with fragment(), every general tile a residual-window tile it reads; per tile the
  // full kernel's arithmetic, so the same outputs at the same splits; VIDKV_CUDA_ATTENTION_COMPACT=off never takes it).
  bool general_compact() const;
  // Whether, of general_compact()'s tiles, run() on cuda takes them with the residual tiles' tensor-core kernel instead
  // (decode_attention_fragment.cu fragment_residual_kernel: fp16 stores, head_dim 64 or 128; the fragment kernel's
  // arithmetic, within Arithmetic::fragment's tolerance like the rest of a fragment problem;
  // VIDKV_CUDA_ATTENTION_RESIDUAL=cuda_cores never takes it).
  bool general_tensor_cores() const;
  // Where run() on cuda puts the general kernel (the residual windows' tiles) as the last update() chose: after the
  // fast / tensor-core kernel, beside it on a second stream (side_stream), or beside it on the same stream (compute
  // capability 9.0 and newer: a programmatic dependent launch, no events, also with side_stream false). after on cpu
  // and without general tiles.
  enum class GeneralKernel { after, side_stream, one_stream };
  GeneralKernel general_kernel() const;
  // cuda: how the tables went up so far: whole (through pinned memory), patched (the changed entries as kernel
  // parameters) or unchanged (nothing to send). Always zero on cpu.
  struct Uploads {
    std::int64_t whole = 0, patched = 0, unchanged = 0;
  };
  Uploads uploads() const;
  // What the last update() (or the construction) changed in the tables, as the device copy receives it: whole (the
  // tiles laid out anew -- a construction, a batch of another size, a sequence outgrowing its tiles' room, changed
  // formats, a failed build -- or more changes than eight parameter-copy launches carry), else `bytes`
  // of changed entries in `launches` launches (0: nothing changed). Planned on the host, so on cpu too (tests); on
  // cuda an upload is also whole when an array outgrew its device region or the device copy is not current.
  struct TableChange {
    bool whole = true;
    std::size_t bytes = 0;
    int launches = 0;
  };
  TableChange last_change() const;
  // Packed bytes + residual bytes one run() reads from the cache (every block's bytes and the residual tokens at
  // their storage dtype, once per query token and query head group of the tables: each table row's blocks and the
  // residual tokens it sees), for bandwidth figures.
  std::size_t cache_bytes() const { return cache_bytes_; }
  // Whether the host copies of both objects' tables (sequences, blocks, tiles) and their splits are equal entry for
  // entry (the tests of update()).
  bool same_tables(const DecodeAttention& other) const;

  // Query heads per KV head that one run of the cuda kernels (and their emulation) takes: the 8 columns of their MMA
  // tiles (the fragment and tensor-core kernels' B operands) and the transformed query's rows.
  static constexpr std::int64_t kMaxQueryHeadsPerKv = 8;
  // The query heads of each KV head (GQA) in the groups that run() and run_emulated() give the kernels, one run each
  // over the whole cache: {first, count} per group. One group of qpk where qpk <= kMaxQueryHeadsPerKv; else
  // ceil(qpk / 8) groups whose sizes differ by at most one, in head order (9: 5 + 4; 12: 6 + 6; 16: 8 + 8; 20:
  // 7 + 7 + 6), so that 16 query heads per KV head read the packed cache twice. On cuda the groups' queries are
  // gathered into a kept staging buffer and the outputs scattered back by row-copy launches
  // (row_copy_cuda::copy_rows_batch): with tables of G rows per query row (query_head_groups G), every group at
  // once, as rows of ceil(qpk / G) heads (a smaller group's last head zero and its output dropped), one run; else
  // one run per group. The cpu reference takes every head at once. ShapeError for qpk < 1.
  struct QueryHeadGroup {
    std::int64_t first = 0, count = 0;
  };
  static std::vector<QueryHeadGroup> query_head_groups(std::int64_t qpk);
  // The query_head_groups to build tables with for `queries` (run()'s view, q_heads its second-to-last dimension)
  // over kv_heads KV heads and query_rows query rows: on cuda the number of query_head_groups(q_heads / kv_heads)
  // above kMaxQueryHeadsPerKv, unless the rows would pass the kernels' 65,535 (then 1: one run per group); 1 otherwise
  // (the cpu, whose reference reads no tables, and shapes that run() refuses).
  static std::int64_t table_head_groups(const TensorView& queries, std::int64_t kv_heads, std::int64_t query_rows);
  // "A few" query tokens per sequence: each is a row of the tables reading the whole cache again, so a step of n
  // tokens costs n one-token steps; past a few, dequantizing once and a dense attention reads fewer bytes.
  static constexpr std::int64_t kMaxQueryTokens = 8;
  static constexpr std::int64_t kMaxHeadDim = 256;
  static constexpr std::int64_t kTileTokens = 32;
  // Tiles touching a residual window (keys or values exact) hold at most this many tokens (a divisor of 32): a
  // warp's serial work per tile is what bounds the general kernel at batch 1, where these few tiles are all it
  // runs (decode_attention.cu: narrow tiles take 4 lanes per token for the scores).
  static constexpr std::int64_t kResidualTileTokens = 8;

  struct Tables;  // decode_attention.cpp (host copies) / device copies

 private:
  std::vector<const LayerCache*> caches_;
  Execution ex_;
  int requested_splits_ = 0;
  std::int64_t query_tokens_ = 1;
  std::int64_t head_groups_ = 1;
  FastKernel fast_ = FastKernel::tensor_cores;
  bool side_stream_ = true;
  std::int64_t heads_ = 0, channels_ = 0;
  int splits_ = 1;
  std::size_t cache_bytes_ = 0;
  std::unique_ptr<Tables> tables_;
  bool usable_ = false;  // the last update() completed
  void build(const std::vector<const LayerCache*>& caches, std::int64_t query_tokens, std::int64_t head_groups);
  // The kernels (cuda) or their emulation (cpu) over the tables' rows: queries and out [table_rows(), heads *
  // qpk, D] (qpk <= kMaxQueryHeadsPerKv), not checked here.
  void run_rows(const void* queries, DType query_dtype, void* out, DType out_dtype, std::int64_t qpk, bool emulated) const;
  // The number of query_head_groups(qpk); ShapeError where the tables hold head_groups() > 1 other than that.
  std::int64_t check_head_groups(std::int64_t qpk) const;
  // More than kMaxQueryHeadsPerKv query heads per KV head, through staging buffers of the groups' heads: one run_rows
  // over G rows per query row (head_groups() G), or one per group (head_groups() 1). The caller has passed
  // check_head_groups(qpk).
  void run_head_groups(const TensorView& queries, const TensorView& out, std::int64_t qpk, bool emulated) const;
};

// One-shot form: builds the tables and runs (the tables' upload is enqueued on ex's stream too). queries [batch,
// q_heads, D] or [batch, 1, q_heads, D] (one query token per sequence), or [batch, query_tokens, q_heads, D]
// (query_tokens > 1, causal among themselves).
// Above kMaxQueryHeadsPerKv query heads per KV head the tables are built with their query head groups (one run).
void decode_attention(const std::vector<const LayerCache*>& caches, const TensorView& queries, const TensorView& out,
                      const Execution& ex, std::int64_t query_tokens = 1);

}  // namespace vidkv
