// Row copies with dtype conversion on the device (row_copy.h). Consecutive threads on consecutive values of one head's
// rows (coalesced on both sides); copies that move bytes unchanged go through cudaMemcpy2DAsync (one row of
// `n * channels` values per head).
#include <cuda_runtime.h>

#include <algorithm>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/row_copy.h"

namespace vidkv::row_copy_cuda {

namespace {

// Block row y (and y + gridDim.y, ...) copies head y; its x blocks stride over the head's n * channels values, which
// are consecutive on both sides (a head's rows [begin, begin + n) are contiguous): value j of head h is at
// (h * tokens + begin) * channels + j, so no index is divided. (The first version gave each thread one value of the
// whole copy and split its index into head, token and channel by 64-bit divisions: 84 us on an H100 for the fp32
// keys that a 32k-token layer exposes to the token protectors (expose_device_keys: 33.6 MB of fp16 read, 67 MB of
// fp32 written), under half the copy rate; Nsight Compute, docs/performance.md section 8.)
__global__ void copy_rows_kernel(Rows dst, std::int64_t dst_begin, Rows src, std::int64_t src_begin, std::int64_t heads,
                                 std::int64_t per_head, std::int64_t channels, DType round) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  for (std::int64_t h = blockIdx.y; h < heads; h += gridDim.y) {
    const auto s0 = static_cast<std::size_t>((h * src.tokens + src_begin) * channels);
    const auto d0 = static_cast<std::size_t>((h * dst.tokens + dst_begin) * channels);
    for (std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; j < per_head; j += stride)
      store_from_float(dst.data, dst.dtype, d0 + static_cast<std::size_t>(j),
                       round_to_dtype(load_as_float(src.data, src.dtype, s0 + static_cast<std::size_t>(j)), round));
  }
}

// Up to kMaxRowCopies copies, passed by value (kernel parameters: no host-to-device copy). blockIdx.y picks the
// copy; the x blocks stride over it. words[j] > 0: copy j moves bytes unchanged (same dtype, rounding a no-op) and
// every row start is 16-byte aligned, so it goes 16 bytes at a time, words[j] 16-byte words per head; otherwise value
// by value through fp32 (row_copy.h).
struct RowCopyBatch {
  RowCopy copies[kMaxRowCopies];
  std::int64_t words[kMaxRowCopies];
};

__global__ void copy_rows_batch_kernel(RowCopyBatch batch, std::int64_t heads, std::int64_t channels) {
  const RowCopy& c = batch.copies[blockIdx.y];
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (const std::int64_t words = batch.words[blockIdx.y]; words > 0) {
    const std::int64_t e = dtype_size(c.src.dtype);
    const auto* src = reinterpret_cast<const uint4*>(static_cast<const char*>(c.src.data) + c.src_begin * channels * e);
    auto* dst = reinterpret_cast<uint4*>(static_cast<char*>(c.dst.data) + c.dst_begin * channels * e);
    const std::int64_t src_pitch = c.src.tokens * channels * e / 16, dst_pitch = c.dst.tokens * channels * e / 16;
    for (std::int64_t i = first; i < heads * words; i += stride) {
      const std::int64_t h = i / words, w = i - h * words;
      dst[h * dst_pitch + w] = src[h * src_pitch + w];
    }
    return;
  }
  const std::int64_t total = heads * c.n * channels;
  for (std::int64_t i = first; i < total; i += stride) {
    const std::int64_t ch = i % channels, rest = i / channels;
    const std::int64_t t = rest % c.n, h = rest / c.n;
    const float v = load_as_float(c.src.data, c.src.dtype, static_cast<std::size_t>((h * c.src.tokens + c.src_begin + t) * channels + ch));
    store_from_float(c.dst.data, c.dst.dtype, static_cast<std::size_t>((h * c.dst.tokens + c.dst_begin + t) * channels + ch),
                     round_to_dtype(v, c.round));
  }
}

// 16-byte words per head when copy `c` can move bytes unchanged, 16 bytes at a time; else 0.
std::int64_t word_copy(const RowCopy& c, std::int64_t channels) {
  const bool unchanged = c.dst.dtype == c.src.dtype && (c.round == DType::f32 || c.round == c.src.dtype);
  if (!unchanged) return 0;
  const std::int64_t e = dtype_size(c.src.dtype), row = channels * e;
  const auto aligned = [](const void* p, std::int64_t off) { return (reinterpret_cast<std::uintptr_t>(p) + static_cast<std::uintptr_t>(off)) % 16 == 0; };
  if (row % 16 || !aligned(c.src.data, c.src_begin * row) || !aligned(c.dst.data, c.dst_begin * row)) return 0;
  return c.n * row / 16;
}

}  // namespace

