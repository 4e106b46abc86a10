// Cache lifecycles (algorithms.md section 5); the contract is in cache_lifecycle.h.
//
// Token ranges, with N the prefill length, T the tokens so far, G = group, R = residual:
//   release  prefill: [0, N - N mod G) quantized as one block; decode: when T - quantized reaches R, the whole
//            cache as the model reads it (dequantized blocks + residual rounded to residual_dtype) is re-encoded
//            as one block [0, T) (fresh selection and scales) and requantizations() counts it.
//   paper    prefill as release; decode: each time T - quantized reaches R, [quantized, quantized + R) is encoded
//            as a new block (old blocks never change).
//   kivi     keys: prefill [0, N - N mod R) as one block, then R-blocks as in paper;
//            values: prefill [0, N - R) as one block when N > R; decode: each token leaving the window of the last
//            R tokens is encoded as a block of one token.
// Full-precision tokens are stored (and counted) as residual_dtype. While a block is encoded, ctx.keys exposes the
// exact keys of every cached token (for protectors such as semantic_attention), when the cache's local token i is
// trace token i; otherwise the caller's ctx.keys is passed through unchanged.
// On cuda the same steps run on device memory (row copies: core/cuda/row_copy.h), in the same order, so a
// quantizer whose CUDA tier is exact gives the host's bytes block for block.
#include "vidkv/core/cache_lifecycle.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "vidkv/core/cache_device_rows.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"
#include "vidkv/core/token_block_merge.h"

