// The reconstruction-error sums of trace replay on the device (backend: cuda; experiments/src/cuda_replay.h).
// Host-only declarations, no CUDA headers (cuda_metrics.cu); only in builds with CUDA.
//
// The sums are those of metric_kernels::ErrorSums (x^2, y^2, (x - y)^2, x*y in double) per KV head. Order: each
// head's slab is cut into kBlocksPerHead contiguous-strided parts summed per thread, then a fixed tree per block,
// then the parts in index order: deterministic (the same bits on every run and GPU), but not the CPU's sequential
// order, so the metrics agree with backend: cpu to a few ulps of double (the tolerance the tests and the docs name),
// not bit for bit.
#pragma once

#include <cstdint>

namespace vidkv::metrics_cuda {

constexpr int kBlocksPerHead = 64;

// x, y: [heads, n] fp32 device memory. out: heads * 4 doubles of device memory, out[4h + {0,1,2,3}] =
// {sum x^2, sum y^2, sum (x-y)^2, sum x*y} over head h. Enqueued on `stream`.
void error_sums(const float* x, const float* y, std::int64_t heads, std::int64_t n, double* out, void* stream);

}  // namespace vidkv::metrics_cuda
