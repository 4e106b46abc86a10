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
#include "vidkv/core/cache_lifecycle.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <utility>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

// Tokens that `buf` ([heads, capacity, channels]) has room for.
std::int64_t capacity_of(const std::vector<float>& buf, std::int64_t heads, std::int64_t channels) {
  return heads * channels > 0 ? static_cast<std::int64_t>(buf.size()) / (heads * channels) : 0;
}

// Grows `buf` ([heads, capacity, channels], `used` tokens valid) to hold at least `need` tokens (doubling).
void reserve_tokens(std::vector<float>& buf, std::int64_t heads, std::int64_t channels, std::int64_t used, std::int64_t need) {
  const std::int64_t cap = capacity_of(buf, heads, channels);
  if (need <= cap) return;
  const std::int64_t new_cap = std::max(need, 2 * cap);
  std::vector<float> grown(static_cast<std::size_t>(heads * new_cap * channels));
  for (std::int64_t h = 0; h < heads; ++h)
    std::memcpy(grown.data() + h * new_cap * channels, buf.data() + h * cap * channels,
                static_cast<std::size_t>(used * channels) * sizeof(float));
  buf.swap(grown);
}

// Rows [begin, end) of every head of `buf` ([heads, capacity, channels]) as a dense [heads, end - begin, channels].
std::vector<float> rows(const std::vector<float>& buf, std::int64_t heads, std::int64_t channels, std::int64_t begin,
                        std::int64_t end) {
  const std::int64_t cap = capacity_of(buf, heads, channels);
  const std::int64_t n = end - begin;
  std::vector<float> out;
  out.reserve(static_cast<std::size_t>(heads * n * channels));  // filled by the copies, not zeroed first
  for (std::int64_t h = 0; h < heads; ++h) {
    const float* src = buf.data() + (h * cap + begin) * channels;
    out.insert(out.end(), src, src + n * channels);
  }
  return out;
}

// Rows [begin, end) of every head as one [heads, end - begin, channels] block: a pointer into `buf` when they
// already lie that way (one head, or the whole capacity), else a copy in `copy`. Same values either way.
const float* rows_view(const std::vector<float>& buf, std::int64_t heads, std::int64_t channels, std::int64_t begin,
                       std::int64_t end, std::vector<float>& copy) {
  const std::int64_t cap = capacity_of(buf, heads, channels);
  if (heads == 1 || (begin == 0 && end == cap)) return buf.data() + begin * channels;
  copy = rows(buf, heads, channels, begin, end);
  return copy.data();
}

bool identity_mapping(const TokenContext& ctx, std::int64_t tokens) {
  for (std::int64_t i = 0; i < tokens && !ctx.index.empty(); ++i)
    if (ctx.trace_index(i) != i) return false;
  return true;
}

// Points ctx.keys at a dense copy (`keys`) of the exact keys of the `tokens` cached tokens, when the cache's local
// token i is trace token i under `base` (the copy costs heads * tokens * channels floats per encoded block).
void expose_keys(const TokenContext& base, const std::vector<float>& key_full, std::int64_t heads, std::int64_t channels,
                 std::int64_t tokens, TokenContext& ctx, std::vector<float>& keys) {
  if (!identity_mapping(base, tokens)) return;
  ctx.keys = LayerKeys{rows_view(key_full, heads, channels, 0, tokens, keys), heads, tokens, channels};
}

}  // namespace

LayerCache::LayerCache(const KvCodec& codec, const LifecycleParams& params, std::int64_t heads, std::int64_t channels,
                       TokenContext ctx)
    : codec_(codec), params_(params), heads_(heads), channels_(channels), ctx_(std::move(ctx)) {
  VIDKV_REQUIRE(heads > 0 && channels > 0, ShapeError, "layer cache: heads (", heads, ") and channels (", channels,
                ") must be positive");
  VIDKV_REQUIRE(params.group > 0 && params.residual > 0, ConfigError, "lifecycle: group (", params.group,
                ") and residual (", params.residual, ") must be positive");
}

