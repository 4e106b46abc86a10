// Host -> device writes as kernel parameters (parameter_copy.h).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/parameter_copy.h"
#include "vidkv/core/error.h"

namespace vidkv::cuda_parameter_copy {

namespace {

constexpr int kThreads = 256;

// __grid_constant__: the parameter struct is read in place (indexed at run time) instead of copied per thread.
__global__ void write_kernel(std::uint8_t* dst, const __grid_constant__ Writes w) {
  for (std::uint32_t s = 0; s < w.segments; ++s) {
    const std::uint32_t b = w.begin[s], n = w.begin[s + 1] - b;
    std::uint8_t* to = dst + w.offset[s];
    for (std::uint32_t i = threadIdx.x; i < n; i += kThreads) to[i] = w.data[b + i];
  }
}

}  // namespace

void enqueue(void* dst, const Writes& w, void* stream) {
  if (w.empty()) return;
  write_kernel<<<1, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(static_cast<std::uint8_t*>(dst), w);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    VIDKV_THROW(CudaError, "host -> device write of ", w.bytes(), " bytes as kernel parameters: kernel launch: ",
                cudaGetErrorString(e));
}

}  // namespace vidkv::cuda_parameter_copy
