// The LayerCache's row copies between [heads, tokens, channels] device buffers (core/cuda/row_copy.h), callable
// from code compiled with or without CUDA: in a build without the CUDA backend they throw NotSupportedError (no
// cuda LayerCache can exist there: its constructor refuses). Internal to cache_lifecycle.cpp and
// cache_lifecycle_state.cpp.
#pragma once

#include <cstdint>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/error.h"
#include "vidkv/core/token_block_merge.h"
#ifdef VIDKV_WITH_CUDA
#include "vidkv/core/cuda/row_copy.h"
#endif

namespace vidkv::cache_device_rows {

// A [heads, tokens, channels] device buffer of `dtype` for the row copies (core/cuda/row_copy.h).
struct DeviceRows {
  void* data;
  DType dtype;
  std::int64_t tokens;
};

// dst rows [dst_begin, +n) <- src rows [src_begin, +n) of every head, rounded to `round`, on `stream`.
inline void copy_device_rows(DeviceRows dst, std::int64_t dst_begin, DeviceRows src, std::int64_t src_begin,
                             std::int64_t heads, std::int64_t n, std::int64_t channels, DType round, void* stream) {
#ifdef VIDKV_WITH_CUDA
  row_copy_cuda::copy_rows({dst.data, dst.dtype, dst.tokens}, dst_begin, {src.data, src.dtype, src.tokens}, src_begin, heads, n,
                           channels, round, stream);
#else
  (void)dst, (void)dst_begin, (void)src, (void)src_begin, (void)heads, (void)n, (void)channels, (void)round, (void)stream;
  VIDKV_THROW(NotSupportedError, "layer cache on cuda: this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
#endif
}

// One copy_device_rows() call's arguments, for a batch.
struct DeviceRowCopy {
  DeviceRows dst;
  std::int64_t dst_begin;
  DeviceRows src;
  std::int64_t src_begin;
  std::int64_t n;
  DType round;
};

// The copies in one launch (row_copy_cuda::copy_rows_batch): the same values copy_device_rows() would write.
inline void copy_device_rows_batch(const std::vector<DeviceRowCopy>& copies, std::int64_t heads, std::int64_t channels,
                                   void* stream) {
#ifdef VIDKV_WITH_CUDA
  std::vector<row_copy_cuda::RowCopy> batch;
  batch.reserve(copies.size());
  for (const DeviceRowCopy& c : copies)
    batch.push_back({{c.dst.data, c.dst.dtype, c.dst.tokens}, c.dst_begin, {c.src.data, c.src.dtype, c.src.tokens}, c.src_begin, c.n, c.round});
  row_copy_cuda::copy_rows_batch(batch.data(), batch.size(), heads, channels, stream);
#else
  (void)copies, (void)heads, (void)channels, (void)stream;
  VIDKV_THROW(NotSupportedError, "layer cache on cuda: this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
#endif
}

// row_copy_cuda::merge_token_blocks: the merge of core/token_block_merge.h on device memory, on `stream`.
inline void merge_device_token_blocks(const TokenBlockMerge& m, std::uint8_t* dst, void* stream) {
#ifdef VIDKV_WITH_CUDA
  row_copy_cuda::merge_token_blocks(m, dst, stream);
#else
  (void)m, (void)dst, (void)stream;
  VIDKV_THROW(NotSupportedError, "layer cache on cuda: this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON)");
#endif
}

}  // namespace vidkv::cache_device_rows