void LayerCache::append(const float* key, const float* value, std::int64_t tokens) {
  VIDKV_REQUIRE(tokens >= 0, ShapeError, "layer cache: cannot append ", tokens, " tokens");
  const bool prefill = tokens_ == 0;
  const std::int64_t old = tokens_;
  if (old == 0 && key_full_.empty() && value_full_.empty()) {
    // First append into an empty cache: capacity = tokens, so the buffers take the input's layout as is.
    const std::size_t n = static_cast<std::size_t>(heads_ * tokens * channels_);
    key_full_.assign(key, key + n);
    value_full_.assign(value, value + n);
    tokens_ = tokens;
    maybe_quantize(prefill);
    return;
  }
  reserve_tokens(key_full_, heads_, channels_, old, old + tokens);
  reserve_tokens(value_full_, heads_, channels_, old, old + tokens);
  const std::int64_t cap = capacity_of(key_full_, heads_, channels_);
  for (std::int64_t h = 0; h < heads_; ++h) {
    std::memcpy(key_full_.data() + (h * cap + old) * channels_, key + h * tokens * channels_,
                static_cast<std::size_t>(tokens * channels_) * sizeof(float));
    std::memcpy(value_full_.data() + (h * cap + old) * channels_, value + h * tokens * channels_,
                static_cast<std::size_t>(tokens * channels_) * sizeof(float));
  }
  tokens_ += tokens;
  maybe_quantize(prefill);
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

void LayerCache::quantize_key_range(std::int64_t begin, std::int64_t end) {
  VIDKV_ASSERT(begin == key_quantized_ && end > begin && end <= tokens_, "key range [", begin, ", ", end, ")");
  std::vector<float> copy;
  const float* data = rows_view(key_full_, heads_, channels_, begin, end, copy);
  std::vector<float> keys;
  TokenContext ctx = ctx_.range(begin, end);
  expose_keys(ctx_, key_full_, heads_, channels_, tokens_, ctx, keys);
  key_blocks_.push_back(encode_block<Block>(codec_.key(), data, heads_, channels_, begin, end, ctx));
  key_quantized_ = end;
}

void LayerCache::quantize_value_range(std::int64_t begin, std::int64_t end) {
  VIDKV_ASSERT(begin == value_quantized_ && end > begin && end <= tokens_, "value range [", begin, ", ", end, ")");
  std::vector<float> copy;
  const float* data = rows_view(value_full_, heads_, channels_, begin, end, copy);
  std::vector<float> keys;
  TokenContext ctx = ctx_.range(begin, end);
  expose_keys(ctx_, key_full_, heads_, channels_, tokens_, ctx, keys);
  value_blocks_.push_back(encode_block<Block>(codec_.value(), data, heads_, channels_, begin, end, ctx));
  value_quantized_ = end;
}

void LayerCache::maybe_quantize(bool prefill) {
  const std::int64_t g = params_.group, r = params_.residual;
  if (params_.type == LifecycleType::kivi) {
    if (prefill) {
      const std::int64_t kq = tokens_ - tokens_ % r;
      if (kq > 0) quantize_key_range(0, kq);
      if (tokens_ > r) quantize_value_range(0, tokens_ - r);
    }
    while (tokens_ - key_quantized_ >= r) quantize_key_range(key_quantized_, key_quantized_ + r);
    while (tokens_ - value_quantized_ > r) quantize_value_range(value_quantized_, value_quantized_ + 1);
    return;
  }
  if (prefill) {
    const std::int64_t q = tokens_ - tokens_ % g;
    if (q > 0) {
      quantize_key_range(0, q);
      quantize_value_range(0, q);
    }
  }
  if (params_.type == LifecycleType::paper) {
    while (tokens_ - key_quantized_ >= r) {
      quantize_key_range(key_quantized_, key_quantized_ + r);
      quantize_value_range(value_quantized_, value_quantized_ + r);
    }
    return;
  }
  // release: re-encode everything, as the model reads it, from scratch.
  if (tokens_ - key_quantized_ < r) return;
  std::vector<float> key, value;
  materialize(key, value);
  TokenContext ctx = ctx_.range(0, tokens_);
  std::vector<float> keys;
  expose_keys(ctx_, key_full_, heads_, channels_, tokens_, ctx, keys);
  Block kb = encode_block<Block>(codec_.key(), key.data(), heads_, channels_, 0, tokens_, ctx);
  Block vb = encode_block<Block>(codec_.value(), value.data(), heads_, channels_, 0, tokens_, ctx);
  key_blocks_.clear();
  value_blocks_.clear();
  key_blocks_.push_back(std::move(kb));
  value_blocks_.push_back(std::move(vb));
  key_quantized_ = value_quantized_ = tokens_;
  ++requantizations_;
}

void LayerCache::materialize(std::vector<float>& key, std::vector<float>& value) const {
  key.assign(static_cast<std::size_t>(heads_ * tokens_ * channels_), 0.0f);
  value.assign(key.size(), 0.0f);
  auto fill = [&](const Quantizer& q, const std::vector<Block>& blocks, const std::vector<float>& full,
                  std::int64_t quantized, std::vector<float>& out) {
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
        std::memcpy(out.data() + (h * tokens_ + b.begin) * channels_, dec.get() + h * n * channels_,
                    static_cast<std::size_t>(n * channels_) * sizeof(float));
    }
    const std::int64_t cap = capacity_of(full, heads_, channels_);
    for (std::int64_t h = 0; h < heads_; ++h)
      for (std::int64_t t = quantized; t < tokens_; ++t)
        for (std::int64_t c = 0; c < channels_; ++c)
          out[static_cast<std::size_t>((h * tokens_ + t) * channels_ + c)] =
              round_to_dtype(full[static_cast<std::size_t>((h * cap + t) * channels_ + c)], params_.residual_dtype);
  };
  fill(codec_.key(), key_blocks_, key_full_, key_quantized_, key);
  fill(codec_.value(), value_blocks_, value_full_, value_quantized_, value);
}

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
  return side_layout(key_blocks_, tokens_ - key_quantized_, heads_, channels_, params_.residual_dtype);
}

PackedLayout LayerCache::value_layout() const {
  return side_layout(value_blocks_, tokens_ - value_quantized_, heads_, channels_, params_.residual_dtype);
}

ReplayedLayer replay_layer(const KvCodec& codec, const LifecycleParams& params, const float* key, const float* value,
                           const BlockShape& shape, const TokenContext& ctx) {
  const std::int64_t prefill = params.prefill_tokens < 0 ? shape.tokens : std::min<std::int64_t>(params.prefill_tokens, shape.tokens);
  LayerCache cache(codec, params, shape.heads, shape.channels, ctx);
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
