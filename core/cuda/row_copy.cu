// Row copies with dtype conversion on the device (row_copy.h). One thread per element, consecutive threads on
// consecutive channels of one token (coalesced on both sides); fp32 -> fp32 copies without rounding go through
// cudaMemcpy2DAsync (one row of `n * channels` values per head).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/cuda/row_copy.h"

namespace vidkv::row_copy_cuda {

namespace {

__global__ void copy_rows_kernel(Rows dst, std::int64_t dst_begin, Rows src, std::int64_t src_begin, std::int64_t n,
                                 std::int64_t channels, DType round, std::int64_t total) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= total) return;
  const std::int64_t c = i % channels, rest = i / channels;
  const std::int64_t t = rest % n, h = rest / n;
  const float v = load_as_float(src.data, src.dtype, static_cast<std::size_t>((h * src.tokens + src_begin + t) * channels + c));
  store_from_float(dst.data, dst.dtype, static_cast<std::size_t>((h * dst.tokens + dst_begin + t) * channels + c),
                   round_to_dtype(v, round));
}

}  // namespace

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
  const std::int64_t total = heads * n * channels;
  constexpr int kThreads = 256;
  copy_rows_kernel<<<static_cast<unsigned>((total + kThreads - 1) / kThreads), kThreads, 0, s>>>(dst, dst_begin, src, src_begin,
                                                                                                  n, channels, round, total);
  check_launch("cache rows: copy_rows_kernel");
}

}  // namespace vidkv::row_copy_cuda
