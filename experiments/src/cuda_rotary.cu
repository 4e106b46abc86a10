// The rotary embedding on the device (cuda_rotary.h).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/cuda_rotary.h"

namespace vidkv::rotary_cuda {

namespace {

constexpr int kThreads = 256;

__global__ void rotate_rows_kernel(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim,
                                   const double* cos_sin, const std::int32_t* table_row, RotaryPairing pairing) {
  const std::int64_t half = dim / 2;
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x;
  if (t >= heads * rows * half) return;
  const std::int64_t i = t % half, row = t / half, r = row % rows;  // row = h * rows + r
  const std::int64_t tr = table_row ? table_row[r] : r;
  const double* cs = cos_sin + (tr * half + i) * 2;
  std::int64_t j0 = 0, j1 = 0;
  rotary_pair(pairing, i, half, j0, j1);
  rotate_pair(x + row * dim, j0, j1, cs[0], cs[1]);
}

}  // namespace

void rotate_rows(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim, const double* cos_sin,
                 const std::int32_t* table_row, RotaryPairing pairing, void* stream) {
  VIDKV_REQUIRE(dim % 2 == 0, ShapeError, "rotary embedding on cuda: head_dim ", dim, " is odd");
  const std::int64_t threads = heads * rows * (dim / 2);
  if (threads <= 0) return;
  const auto blocks = static_cast<unsigned>((threads + kThreads - 1) / kThreads);
  rotate_rows_kernel<<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(x, heads, rows, dim, cos_sin, table_row,
                                                                                  pairing);
  check_launch("replay: rotary embedding");
}

}  // namespace vidkv::rotary_cuda
