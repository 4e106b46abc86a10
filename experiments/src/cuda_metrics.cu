// Reconstruction-error sums on the device (cuda_metrics.h): a deterministic two-pass reduction in double.
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/experiments/src/cuda_metrics.h"

namespace vidkv::metrics_cuda {

namespace {

constexpr int kThreads = 256;

// Block (b, h) sums elements i = b * kThreads + tid + k * kBlocksPerHead * kThreads of head h (coalesced), then
// reduces its threads with a fixed tree; part[(h * kBlocksPerHead + b) * 4 + q].
__global__ void partial_sums(const float* x, const float* y, std::int64_t n, double* part) {
  __shared__ double s[4][kThreads];
  const std::int64_t h = blockIdx.y;
  const float* xh = x + h * n;
  const float* yh = y + h * n;
  double a2 = 0, b2 = 0, d2 = 0, ab = 0;
  for (std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * kThreads + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(kBlocksPerHead) * kThreads) {
    const double a = xh[i], b = yh[i];
    a2 += a * a;
    b2 += b * b;
    d2 += (a - b) * (a - b);
    ab += a * b;
  }
  s[0][threadIdx.x] = a2;
  s[1][threadIdx.x] = b2;
  s[2][threadIdx.x] = d2;
  s[3][threadIdx.x] = ab;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w)
      for (int q = 0; q < 4; ++q) s[q][threadIdx.x] += s[q][threadIdx.x + w];
    __syncthreads();
  }
  if (threadIdx.x < 4) part[(h * kBlocksPerHead + blockIdx.x) * 4 + threadIdx.x] = s[threadIdx.x][0];
}

// One thread per (head, quantity): the parts in index order.
__global__ void final_sums(const double* part, std::int64_t heads, double* out) {
  const std::int64_t t = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (t >= heads * 4) return;
  const std::int64_t h = t / 4, q = t % 4;
  double acc = 0;
  for (int b = 0; b < kBlocksPerHead; ++b) acc += part[(h * kBlocksPerHead + b) * 4 + q];
  out[t] = acc;
}

}  // namespace

void error_sums(const float* x, const float* y, std::int64_t heads, std::int64_t n, double* out, void* stream) {
  if (heads <= 0) return;
  auto s = static_cast<cudaStream_t>(stream);
  DeviceBuffer part(static_cast<std::size_t>(heads * kBlocksPerHead * 4) * sizeof(double), stream);
  partial_sums<<<dim3(kBlocksPerHead, static_cast<unsigned>(heads)), kThreads, 0, s>>>(x, y, n, part.as<double>());
  check_launch("metrics: partial_sums");
  final_sums<<<static_cast<unsigned>((heads * 4 + 127) / 128), 128, 0, s>>>(part.as<const double>(), heads, out);
  check_launch("metrics: final_sums");
}

}  // namespace vidkv::metrics_cuda