void copy_rows_batch(const RowCopy* copies, std::size_t count, std::int64_t heads, std::int64_t channels, void* stream) {
  if (heads <= 0 || channels <= 0) return;
  constexpr int kThreads = 256;
  auto s = static_cast<cudaStream_t>(stream);
  RowCopyBatch batch{};
  unsigned used = 0;
  std::int64_t largest = 0;
  auto launch = [&] {
    if (used == 0) return;
    // Enough blocks for the largest copy's work items, at most 1024 per copy (the rest by the stride loop).
    const std::int64_t blocks = std::min<std::int64_t>((largest + kThreads - 1) / kThreads, 1024);
    copy_rows_batch_kernel<<<dim3(static_cast<unsigned>(blocks), used), kThreads, 0, s>>>(batch, heads, channels);
    check_launch("cache rows: copy_rows_batch_kernel");
    used = 0;
    largest = 0;
  };
  for (std::size_t i = 0; i < count; ++i) {
    if (copies[i].n <= 0) continue;
    const std::int64_t words = word_copy(copies[i], channels);
    batch.words[used] = words;
    batch.copies[used++] = copies[i];
    largest = std::max(largest, heads * (words > 0 ? words : copies[i].n * channels));  // work items of the copy
    if (used == kMaxRowCopies) launch();
  }
  launch();
}

namespace {

__global__ void merge_token_blocks_kernel(TokenBlockMerge m, std::uint8_t* dst, std::int64_t total) {
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.x, tokens = m.total_tokens();
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += stride) {
    std::int64_t rest = i;
    int s = 0;
    while (rest >= tokens * m.heads * static_cast<std::int64_t>(m.width[s])) rest -= tokens * m.heads * static_cast<std::int64_t>(m.width[s++]);
    // rest = (h * tokens + t) * width + j within section s; token t of the merged block is token t - first of block b
    const auto w = static_cast<std::int64_t>(m.width[s]);
    const std::int64_t ht = rest / w, j = rest - ht * w, h = ht / tokens;
    std::int64_t t = ht - h * tokens;
    int b = 0;
    while (t >= m.tokens[b]) t -= m.tokens[b++];
    dst[m.dst_offset[s] + static_cast<std::size_t>(rest)] = m.src[b][m.src_offset[b][s] + static_cast<std::size_t>((h * m.tokens[b] + t) * w + j)];
  }
}

}  // namespace

void merge_token_blocks(const TokenBlockMerge& m, std::uint8_t* dst, void* stream) {
  const auto total = static_cast<std::int64_t>(m.bytes());
  if (total == 0) return;
  constexpr int kThreads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((total + kThreads - 1) / kThreads, 256));
  merge_token_blocks_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(m, dst, total);
  check_launch("cache: merge_token_blocks_kernel");
}

void copy_rows(Rows dst, std::int64_t dst_begin, Rows src, std::int64_t src_begin, std::int64_t heads, std::int64_t n,
               std::int64_t channels, DType round, void* stream) {
  if (n <= 0 || heads <= 0 || channels <= 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  if (dst.dtype == src.dtype && (round == DType::f32 || round == src.dtype)) {
    const std::size_t e = static_cast<std::size_t>(dtype_size(src.dtype));
    const std::size_t width = static_cast<std::size_t>(n * channels) * e;
    cuda_check(cudaMemcpy2DAsync(static_cast<char*>(dst.data) + static_cast<std::size_t>(dst_begin * channels) * e,
                                 static_cast<std::size_t>(dst.tokens * channels) * e,
                                 static_cast<const char*>(src.data) + static_cast<std::size_t>(src_begin * channels) * e,
                                 static_cast<std::size_t>(src.tokens * channels) * e, width, static_cast<std::size_t>(heads),
                                 cudaMemcpyDeviceToDevice, s),
               "cache rows: cudaMemcpy2DAsync");
    return;
  }
  // About 2,048 blocks of 256 threads in all when the copy is that large (two waves of 8 per multiprocessor on an
  // H100 / H200's 132), each thread then taking several values; heads beyond the grid's y limit by the kernel's
  // head loop.
  const std::int64_t per_head = n * channels;
  constexpr int kThreads = 256;
  const std::int64_t rows = std::min<std::int64_t>(heads, 65535);
  const std::int64_t x_blocks = std::max<std::int64_t>(1, std::min<std::int64_t>((per_head + kThreads - 1) / kThreads, 2048 / rows));
  copy_rows_kernel<<<dim3(static_cast<unsigned>(x_blocks), static_cast<unsigned>(rows)), kThreads, 0, s>>>(
      dst, dst_begin, src, src_begin, heads, per_head, channels, round);
  check_launch("cache rows: copy_rows_kernel");
}

}  // namespace vidkv::row_copy_cuda