namespace vidkv {

namespace {

using cache_device_rows::copy_device_rows;
using cache_device_rows::copy_device_rows_batch;
using cache_device_rows::DeviceRowCopy;
using cache_device_rows::DeviceRows;
using cache_device_rows::merge_device_token_blocks;

std::size_t float_bytes(std::int64_t n) { return static_cast<std::size_t>(n) * sizeof(float); }

bool identity_mapping(const TokenContext& ctx, std::int64_t tokens) {
  if (ctx.index.empty()) return ctx.offset == 0;
  for (std::int64_t i = 0; i < tokens; ++i)
    if (ctx.trace_index(i) != i) return false;
  return true;
}

// Checks a [heads, T, channels] view handed to the cache on `device`; returns T.
std::int64_t check_view(const TensorView& v, Device device, std::int64_t heads, std::int64_t channels, const char* what) {
  VIDKV_REQUIRE(v.device == device, ShapeError, "layer cache: ", what, " is on ", device_name(v.device), " but the cache is on ",
                device_name(device));
  VIDKV_REQUIRE(v.rank() == 3 && v.shape[0] == heads && v.shape[2] == channels, ShapeError, "layer cache: ", what,
                " must be [", heads, ", tokens, ", channels, "], got ", v.shape_str());
  VIDKV_REQUIRE(v.data != nullptr || v.numel() == 0, ShapeError, "layer cache: ", what, " has null data");
  return v.shape[1];
}

// Host store: the exact rows of tokens [begin, end) (begin >= full.first) as one dense [heads, end - begin,
// channels] block: a pointer into the store when they already lie that way (one head, or the whole capacity),
// else a copy in `copy`. Same values either way.
template <class Full>
const float* host_rows(const Full& full, std::int64_t heads, std::int64_t channels, std::int64_t begin, std::int64_t end,
                       std::vector<float>& copy) {
  const std::int64_t cap = full.capacity, r0 = begin - full.first, n = end - begin;
  if (heads == 1 || (r0 == 0 && n == cap)) return full.host.data() + r0 * channels;
  copy.clear();
  copy.reserve(static_cast<std::size_t>(heads * n * channels));  // filled by the copies, not zeroed first
  for (std::int64_t h = 0; h < heads; ++h) {
    const float* src = full.host.data() + (h * cap + r0) * channels;
    copy.insert(copy.end(), src, src + n * channels);
  }
  return copy.data();
}

}  // namespace

std::uint64_t LayerCache::next_instance_id() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

LayerCache::LayerCache(const KvCodec& codec, const LifecycleParams& params, std::int64_t heads, std::int64_t channels,
                       TokenContext ctx, DType data_dtype, const Execution& ex, ExactTokens exact)
    : codec_(codec), params_(params), data_dtype_(data_dtype), residual_storage_(params.residual_storage(data_dtype)),
      heads_(heads), channels_(channels), ctx_(std::move(ctx)), ex_(ex.with_independence(false)), exact_(exact) {
  VIDKV_REQUIRE(heads > 0 && channels > 0, ShapeError, "layer cache: heads (", heads, ") and channels (", channels,
                ") must be positive");
  VIDKV_REQUIRE(params.group > 0 && params.residual > 0, ConfigError, "lifecycle: group (", params.group,
                ") and residual (", params.residual, ") must be positive");
  VIDKV_REQUIRE(params.value_block > 0, ConfigError, "lifecycle: value_block (", params.value_block, ") must be at least 1");
  VIDKV_REQUIRE(params.value_block == 1 || params.type == LifecycleType::kivi, ConfigError, "lifecycle: value_block (",
                params.value_block, ") applies to type kivi only (paper and release quantize the values in R-blocks)");
#ifndef VIDKV_WITH_CUDA
  VIDKV_REQUIRE(!ex.on_cuda(), NotSupportedError, "layer cache on cuda: this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
#endif
  // On cuda the exact rows are stored in the data dtype (exact in it by the constructor's contract).
  key_full_.dtype = value_full_.dtype = ex.on_cuda() ? data_dtype : DType::f32;
}

std::int64_t LayerCache::live_first(const FullTokens& full) const {
  if (exact_ != ExactTokens::residual) return full.first;
  return std::max(full.first, &full == &key_full_ ? key_quantized_ : value_quantized_);
}

// The capacity a store grows to when `rows` rows must fit and cannot be moved within it: an empty store takes the
// rows exactly (the prefill); under ExactTokens::residual twice the rows, and at least 2 W (W = window_rows(): R + 1,
// a kivi value window R + value_block), so that a window of W rows can later move to the front in place instead of
// growing again (a KIVI value window is W rows at an append); under ExactTokens::all doubling.
std::int64_t LayerCache::grown_capacity(const FullTokens& full, std::int64_t rows) const {
  if (full.capacity == 0) return rows;
  if (exact_ == ExactTokens::residual) return std::max(2 * rows, 2 * params_.window_rows());
  return std::max(rows, 2 * full.capacity);
}

// Room for the rows of tokens [live_first(full), end) (cache_lifecycle.h). When the live rows move within the store,
// its size bounds them: end - first > capacity and 2 (end - live) <= capacity give live - first > end - live >=
// tokens_ - live, so source and destination rows do not overlap.
void LayerCache::reserve_rows(FullTokens& full, std::int64_t end) {
  if (end - full.first <= full.capacity) return;
  const std::int64_t rows = end - live_first(full);
  relocate_live_rows(full, 2 * rows <= full.capacity ? full.capacity : grown_capacity(full, rows));
}

// The live rows to rows [0, tokens_ - live) of a store of `cap` rows: within the store when cap is its capacity (the
// callers ensure source and destination rows do not overlap), else in a new store of cap rows. On the device the
// move goes through the row-copy kernel (each element read and written once), not cudaMemcpy2DAsync, whose source
// and destination areas would interleave across heads (CUDA leaves overlapping 2D areas undefined even where no byte
// is shared).
void LayerCache::relocate_live_rows(FullTokens& full, std::int64_t cap) {
  const std::int64_t live = live_first(full), r0 = live - full.first, used = tokens_ - live;
  const bool in_place = cap == full.capacity;
  if (ex_.on_cuda()) {
    const DeviceRows store{full.device.data(), full.dtype, full.capacity};
    if (in_place) {
      copy_device_rows_batch({DeviceRowCopy{store, 0, store, r0, used, DType::f32}}, heads_, channels_, ex_.cuda_stream);
    } else {
      DeviceBuffer moved(static_cast<std::size_t>(heads_ * cap * channels_ * dtype_size(full.dtype)), ex_.cuda_stream);
      copy_device_rows({moved.data(), full.dtype, cap}, 0, store, r0, heads_, used, channels_, DType::f32, ex_.cuda_stream);
      full.device = std::move(moved);  // the old store is freed in stream order, after the copy
    }
  } else {
    std::vector<float> moved(in_place ? 0 : static_cast<std::size_t>(heads_ * cap * channels_));
    float* dst = in_place ? full.host.data() : moved.data();
    // An empty store has data() == nullptr, and memmove from a null pointer is undefined even for 0 bytes.
    for (std::int64_t h = 0; h < heads_ && used > 0; ++h)
      std::memmove(dst + h * cap * channels_, full.host.data() + (h * full.capacity + r0) * channels_, float_bytes(used * channels_));
    if (!in_place) full.host.swap(moved);
  }
  full.capacity = cap;
  full.first = live;
}

void LayerCache::append(const float* key, const float* value, std::int64_t tokens) {
  VIDKV_REQUIRE(tokens >= 0, ShapeError, "layer cache: cannot append ", tokens, " tokens");
  if (ex_.on_cuda()) {  // host data into a device cache: upload, then the device path
    const std::size_t bytes = float_bytes(heads_ * tokens * channels_);
    DeviceBuffer k(bytes, ex_.cuda_stream), v(bytes, ex_.cuda_stream);
    copy_to_device(k.data(), key, bytes, ex_.cuda_stream);
    copy_to_device(v.data(), value, bytes, ex_.cuda_stream);
    const std::vector<std::int64_t> shape{heads_, tokens, channels_};
    append(TensorView{k.data(), DType::f32, Device::cuda, shape}, TensorView{v.data(), DType::f32, Device::cuda, shape}, 0, tokens);
    return;
  }
  const bool prefill = tokens_ == 0;
  const std::int64_t old = tokens_;
  check_finite(key, "key", tokens);
  check_finite(value, "value", tokens);
  for (auto [full, src] : {std::pair<FullTokens*, const float*>{&key_full_, key}, {&value_full_, value}}) {
    if (full->capacity == 0) {
      // First rows into an empty store (first == old): capacity = tokens, so the store takes the input's layout as is.
      full->host.assign(src, src + heads_ * tokens * channels_);
      full->capacity = tokens;
      continue;
    }
    reserve_rows(*full, old + tokens);
    const std::int64_t row = old - full->first;
    for (std::int64_t h = 0; h < heads_; ++h)
      std::memcpy(full->host.data() + (h * full->capacity + row) * channels_, src + h * tokens * channels_,
                  float_bytes(tokens * channels_));
  }
  tokens_ += tokens;
  maybe_quantize(prefill);
  // The appended tokens that stay full precision must fit the residual storage type.
  check_residual_range(key_full_, "key", std::max(old, key_quantized_));
  check_residual_range(value_full_, "value", std::max(old, value_quantized_));
  drop_quantized(key_full_, key_quantized_);
  drop_quantized(value_full_, value_quantized_);
}

void LayerCache::check_finite(const float* x, const char* side, std::int64_t tokens) const {
  for (std::int64_t i = 0; i < heads_ * tokens * channels_; ++i) {
    if (std::isfinite(x[i])) continue;
    VIDKV_THROW(ValueError, "layer ", ctx_.layer, ", KV head ", i / (tokens * channels_), ", token ",
                tokens_ + i / channels_ % tokens, ", channel ", i % channels_, ": the ", side,
                " states hold a non-finite value (", x[i], "); the model or trace produced it before the cache");
  }
}

void LayerCache::check_residual_range(const FullTokens& full, const char* side, std::int64_t begin) const {
  const float limit = dtype_max_finite(residual_storage_);
  for (std::int64_t h = 0; h < heads_; ++h)
    for (std::int64_t t = begin; t < tokens_; ++t)
      for (std::int64_t c = 0; c < channels_; ++c) {
        const float v = full.host[static_cast<std::size_t>((h * full.capacity + t - full.first) * channels_ + c)];
        if (v >= -limit && v <= limit) continue;
        const float r = round_to_dtype(v, residual_storage_);
        if (r >= -limit && r <= limit) continue;  // just above the limit, rounds to it
        const char* dt = residual_storage_ == DType::f16 ? "fp16" : (residual_storage_ == DType::bf16 ? "bf16" : "fp32");
        // With residual_dtype data the storage is the data's own dtype: such a value cannot come from data of that
        // dtype, so the fix is the data (or the dtype the cache was built for), not the lifecycle.
        const bool own = params_.residual_dtype == ResidualDType::data;
        VIDKV_THROW(ValueError, "layer ", ctx_.layer, ", KV head ", h, ", token ", t, ", channel ", c, ": ", side, " value ",
                    v, " is beyond the range of the residual storage dtype ", dt, " (largest ", limit, "); ",
                    own ? "that is the cache's data dtype (residual_dtype: data), which no value of that data exceeds: "
                          "pass the model's or trace's own values, or build the cache for a wider dtype"
                        : "set lifecycle residual_dtype: data (the model's or trace's own dtype, the default) or fp32");
      }
}

void LayerCache::append(const TensorView& key, const TensorView& value, std::int64_t begin, std::int64_t end) {
  const std::int64_t t = check_view(key, ex_.device, heads_, channels_, "key");
  VIDKV_REQUIRE(check_view(value, ex_.device, heads_, channels_, "value") == t, ShapeError,
                "layer cache: key ", key.shape_str(), " and value ", value.shape_str(), " differ in tokens");
  VIDKV_REQUIRE(0 <= begin && begin <= end && end <= t, ShapeError, "layer cache: token range [", begin, ", ", end,
                ") outside the ", t, " tokens of the views");
  const std::int64_t n = end - begin;
  if (!ex_.on_cuda()) {  // dense fp32 rows, then the host path
    std::vector<float> k(static_cast<std::size_t>(heads_ * n * channels_)), v(k.size());
    for (std::int64_t h = 0; h < heads_; ++h)
      for (std::int64_t i = 0; i < n * channels_; ++i) {
        const auto src = static_cast<std::size_t>((h * t + begin) * channels_ + i);
        k[static_cast<std::size_t>(h * n * channels_ + i)] = load_as_float(key.data, key.dtype, src);
        v[static_cast<std::size_t>(h * n * channels_ + i)] = load_as_float(value.data, value.dtype, src);
      }
    append(k.data(), v.data(), n);
    return;
  }
  std::vector<DeviceRowCopy> copies;  // the key and the value rows in one launch
  add_device_row_copies(key, value, begin, end, copies);
  copy_device_rows_batch(copies, heads_, channels_, ex_.cuda_stream);
  finish_device_append(n);
}

void LayerCache::add_device_row_copies(const TensorView& key, const TensorView& value, std::int64_t begin,
                                       std::int64_t end, std::vector<DeviceRowCopy>& copies) {
  const std::int64_t t = key.shape[1], n = end - begin;
  for (auto [full, src] : {std::pair<FullTokens*, const TensorView*>{&key_full_, &key}, {&value_full_, &value}}) {
    reserve_rows(*full, tokens_ + n);
    copies.push_back({{full->device.data(), full->dtype, full->capacity}, tokens_ - full->first, {src->data, src->dtype, t}, begin, n,
                      DType::f32});
  }
}

void LayerCache::finish_device_append(std::int64_t n) {
  const bool prefill = tokens_ == 0;
  tokens_ += n;
  maybe_quantize(prefill);
  drop_quantized(key_full_, key_quantized_);
  drop_quantized(value_full_, value_quantized_);
}

void LayerCache::append_batch(const std::vector<LayerCache*>& caches, const std::vector<TensorView>& keys,
                              const std::vector<TensorView>& values) {
  VIDKV_REQUIRE(keys.size() == caches.size() && values.size() == caches.size(), ShapeError, "layer cache batch append: ",
                caches.size(), " caches, ", keys.size(), " key views, ", values.size(), " value views");
  bool one_launch = !caches.empty();
  for (std::size_t i = 0; i < caches.size(); ++i) {
    VIDKV_REQUIRE(caches[i] != nullptr, ShapeError, "layer cache batch append: cache ", i, " is null");
    const LayerCache& c = *caches[i];
    std::int64_t t = 0, tv = 0;
    try {
      t = check_view(keys[i], c.ex_.device, c.heads_, c.channels_, "key");
      tv = check_view(values[i], c.ex_.device, c.heads_, c.channels_, "value");
    } catch (const ShapeError& e) {
      throw ShapeError("layer cache batch append: cache " + std::to_string(i) + ": " + e.what());
    }
    VIDKV_REQUIRE(tv == t, ShapeError, "layer cache batch append: cache ", i, ": key ", keys[i].shape_str(), " and value ",
                  values[i].shape_str(), " differ in tokens");
    one_launch = one_launch && c.ex_.on_cuda() && c.ex_.cuda_stream == caches[0]->ex_.cuda_stream &&
                 c.heads_ == caches[0]->heads_ && c.channels_ == caches[0]->channels_;
  }
  // A cache named twice takes its appends one after the other (its second rows go after its first).
  for (std::size_t i = 0; one_launch && i < caches.size(); ++i)
    for (std::size_t j = 0; j < i; ++j)
      if (caches[j] == caches[i]) one_launch = false;
  if (!one_launch) {
    for (std::size_t i = 0; i < caches.size(); ++i) caches[i]->append(keys[i], values[i], 0, keys[i].shape[1]);
    return;
  }
  // Every cache's copies, then one launch (or one per kMaxRowCopies copies) on the shared stream, then each cache's
  // counters and encodes in batch order: the encodes read rows the launch before them wrote.
  std::vector<DeviceRowCopy> copies;
  for (std::size_t i = 0; i < caches.size(); ++i) caches[i]->add_device_row_copies(keys[i], values[i], 0, keys[i].shape[1], copies);
  copy_device_rows_batch(copies, caches[0]->heads_, caches[0]->channels_, caches[0]->ex_.cuda_stream);
  for (std::size_t i = 0; i < caches.size(); ++i) caches[i]->finish_device_append(keys[i].shape[1]);
}

// Under ExactTokens::residual the rows of tokens [first, quantized) are dead from here on (live_first); they stay
// in place, so a decode step that encodes one token copies nothing (reserve_rows moves the live rows when an append
// needs the room: once per window's worth of steps). A store more than twice the size its live rows or the window
// (window_rows(): R + 1, a kivi value window R + value_block) need -- the prefill's -- is cut to exactly the live
// rows now, as nothing else would shrink it.
void LayerCache::drop_quantized(FullTokens& full, std::int64_t quantized) {
  if (exact_ != ExactTokens::residual || quantized <= full.first) return;
  const std::int64_t keep = tokens_ - quantized;  // the live rows: live_first(full) == quantized here
  if (full.capacity <= 2 * std::max(keep, params_.window_rows())) return;
  relocate_live_rows(full, keep);  // keep < capacity: a new store of exactly the live rows
}

LayerCache::SideRef LayerCache::side_ref(const Quantizer& q, const std::vector<Block>& blocks, std::int64_t quantized,
                                         const FullTokens& full) const {
  SideRef s;
  s.quantizer = &q;
  s.quantized = quantized;
  for (const Block& b : blocks)
    s.blocks.push_back({b.begin, b.end, ex_.on_cuda() ? b.device_bytes.as<const std::uint8_t>() : b.bytes.data(), &b.layout});
  s.full = ex_.on_cuda() ? full.device.data() : static_cast<const void*>(full.host.data());
  s.full_dtype = ex_.on_cuda() ? full.dtype : DType::f32;
  s.capacity = full.capacity;
  s.first = full.first;
  return s;
}

LayerCache::SideRef LayerCache::key_side() const { return side_ref(codec_.key(), key_blocks_, key_quantized_, key_full_); }
LayerCache::SideRef LayerCache::value_side() const { return side_ref(codec_.value(), value_blocks_, value_quantized_, value_full_); }

std::vector<std::uint8_t> LayerCache::key_block_bytes(std::size_t i) const { return block_bytes(key_blocks_, i, "key"); }
std::vector<std::uint8_t> LayerCache::value_block_bytes(std::size_t i) const { return block_bytes(value_blocks_, i, "value"); }

namespace {

template <class Block>
PackedLayout side_layout(const std::vector<Block>& blocks, std::int64_t residual_tokens, std::int64_t heads,
                         std::int64_t channels, DType dtype) {
  PackedLayout out;
  for (const Block& b : blocks)
    out.append_child("block[" + std::to_string(b.begin) + "," + std::to_string(b.end) + ")", b.layout);
  if (residual_tokens > 0) {
    const std::int64_t elements = heads * residual_tokens * channels;
    PackedLayout r(elements, 8.0 * dtype_size(dtype));
    r.add("values", SectionKind::residual, static_cast<std::size_t>(elements) * static_cast<std::size_t>(dtype_size(dtype)));
    out.append_child("residual", r);
  }
  return out;
}

}  // namespace

PackedLayout LayerCache::key_layout() const {
  return side_layout(key_blocks_, tokens_ - key_quantized_, heads_, channels_, residual_storage_);
}

PackedLayout LayerCache::value_layout() const {
  return side_layout(value_blocks_, tokens_ - value_quantized_, heads_, channels_, residual_storage_);
}

// ctx.keys shows the exact keys of every cached token when a plugin of the codec reads them
// (Quantizer::reads_context_keys: a semantic_attention protector), all are held (ExactTokens::all) and local token i
// is trace token i. Otherwise they are not exposed: under ExactTokens::residual never (no dense copy per block), and
// not to a codec that does not read them (the copy costs the layer's keys as fp32 for every block: 84 us of a
// 32k-token layer's replay on an H100 before row_copy.cu's rewrite, and a host copy of them per block on the CPU
// wherever the store is not exactly full).
bool LayerCache::exposes_keys() const {
  return exact_ == ExactTokens::all && key_full_.first == 0 && identity_mapping(ctx_, tokens_) &&
         (codec_.key().reads_context_keys() || codec_.value().reads_context_keys());
}

HeldBytes LayerCache::held_bytes() const {
  HeldBytes out;
  for (const auto* blocks : {&key_blocks_, &value_blocks_})
    for (const Block& b : *blocks) out.packed += ex_.on_cuda() ? b.device_bytes.bytes() : b.bytes.size();
  out.packed += shelf_.bytes();
  for (const FullTokens* full : {&key_full_, &value_full_})
    out.exact += ex_.on_cuda() ? full->device.bytes() : full->host.size() * sizeof(float);
  return out;
}

void LayerCache::expose_device_keys(TokenContext& ctx, DeviceBuffer& keys) const {
  if (!exposes_keys()) return;
  keys = DeviceBuffer(float_bytes(heads_ * tokens_ * channels_), ex_.cuda_stream);
  copy_device_rows({keys.data(), DType::f32, tokens_}, 0, {key_full_.device.data(), key_full_.dtype, key_full_.capacity}, 0, heads_,
                   tokens_, channels_, DType::f32, ex_.cuda_stream);
  ctx.keys = LayerKeys{keys.as<const float>(), heads_, tokens_, channels_, Device::cuda};
}

LayerCache::Block LayerCache::encode_device_block(const Quantizer& q, const TensorView& data, std::int64_t begin,
                                                  std::int64_t end, const TokenContext& ctx) {
  Block b;
  b.begin = begin;
  b.end = end;
  const BlockShape shape{heads_, end - begin, channels_};
  b.layout = q.layout(shape, ctx);
  const std::size_t bytes = b.layout.bytes();
  b.device_bytes = DeviceBuffer(bytes, ex_.cuda_stream);
  q.encode_view(data, ctx, b.device_bytes.as<std::uint8_t>(), ex_);
  return b;
}

namespace {

// Encodes `data` ([heads, end - begin, channels]) as the tokens [begin, end) of the cache.
template <class Block>
Block encode_block(const Quantizer& q, const float* data, std::int64_t heads, std::int64_t channels, std::int64_t begin,
                   std::int64_t end, const TokenContext& ctx) {
  Block b;
  b.begin = begin;
  b.end = end;
  const BlockShape shape{heads, end - begin, channels};
  b.layout = q.layout(shape, ctx);
  b.bytes.assign(b.layout.bytes(), 0);
  q.encode(data, shape, ctx, b.bytes.data());
  return b;
}

}  // namespace

// cuda: one side's range [begin, end) ready to encode: its rows as a dense view (in the store, or copied into
// `dense`), the context (with the exact keys exposed in `keys` where a protector may read them) and the block with its
// buffer allocated. Everything it holds is allocated and written before the encode is enqueued (the promise of a
// paired encode, execution.h).
struct LayerCache::DeviceRange {
  TokenContext ctx;
  DeviceBuffer dense, keys;
  TensorView data;
  Block block;
  bool one_token = false;
};

LayerCache::DeviceRange LayerCache::prepare_device_range(const Quantizer& q, const FullTokens& full, const std::vector<Block>& blocks,
                                                         std::int64_t begin, std::int64_t end, const DeviceRange* exposed) {
  DeviceRange r;
  r.ctx = ctx_.range(begin, end);
  const std::int64_t n = end - begin, r0 = begin - full.first;
  // KIVI's one-token value blocks (one per decode step): the scratch rows and the block's buffer come from the
  // shelf, and the scratch goes back to it (merge_value_tail returns the blocks it merges).
  r.one_token = n == 1 && &blocks == &value_blocks_ && params_.type == LifecycleType::kivi;
  r.data = TensorView{nullptr, full.dtype, Device::cuda, {heads_, n, channels_}};
  if (heads_ == 1 || (r0 == 0 && n == full.capacity)) {  // the rows are dense in the store: read them in place
    r.data.data = static_cast<char*>(full.device.data()) + static_cast<std::size_t>(r0 * channels_ * dtype_size(full.dtype));
  } else {
    const auto rows_bytes = static_cast<std::size_t>(heads_ * n * channels_ * dtype_size(full.dtype));
    r.dense = r.one_token ? shelf_.take(rows_bytes, ex_.cuda_stream) : DeviceBuffer(rows_bytes, ex_.cuda_stream);
    copy_device_rows({r.dense.data(), full.dtype, n}, 0, {full.device.data(), full.dtype, full.capacity}, r0, heads_, n, channels_,
                     DType::f32, ex_.cuda_stream);
    r.data.data = r.dense.data();
  }
  if (exposed != nullptr) r.ctx.keys = exposed->ctx.keys;  // the same exact keys of the whole layer, one copy
  else expose_device_keys(r.ctx, r.keys);
  r.block.begin = begin;
  r.block.end = end;
  r.block.layout = q.layout(BlockShape{heads_, n, channels_}, r.ctx);
  const std::size_t bytes = r.block.layout.bytes();
  r.block.device_bytes = r.one_token ? shelf_.take(bytes, ex_.cuda_stream) : DeviceBuffer(bytes, ex_.cuda_stream);
  return r;
}

void LayerCache::encode_device_range(const Quantizer& q, DeviceRange& r, std::vector<Block>& blocks, std::int64_t& quantized,
                                     const Execution& ex) {
  VIDKV_ASSERT(r.block.begin == quantized, "range [", r.block.begin, ", ", r.block.end, ")");
  q.encode_view(r.data, r.ctx, r.block.device_bytes.as<std::uint8_t>(), ex);
  quantized = r.block.end;
  blocks.push_back(std::move(r.block));
  if (r.one_token) shelf_.give(std::move(r.dense));  // after the encode that reads it, on the same stream
  // r.dense and r.keys are freed in stream order, after the encode that reads them.
}

void LayerCache::quantize_range_pair(std::int64_t key_begin, std::int64_t key_end, std::int64_t value_begin, std::int64_t value_end) {
  if (!ex_.on_cuda() || key_end <= key_begin || value_end <= value_begin) {
    if (key_end > key_begin) quantize_key_range(key_begin, key_end);
    if (value_end > value_begin) quantize_value_range(value_begin, value_end);
    return;
  }
  VIDKV_ASSERT(key_begin == key_quantized_ && key_begin >= key_full_.first && key_end <= tokens_ && value_begin == value_quantized_ &&
                   value_begin >= value_full_.first && value_end <= tokens_,
               "ranges [", key_begin, ", ", key_end, ") and [", value_begin, ", ", value_end, ")");
  // Both sides' rows copied and buffers allocated first, so that the values' encode follows the keys' at once and can
  // be paired with it (KvCodec::encode_pair's rule, execution.h). Both sides' dense rows are alive together here (one
  // side's at a time before): at most one block of rows more, freed when this returns.
  DeviceRange key = prepare_device_range(codec_.key(), key_full_, key_blocks_, key_begin, key_end);
  DeviceRange value = prepare_device_range(codec_.value(), value_full_, value_blocks_, value_begin, value_end, &key);
  encode_device_range(codec_.key(), key, key_blocks_, key_quantized_, ex_);
  encode_device_range(codec_.value(), value, value_blocks_, value_quantized_, ex_.with_independence(KvCodec::pairs_values(ex_)));
}

void LayerCache::quantize_range(const Quantizer& q, const FullTokens& full, std::vector<Block>& blocks, std::int64_t& quantized,
                                std::int64_t begin, std::int64_t end) {
  VIDKV_ASSERT(begin == quantized && begin >= full.first && end > begin && end <= tokens_, "range [", begin, ", ", end, ")");
  if (ex_.on_cuda()) {
    DeviceRange r = prepare_device_range(q, full, blocks, begin, end);
    encode_device_range(q, r, blocks, quantized, ex_);
    return;
  }
  TokenContext ctx = ctx_.range(begin, end);
  std::vector<float> copy, keys;
  const float* data = host_rows(full, heads_, channels_, begin, end, copy);
  if (exposes_keys())
    ctx.keys = LayerKeys{host_rows(key_full_, heads_, channels_, 0, tokens_, keys), heads_, tokens_, channels_};
  blocks.push_back(encode_block<Block>(q, data, heads_, channels_, begin, end, ctx));
  quantized = end;
}

void LayerCache::quantize_key_range(std::int64_t begin, std::int64_t end) {
  quantize_range(codec_.key(), key_full_, key_blocks_, key_quantized_, begin, end);
}

void LayerCache::quantize_value_range(std::int64_t begin, std::int64_t end) {
  quantize_range(codec_.value(), value_full_, value_blocks_, value_quantized_, begin, end);
}

void LayerCache::maybe_quantize(bool prefill) {
  const std::int64_t r = params_.residual;
  const LifecycleParams::PrefillBlocks first = params_.prefill_blocks(tokens_);
  if (params_.type == LifecycleType::kivi) {
    if (prefill) quantize_range_pair(0, first.key, 0, first.value);
    while (tokens_ - key_quantized_ >= r) quantize_key_range(key_quantized_, key_quantized_ + r);
    // Values: [value_quantized_, target) leave the window, in blocks of B = value_block tokens (B = 1: KIVI's one
    // token per decode step, merged into the block before it where that gives the same bytes, merge_value_tail).
    const std::int64_t block = params_.value_block, target = params_.kivi_values_quantized(tokens_);
    while (value_quantized_ < target) {
      // Several blocks leaving the window at once (a multi-token append: a prompt fed in passes, several new tokens
      // in a step): where the value quantizer is token-separable for them, their blocks merged would be the bytes of
      // one block of them all, so they are encoded as that one block (one encode instead of one encode and one
      // merge per block; the same bytes and values, fewer blocks).
      const std::int64_t leaving = target - value_quantized_;
      if (leaving > block && codec_.value().token_separable(BlockShape{heads_, leaving, channels_}) &&
          !env_equals("VIDKV_KIVI_VALUE_MERGE", "off")) {
        quantize_value_range(value_quantized_, target);
        continue;
      }
      quantize_value_range(value_quantized_, std::min(value_quantized_ + block, target));
      if (block == 1) merge_value_tail();
    }
    return;
  }
  if (prefill && first.key > 0) quantize_range_pair(0, first.key, 0, first.value);
  if (params_.type == LifecycleType::paper) {
    while (tokens_ - key_quantized_ >= r)
      quantize_range_pair(key_quantized_, key_quantized_ + r, value_quantized_, value_quantized_ + r);
    return;
  }
  // release: re-encode everything, as the model reads it, from scratch.
  if (tokens_ - key_quantized_ < r) return;
  TokenContext ctx = ctx_.range(0, tokens_);
  Block kb, vb;
  if (ex_.on_cuda()) {
    const std::vector<std::int64_t> shape{heads_, tokens_, channels_};
    DeviceBuffer key(float_bytes(heads_ * tokens_ * channels_), ex_.cuda_stream);
    DeviceBuffer value(key.bytes(), ex_.cuda_stream);
    materialize(TensorView{key.data(), DType::f32, Device::cuda, shape}, TensorView{value.data(), DType::f32, Device::cuda, shape});
    DeviceBuffer keys;
    expose_device_keys(ctx, keys);
    kb = encode_device_block(codec_.key(), TensorView{key.data(), DType::f32, Device::cuda, shape}, 0, tokens_, ctx);
    vb = encode_device_block(codec_.value(), TensorView{value.data(), DType::f32, Device::cuda, shape}, 0, tokens_, ctx);
  } else {
    std::vector<float> key, value, keys;
    materialize(key, value);
    if (exposes_keys())
      ctx.keys = LayerKeys{host_rows(key_full_, heads_, channels_, 0, tokens_, keys), heads_, tokens_, channels_};
    kb = encode_block<Block>(codec_.key(), key.data(), heads_, channels_, 0, tokens_, ctx);
    vb = encode_block<Block>(codec_.value(), value.data(), heads_, channels_, 0, tokens_, ctx);
  }
  key_blocks_.clear();
  value_blocks_.clear();
  key_blocks_.push_back(std::move(kb));
  value_blocks_.push_back(std::move(vb));
  key_quantized_ = value_quantized_ = tokens_;
  ++requantizations_;
}

void LayerCache::merge_value_tail() {
  if (value_blocks_.size() < 2 || env_equals("VIDKV_KIVI_VALUE_MERGE", "off")) return;
  Block& prev = value_blocks_[value_blocks_.size() - 2];
  const Block& last = value_blocks_.back();
  const std::int64_t np = prev.end - prev.begin, nl = last.end - last.begin, n = np + nl;
  if (nl != 1 || np >= kValueTailTokens) return;
  const Quantizer& q = codec_.value();
  const BlockShape merged_shape{heads_, n, channels_};
  if (!q.token_separable(BlockShape{heads_, np, channels_}) || !q.token_separable(BlockShape{heads_, nl, channels_}) ||
      !q.token_separable(merged_shape))
    return;
  Block merged;
  merged.begin = prev.begin;
  merged.end = last.end;
  merged.layout = q.layout(merged_shape, ctx_.range(merged.begin, merged.end));
  // The quantizer's claim, checked against its layouts: section for section the two blocks' bytes, each
  // [heads][tokens][w] with the same w.
  const std::vector<PackedSection>& ms = merged.layout.sections();
  if (ms.size() > static_cast<std::size_t>(TokenBlockMerge::kMaxSections)) return;
  TokenBlockMerge m;
  m.blocks = 2;
  m.heads = heads_;
  m.sections = static_cast<int>(ms.size());
  const Block* parts[2] = {&prev, &last};
  for (int b = 0; b < 2; ++b) {
    const std::vector<PackedSection>& os = parts[b]->layout.sections();
    if (os.size() != ms.size()) return;
    m.tokens[b] = parts[b]->end - parts[b]->begin;
    m.src[b] = ex_.on_cuda() ? parts[b]->device_bytes.as<std::uint8_t>() : parts[b]->bytes.data();
    for (std::size_t s = 0; s < ms.size(); ++s) m.src_offset[b][s] = parts[b]->layout.offset_of(s);
  }
  for (std::size_t s = 0; s < ms.size(); ++s) {
    const auto rows = static_cast<std::size_t>(heads_ * n);
    if (ms[s].bytes % rows != 0) return;
    m.width[s] = ms[s].bytes / rows;
    m.dst_offset[s] = merged.layout.offset_of(s);
    for (int b = 0; b < 2; ++b)
      if (parts[b]->layout.sections()[s].bytes != static_cast<std::size_t>(heads_ * m.tokens[b]) * m.width[s]) return;
  }
  VIDKV_ASSERT(m.bytes() == merged.layout.bytes(), "merged value block: ", m.bytes(), " of ", merged.layout.bytes(), " bytes");
  if (ex_.on_cuda()) {
    // A tail block's buffer has room for kValueTailTokens tokens (bytes per token times that: the sections are
    // [heads][tokens][w]), so that the next merge finds the buffer this one frees on the shelf: one allocation per
    // kValueTailTokens decode steps (a full block keeps its buffer) instead of three per step. The two merged
    // blocks' buffers go to the shelf after the merge that reads them (same stream).
    const std::size_t tail_bytes = m.bytes() / static_cast<std::size_t>(n) * static_cast<std::size_t>(kValueTailTokens);
    merged.device_bytes = shelf_.take(tail_bytes, ex_.cuda_stream);
    merge_device_token_blocks(m, merged.device_bytes.as<std::uint8_t>(), ex_.cuda_stream);
    shelf_.give(std::move(value_blocks_.back().device_bytes));
    shelf_.give(std::move(value_blocks_[value_blocks_.size() - 2].device_bytes));
  } else {
    merged.bytes.assign(merged.layout.bytes(), 0);
    merge_token_blocks_host(m, merged.bytes.data());
  }
  value_blocks_.pop_back();
  value_blocks_.back() = std::move(merged);
}

void LayerCache::materialize(std::vector<float>& key, std::vector<float>& value) const {
  if (ex_.on_cuda()) {
    const std::vector<std::int64_t> shape{heads_, tokens_, channels_};
    const std::size_t bytes = float_bytes(heads_ * tokens_ * channels_);
    DeviceBuffer k(bytes, ex_.cuda_stream), v(bytes, ex_.cuda_stream);
    materialize(TensorView{k.data(), DType::f32, Device::cuda, shape}, TensorView{v.data(), DType::f32, Device::cuda, shape});
    key.resize(static_cast<std::size_t>(heads_ * tokens_ * channels_));
    value.resize(key.size());
    copy_to_host(key.data(), k.data(), bytes, ex_.cuda_stream);
    copy_to_host(value.data(), v.data(), bytes, ex_.cuda_stream);
    return;
  }
  key.assign(static_cast<std::size_t>(heads_ * tokens_ * channels_), 0.0f);
  value.assign(key.size(), 0.0f);
  auto fill = [&](const Quantizer& q, const std::vector<Block>& blocks, const FullTokens& full, std::int64_t quantized,
                  std::vector<float>& out) {
    for (const Block& b : blocks) {
      const std::int64_t n = b.end - b.begin;
      if (heads_ == 1 || n == tokens_) {  // the block's [heads, n, channels] rows lie contiguously in out
        q.decode(b.bytes.data(), {heads_, n, channels_}, ctx_.range(b.begin, b.end), out.data() + b.begin * channels_);
        continue;
      }
      // Not zeroed first: decode writes all heads * n * channels values (quantizer.h).
      const std::unique_ptr<float[]> dec(new float[static_cast<std::size_t>(heads_ * n * channels_)]);
      q.decode(b.bytes.data(), {heads_, n, channels_}, ctx_.range(b.begin, b.end), dec.get());
      for (std::int64_t h = 0; h < heads_; ++h)
        std::memcpy(out.data() + (h * tokens_ + b.begin) * channels_, dec.get() + h * n * channels_, float_bytes(n * channels_));
    }
    for (std::int64_t h = 0; h < heads_; ++h)
      for (std::int64_t t = quantized; t < tokens_; ++t)
        for (std::int64_t c = 0; c < channels_; ++c)
          out[static_cast<std::size_t>((h * tokens_ + t) * channels_ + c)] = round_to_dtype(
              full.host[static_cast<std::size_t>((h * full.capacity + t - full.first) * channels_ + c)], residual_storage_);
  };
  fill(codec_.key(), key_blocks_, key_full_, key_quantized_, key);
  fill(codec_.value(), value_blocks_, value_full_, value_quantized_, value);
}

struct LayerCache::DeviceDecode {
  const Block* block;
  TensorView out;  // in the output's rows, or a scratch buffer
};

struct LayerCache::DeviceRowCopies {
  std::vector<DeviceBuffer> scratch;  // decoded blocks whose rows are not dense in the output
  std::vector<DeviceRowCopy> copies;
  std::vector<DeviceDecode> key_decodes, value_decodes;
};

void LayerCache::materialize(const TensorView& key, const TensorView& value) const {
  VIDKV_REQUIRE(check_view(key, ex_.device, heads_, channels_, "materialized key") == tokens_ &&
                    check_view(value, ex_.device, heads_, channels_, "materialized value") == tokens_,
                ShapeError, "layer cache: materialize into ", key.shape_str(), " and ", value.shape_str(), ": the cache holds ",
                tokens_, " tokens");
  if (!ex_.on_cuda()) {
    std::vector<float> k, v;
    materialize(k, v);
    from_float(k, key);
    from_float(v, value);
    return;
  }
  DeviceRowCopies copies;
  plan_side(key_blocks_, key_full_, key_quantized_, key, copies, copies.key_decodes);
  plan_side(value_blocks_, value_full_, value_quantized_, value, copies, copies.value_decodes);
  // Every decode's output exists before the first decode is enqueued, so the values' first decode follows the keys'
  // last one at once and is paired with it (KvCodec::decode_pair's rule, execution.h), unless the caller's key and
  // value views share bytes (then the values are written after the keys, as without the pairs).
  for (const DeviceDecode& d : copies.key_decodes)
    codec_.key().decode_view(d.block->device_bytes.as<const std::uint8_t>(), ctx_.range(d.block->begin, d.block->end), d.out, ex_);
  const auto* k0 = static_cast<const std::uint8_t*>(key.data);
  const auto* v0 = static_cast<const std::uint8_t*>(value.data);
  const bool disjoint = k0 + key.nbytes() <= v0 || v0 + value.nbytes() <= k0;
  bool pair = !copies.key_decodes.empty() && disjoint && KvCodec::pairs_values(ex_);
  for (const DeviceDecode& d : copies.value_decodes) {
    codec_.value().decode_view(d.block->device_bytes.as<const std::uint8_t>(), ctx_.range(d.block->begin, d.block->end), d.out,
                               ex_.with_independence(pair));
    pair = false;
  }
  copy_device_rows_batch(copies.copies, heads_, channels_, ex_.cuda_stream);
  // copies.scratch is freed here, in stream order after the copies that read it.
}

void LayerCache::plan_side(const std::vector<Block>& blocks, const FullTokens& full, std::int64_t quantized, const TensorView& out,
                           DeviceRowCopies& copies, std::vector<DeviceDecode>& decodes) const {
  const std::size_t esize = static_cast<std::size_t>(dtype_size(out.dtype));
  for (const Block& b : blocks) {
    const std::int64_t n = b.end - b.begin;
    if (heads_ == 1 || n == tokens_) {  // the block's rows are dense in `out`: decode in place
      void* dst = static_cast<char*>(out.data) + static_cast<std::size_t>(b.begin * channels_) * esize;
      decodes.push_back({&b, TensorView{dst, out.dtype, Device::cuda, {heads_, n, channels_}}});
      continue;
    }
    // Decoded in the output's dtype (decode_view rounds the reconstruction once, as a copy from fp32 would), then
    // moved unchanged into the block's rows of every head.
    DeviceBuffer& dec = copies.scratch.emplace_back(static_cast<std::size_t>(heads_ * n * channels_) * esize, ex_.cuda_stream);
    decodes.push_back({&b, TensorView{dec.data(), out.dtype, Device::cuda, {heads_, n, channels_}}});
    copies.copies.push_back({{out.data, out.dtype, tokens_}, b.begin, {dec.data(), out.dtype, n}, 0, n, DType::f32});
  }
  copies.copies.push_back({{out.data, out.dtype, tokens_}, quantized, {full.device.data(), full.dtype, full.capacity},
                           quantized - full.first, tokens_ - quantized, residual_storage_});
}

std::vector<std::uint8_t> LayerCache::block_bytes(const std::vector<Block>& blocks, std::size_t i, const char* side) const {
  VIDKV_REQUIRE(i < blocks.size(), ShapeError, "layer cache: no ", side, " block ", i, " (", blocks.size(), " blocks)");
  const Block& b = blocks[i];
  if (!ex_.on_cuda()) return b.bytes;
  std::vector<std::uint8_t> out(b.layout.bytes());
  copy_to_host(out.data(), b.device_bytes.data(), out.size(), ex_.cuda_stream);
  return out;
}

ReplayedLayer replay_layer(const KvCodec& codec, const LifecycleParams& params, const float* key, const float* value,
                           const BlockShape& shape, const TokenContext& ctx, DType data_dtype) {
  const std::int64_t prefill = params.replay_prefill(shape.tokens);
  LayerCache cache(codec, params, shape.heads, shape.channels, ctx, data_dtype);
  auto slice = [&](const float* src, std::int64_t begin, std::int64_t end) {
    std::vector<float> out(static_cast<std::size_t>(shape.heads * (end - begin) * shape.channels));
    for (std::int64_t h = 0; h < shape.heads; ++h)
      std::memcpy(out.data() + h * (end - begin) * shape.channels, src + (h * shape.tokens + begin) * shape.channels,
                  static_cast<std::size_t>((end - begin) * shape.channels) * sizeof(float));
    return out;
  };
  if (prefill == shape.tokens) {
    cache.append(key, value, prefill);  // the whole layer: already [heads, prefill, channels]
  } else if (prefill > 0) {
    cache.append(slice(key, 0, prefill).data(), slice(value, 0, prefill).data(), prefill);
  }
  for (std::int64_t t = prefill; t < shape.tokens; ++t)
    cache.append(slice(key, t, t + 1).data(), slice(value, t, t + 1).data(), 1);
  ReplayedLayer out;
  cache.materialize(out.key, out.value);
  out.key_layout = cache.key_layout();
  out.value_layout = cache.value_layout();
  out.requantizations = cache.requantizations();
  return out;
}

}  // namespace vidkv

namespace vidkv {

ReplayedLayer replay_layer(const KvCodec& codec, const LifecycleParams& params, const TensorView& key,
                           const TensorView& value, const TokenContext& ctx, const TensorView& key_hat,
                           const TensorView& value_hat, const Execution& ex, DType data_dtype) {
  VIDKV_REQUIRE(key.rank() == 3, ShapeError, "replay: key must be [heads, tokens, channels], got ", key.shape_str());
  const BlockShape shape{key.shape[0], key.shape[1], key.shape[2]};
  const std::int64_t prefill = params.replay_prefill(shape.tokens);
  LayerCache cache(codec, params, shape.heads, shape.channels, ctx, data_dtype, ex);
  if (prefill > 0) cache.append(key, value, 0, prefill);
  for (std::int64_t t = prefill; t < shape.tokens; ++t) cache.append(key, value, t, t + 1);
  cache.materialize(key_hat, value_hat);
  ReplayedLayer out;
  out.key_layout = cache.key_layout();
  out.value_layout = cache.value_layout();
  out.requantizations = cache.requantizations();
  return out;
}

}  // namespace vidkv
