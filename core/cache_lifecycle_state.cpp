// LayerCache copies, crop and serialisation (contract in cache_lifecycle.h): what the live hook's beam search
// (per-row clones), crop and pickle need. Kept apart from the lifecycle itself (cache_lifecycle.cpp).
#include <algorithm>
#include <cstring>
#include <utility>

#include "vidkv/core/cache_device_rows.h"
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

}  // namespace

LayerCache::LayerCache(const LayerCache& o, const KvCodec& codec, TokenContext ctx)
    : codec_(codec), params_(o.params_), data_dtype_(o.data_dtype_), residual_storage_(o.residual_storage_),
      heads_(o.heads_), channels_(o.channels_), ctx_(std::move(ctx)), ex_(o.ex_), exact_(o.exact_), tokens_(o.tokens_),
      key_quantized_(o.key_quantized_), value_quantized_(o.value_quantized_), requantizations_(o.requantizations_) {
  for (auto [src, dst] : {std::pair{&o.key_full_, &key_full_}, std::pair{&o.value_full_, &value_full_}}) {
    dst->host = src->host;
    dst->device = clone_device(src->device, ex_.cuda_stream);
    dst->dtype = src->dtype;
    dst->capacity = src->capacity;
    dst->first = src->first;
  }
  for (auto [src, dst] : {std::pair{&o.key_blocks_, &key_blocks_}, std::pair{&o.value_blocks_, &value_blocks_}}) {
    dst->reserve(src->size());
    for (const Block& b : *src) {
      Block c;
      c.begin = b.begin;
      c.end = b.end;
      c.bytes = b.bytes;
      c.device_bytes = clone_device(b.device_bytes, ex_.cuda_stream);
      c.layout = b.layout;
      dst->push_back(std::move(c));
    }
  }
}

void LayerCache::crop(std::int64_t n) {
  VIDKV_REQUIRE(n >= 0 && n <= tokens_, ValueError, "layer cache: cannot crop to ", n, " tokens: it holds ", tokens_);
  VIDKV_REQUIRE(n >= std::max(key_quantized_, value_quantized_), ValueError, "layer cache: crop to ", n,
                " tokens cuts packed blocks (keys quantized up to ", key_quantized_, ", values up to ", value_quantized_,
                "); only the full-precision residual can be cut exactly");
  tokens_ = n;  // the exact stores keep their capacity; their rows past n are dead
}

LayerCache::State LayerCache::state() const {
  State s;
  s.tokens = tokens_;
  s.key_quantized = key_quantized_;
  s.value_quantized = value_quantized_;
  s.key_first = live_first(key_full_);  // the rows read; dead rows (ExactTokens::residual) are not exported
  s.value_first = live_first(value_full_);
  s.requantizations = requantizations_;
  for (std::size_t i = 0; i < key_blocks_.size(); ++i)
    s.key_blocks.push_back({key_blocks_[i].begin, key_blocks_[i].end, key_block_bytes(i)});
  for (std::size_t i = 0; i < value_blocks_.size(); ++i)
    s.value_blocks.push_back({value_blocks_[i].begin, value_blocks_[i].end, value_block_bytes(i)});
  for (auto [full, rows] : {std::pair{&key_full_, &s.key_rows}, std::pair{&value_full_, &s.value_rows}}) {
    const std::int64_t live = live_first(*full), r0 = live - full->first, n = tokens_ - live;
    rows->resize(static_cast<std::size_t>(heads_ * n * channels_));
    if (n == 0) continue;
    if (ex_.on_cuda()) {  // the store's dtype -> dense fp32 rows on the device -> host
      DeviceBuffer dense(rows->size() * sizeof(float), ex_.cuda_stream);
      cache_device_rows::copy_device_rows({dense.data(), DType::f32, n}, 0, {full->device.data(), full->dtype, full->capacity}, r0,
                                          heads_, n, channels_, DType::f32, ex_.cuda_stream);
      copy_to_host(rows->data(), dense.data(), dense.bytes(), ex_.cuda_stream);
    } else {
      for (std::int64_t h = 0; h < heads_; ++h)
        std::memcpy(rows->data() + h * n * channels_, full->host.data() + (h * full->capacity + r0) * channels_,
                    static_cast<std::size_t>(n * channels_) * sizeof(float));
    }
  }
  return s;
}

void LayerCache::restore(const State& s) {
  VIDKV_REQUIRE(tokens_ == 0, ValueError, "layer cache: restore() needs an empty cache (this one holds ", tokens_, " tokens)");
  auto rows_of = [&](std::int64_t first) { return static_cast<std::size_t>(heads_ * (s.tokens - first) * channels_); };
  VIDKV_REQUIRE(0 <= s.key_first && s.key_first <= s.tokens && 0 <= s.value_first && s.value_first <= s.tokens &&
                    s.key_quantized <= s.tokens && s.value_quantized <= s.tokens && s.key_first <= s.key_quantized &&
                    s.value_first <= s.value_quantized && s.key_rows.size() == rows_of(s.key_first) &&
                    s.value_rows.size() == rows_of(s.value_first),
                ShapeError, "layer cache: restore(): inconsistent state (", s.tokens, " tokens, quantized ", s.key_quantized,
                "/", s.value_quantized, ", exact rows from ", s.key_first, "/", s.value_first, ")");
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
  for (auto [full, rows, first] : {std::tuple{&key_full_, &s.key_rows, s.key_first}, std::tuple{&value_full_, &s.value_rows, s.value_first}}) {
    const std::int64_t n = s.tokens - first;
    full->first = first;
    full->capacity = n;
    if (ex_.on_cuda()) {  // fp32 rows -> device -> the store's dtype
      full->device = DeviceBuffer(static_cast<std::size_t>(heads_ * n * channels_ * dtype_size(full->dtype)), ex_.cuda_stream);
      if (n > 0) {
        DeviceBuffer dense(rows->size() * sizeof(float), ex_.cuda_stream);
        copy_to_device(dense.data(), rows->data(), dense.bytes(), ex_.cuda_stream);
        cache_device_rows::copy_device_rows({full->device.data(), full->dtype, n}, 0, {dense.data(), DType::f32, n}, 0, heads_, n,
                                            channels_, DType::f32, ex_.cuda_stream);
        synchronize(ex_.cuda_stream);  // `dense` is freed at scope exit; the copies must have read it
      }
    } else {
      full->host = *rows;
    }
  }
  tokens_ = s.tokens;
  key_quantized_ = s.key_quantized;
  value_quantized_ = s.value_quantized;
  requantizations_ = s.requantizations;
}

}  // namespace vidkv
