#include "vidkv/attention/decode_attention_reference.h"

#include <algorithm>

#include "vidkv/attention/attend.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"

namespace vidkv {

namespace {

void decode_side(const LayerCache& cache, const LayerCache::SideRef& side, std::int64_t h, bool on_cuda,
                 std::vector<double>& out) {
  const std::int64_t heads = cache.heads(), d = cache.channels(), tokens = cache.tokens();
  out.assign(static_cast<std::size_t>(tokens * d), 0.0);
  for (const auto& blk : side.blocks) {
    const std::int64_t n = blk.end - blk.begin;
    std::vector<std::uint8_t> host;
    const std::uint8_t* bytes = blk.bytes;
    if (on_cuda) {
      host.resize(blk.layout->bytes());
      copy_to_host(host.data(), blk.bytes, host.size(), cache.execution().cuda_stream);
      bytes = host.data();
    }
    std::vector<float> dec(static_cast<std::size_t>(heads * n * d));
    side.quantizer->decode(bytes, BlockShape{heads, n, d}, cache.context().range(blk.begin, blk.end), dec.data());
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < d; ++c)
        out[static_cast<std::size_t>((blk.begin + t) * d + c)] = dec[static_cast<std::size_t>((h * n + t) * d + c)];
  }
  const std::int64_t rest = tokens - side.quantized;
  if (rest <= 0) return;
  // Rows quantized - first .. of head h of the exact-input store (LayerCache::SideRef), in its dtype.
  const std::size_t esize = static_cast<std::size_t>(dtype_size(side.full_dtype));
  std::vector<std::uint8_t> full(static_cast<std::size_t>(rest * d) * esize);
  const auto* src = static_cast<const std::uint8_t*>(side.full) +
                    static_cast<std::size_t>((h * side.capacity + side.quantized - side.first) * d) * esize;
  if (on_cuda) {
    copy_to_host(full.data(), src, full.size(), cache.execution().cuda_stream);
  } else {
    std::copy(src, src + full.size(), full.begin());
  }
  for (std::int64_t i = 0; i < rest * d; ++i)
    out[static_cast<std::size_t>(side.quantized * d + i)] =
        round_to_dtype(load_as_float(full.data(), side.full_dtype, static_cast<std::size_t>(i)), cache.residual_storage());
}

}  // namespace

void decoded_head(const LayerCache& cache, std::int64_t h, std::vector<double>& key, std::vector<double>& value) {
  VIDKV_REQUIRE(h >= 0 && h < cache.heads(), ShapeError, "decode attention reference: KV head ", h, " of ", cache.heads());
  const bool on_cuda = cache.execution().on_cuda();
  decode_side(cache, cache.key_side(), h, on_cuda, key);
  decode_side(cache, cache.value_side(), h, on_cuda, value);
}

std::vector<double> reference_decode_attention(const LayerCache& cache, std::int64_t h, const float* queries, std::int64_t rows,
                                               std::int64_t tokens) {
  if (tokens < 0) tokens = cache.tokens();
  VIDKV_REQUIRE(tokens >= 1 && tokens <= cache.tokens(), ShapeError, "decode attention reference: attending to ", tokens,
                " tokens of a cache holding ", cache.tokens());
  std::vector<double> k, v;
  decoded_head(cache, h, k, v);
  std::vector<double> q(queries, queries + rows * cache.channels());
  return attend(q.data(), rows, k.data(), v.data(), tokens, cache.channels());  // K, V [T, D]: the first rows
}

}  // namespace vidkv
