// Row copies between [heads, tokens, channels] device buffers, with dtype conversion: the device side of the
// cache lifecycle (cache_lifecycle.cpp: appending tokens, gathering a block's rows, growing the full-precision
// store, writing decoded blocks and the rounded residual into the materialized cache). Host-only declarations, no
// CUDA headers (row_copy.cu); only in builds with CUDA.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/token_block_merge.h"

namespace vidkv::row_copy_cuda {

// A [heads, tokens, channels] row-major buffer of `dtype` on the device (`tokens` is its token capacity).
struct Rows {
  void* data = nullptr;
  DType dtype = DType::f32;
  std::int64_t tokens = 0;
};

// dst rows [dst_begin, dst_begin + n) of every head <- src rows [src_begin, src_begin + n), each value read as
// fp32 (exact), rounded to `round` (f32: unchanged) and stored as dst.dtype (rounding to nearest even).
// Enqueued on `stream`; n == 0 does nothing.
void copy_rows(Rows dst, std::int64_t dst_begin, Rows src, std::int64_t src_begin, std::int64_t heads, std::int64_t n,
               std::int64_t channels, DType round, void* stream);

// One row copy of a batch: what copy_rows() takes, for `heads` heads of `channels` channels shared by the batch.
struct RowCopy {
  Rows dst;
  std::int64_t dst_begin = 0;
  Rows src;
  std::int64_t src_begin = 0;
  std::int64_t n = 0;
  DType round = DType::f32;
};

// The copies of `copies` (any count; copies with n == 0 are skipped) in as few kernel launches as possible (one per
// kMaxRowCopies), each value converted exactly as copy_rows() converts it. The live cache makes one launch where it
// made one cudaMemcpy2DAsync per block and side: host time per decode step is what it costs (issue 12). The copies
// must not overlap each other's destinations.
constexpr int kMaxRowCopies = 16;
void copy_rows_batch(const RowCopy* copies, std::size_t count, std::int64_t heads, std::int64_t channels, void* stream);

// The merge of core/token_block_merge.h into `dst` (device memory of m.bytes() bytes; the sources on the device too),
// one launch on `stream`, byte by byte (at most 32 tokens' bytes per layer and decode step).
void merge_token_blocks(const TokenBlockMerge& m, std::uint8_t* dst, void* stream);

}  // namespace vidkv::row_copy_cuda
