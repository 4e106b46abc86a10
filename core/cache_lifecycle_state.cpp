// LayerCache copies, crop and serialisation (contract in cache_lifecycle.h): what the live hook's beam search
// (per-item clones), crop and pickle need. Kept apart from the lifecycle itself (cache_lifecycle.cpp).
#include <algorithm>
#include <cstring>
#include <utility>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/error.h"

namespace vidkv {

namespace {

// A device-to-device copy of `src` (same size), ordered on `stream`; empty for an empty buffer.
DeviceBuffer clone_device(const DeviceBuffer& src, void* stream) {
  if (src.bytes() == 0) return DeviceBuffer();
  DeviceBuffer out(src.bytes(), stream);
  copy_device_to_device(out.data(), src.data(), src.bytes(), stream);
  return out;
}

// Rows [begin, end) of every head of a [heads, capacity, channels] fp32 buffer, dense.
std::vector<float> dense_rows(const float* buf, std::int64_t heads, std::int64_t capacity, std::int64_t channels,
                              std::int64_t begin, std::int64_t end) {
  std::vector<float> out(static_cast<std::size_t>(heads * (end - begin) * channels));
  for (std::int64_t h = 0; h < heads; ++h)
    std::memcpy(out.data() + h * (end - begin) * channels, buf + (h * capacity + begin) * channels,
                static_cast<std::size_t>((end - begin) * channels) * sizeof(float));
  return out;
}

}  // namespace

LayerCache::LayerCache(const LayerCache& o, const KvCodec& codec, TokenContext ctx)
    : codec_(codec), params_(o.params_), residual_storage_(o.residual_storage_), heads_(o.heads_), channels_(o.channels_),
      ctx_(std::move(ctx)), ex_(o.ex_), tokens_(o.tokens_), key_full_(o.key_full_), value_full_(o.value_full_),
      key_quantized_(o.key_quantized_), value_quantized_(o.value_quantized_), requantizations_(o.requantizations_) {
  auto copy_full = [&](const FullTokens& src, FullTokens& dst) {
    dst.host = src.host;
    dst.device = clone_device(src.device, ex_.cuda_stream);
    dst.capacity = src.capacity;
  };
  copy_full(o.key_dev_, key_dev_);
  copy_full(o.value_dev_, value_dev_);
  auto copy_blocks = [&](const std::vector<Block>& src, std::vector<Block>& dst) {
    dst.reserve(src.size());
    for (const Block& b : src) {
      Block c;
      c.begin = b.begin;
      c.end = b.end;
      c.bytes = b.bytes;
      c.device_bytes = clone_device(b.device_bytes, ex_.cuda_stream);
      c.layout = b.layout;
      dst.push_back(std::move(c));
    }
  };
  copy_blocks(o.key_blocks_, key_blocks_);
  copy_blocks(o.value_blocks_, value_blocks_);
}

void LayerCache::crop(std::int64_t n) {
  const std::int64_t quantized = std::max(key_quantized_, value_quantized_);
  VIDKV_REQUIRE(n >= 0 && n <= tokens_, ValueError, "layer cache: cannot crop to ", n, " tokens: it holds ", tokens_);
  VIDKV_REQUIRE(n >= quantized, ValueError, "layer cache: crop to ", n, " tokens cuts packed blocks (keys quantized up to ",
                key_quantized_, ", values up to ", value_quantized_, "); only the full-precision residual can be cut exactly");
  tokens_ = n;  // the buffers keep their capacity; rows past n are dead
}

LayerCache::State LayerCache::state() const {
  State s;
  s.tokens = tokens_;
  s.key_quantized = key_quantized_;
  s.value_quantized = value_quantized_;
  s.window_begin = std::min(key_quantized_, value_quantized_);
  s.requantizations = requantizations_;
  for (std::size_t i = 0; i < key_blocks_.size(); ++i)
    s.key_blocks.push_back({key_blocks_[i].begin, key_blocks_[i].end, key_block_bytes(i)});
  for (std::size_t i = 0; i < value_blocks_.size(); ++i)
    s.value_blocks.push_back({value_blocks_[i].begin, value_blocks_[i].end, value_block_bytes(i)});
  if (ex_.on_cuda()) {
    auto host = [&](const FullTokens& f) {
      std::vector<float> all(static_cast<std::size_t>(heads_ * f.capacity * channels_));
      if (!all.empty()) copy_to_host(all.data(), f.device.data(), all.size() * sizeof(float), ex_.cuda_stream);
      return dense_rows(all.data(), heads_, f.capacity, channels_, s.window_begin, tokens_);
    };
    s.key_rows = host(key_dev_);
    s.value_rows = host(value_dev_);
  } else {
    const std::int64_t cap = heads_ * channels_ > 0 ? static_cast<std::int64_t>(key_full_.size()) / (heads_ * channels_) : 0;
    s.key_rows = dense_rows(key_full_.data(), heads_, cap, channels_, s.window_begin, tokens_);
    s.value_rows = dense_rows(value_full_.data(), heads_, cap, channels_, s.window_begin, tokens_);
  }
  return s;
}

void LayerCache::restore(const State& s) {
  VIDKV_REQUIRE(tokens_ == 0, ValueError, "layer cache: restore() needs an empty cache (this one holds ", tokens_, " tokens)");
  const std::int64_t w = s.window_begin, n = s.tokens;
  const auto rows = static_cast<std::size_t>(heads_ * (n - w) * channels_);
  VIDKV_REQUIRE(0 <= w && w <= n && w == std::min(s.key_quantized, s.value_quantized) && s.key_quantized <= n &&
                    s.value_quantized <= n && s.key_rows.size() == rows && s.value_rows.size() == rows,
                ShapeError, "layer cache: restore(): inconsistent state (", n, " tokens, quantized ", s.key_quantized, "/",
                s.value_quantized, ", window from ", w, ", ", s.key_rows.size(), " key row values for ", rows, ")");
  auto blocks = [&](const Quantizer& q, const std::vector<State::BlockBytes>& src, std::vector<Block>& dst, const char* side) {
    for (const auto& sb : src) {
      Block b;
      b.begin = sb.begin;
      b.end = sb.end;
      b.layout = q.layout({heads_, sb.end - sb.begin, channels_}, ctx_.range(sb.begin, sb.end));
      VIDKV_REQUIRE(b.layout.bytes() == sb.bytes.size(), ShapeError, "layer cache: restore(): ", side, " block [", sb.begin,
                    ", ", sb.end, ") has ", sb.bytes.size(), " bytes but the codec lays it out in ", b.layout.bytes(),
                    " (another codec?)");
      if (ex_.on_cuda()) {
        b.device_bytes = DeviceBuffer(sb.bytes.size(), ex_.cuda_stream);
        copy_to_device(b.device_bytes.data(), sb.bytes.data(), sb.bytes.size(), ex_.cuda_stream);
      } else {
        b.bytes = sb.bytes;
      }
      dst.push_back(std::move(b));
    }
  };
  blocks(codec_.key(), s.key_blocks, key_blocks_, "key");
  blocks(codec_.value(), s.value_blocks, value_blocks_, "value");
  key_quantized_ = s.key_quantized;
  value_quantized_ = s.value_quantized;
  requantizations_ = s.requantizations;
  // Exact rows [w, n) in place; rows [0, w) then get the values the model reads (dequantized blocks).
  std::vector<float> key(static_cast<std::size_t>(heads_ * n * channels_), 0.0f), value(key.size(), 0.0f);
  for (std::int64_t h = 0; h < heads_; ++h) {
    std::memcpy(key.data() + (h * n + w) * channels_, s.key_rows.data() + h * (n - w) * channels_,
                static_cast<std::size_t>((n - w) * channels_) * sizeof(float));
    std::memcpy(value.data() + (h * n + w) * channels_, s.value_rows.data() + h * (n - w) * channels_,
                static_cast<std::size_t>((n - w) * channels_) * sizeof(float));
  }
  auto place = [&](const std::vector<float>& k, const std::vector<float>& v) {
    if (ex_.on_cuda()) {
      for (auto [src, full] : {std::pair{&k, &key_dev_}, std::pair{&v, &value_dev_}}) {
        if (full->capacity < n) {
          full->device = DeviceBuffer(src->size() * sizeof(float), ex_.cuda_stream);
          full->capacity = n;
        }
        // capacity == n here or from a previous place(): [heads, n, channels] is the buffer's own layout
        if (!src->empty()) copy_to_device(full->device.data(), src->data(), src->size() * sizeof(float), ex_.cuda_stream);
      }
    } else {
      key_full_ = k;
      value_full_ = v;
    }
  };
  tokens_ = n;
  place(key, value);
  if (w > 0) {
    std::vector<float> mk, mv;
    materialize(mk, mv);
    for (std::int64_t h = 0; h < heads_; ++h) {
      std::memcpy(key.data() + h * n * channels_, mk.data() + h * n * channels_, static_cast<std::size_t>(w * channels_) * sizeof(float));
      std::memcpy(value.data() + h * n * channels_, mv.data() + h * n * channels_, static_cast<std::size_t>(w * channels_) * sizeof(float));
    }
    place(key, value);
  }
}

}  // namespace vidkv
