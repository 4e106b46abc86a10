// Host -> device writes as kernel parameters (parameter_copy.h).
#include <cuda_runtime.h>

#include <cstring>

#include "vidkv/core/cuda/parameter_copy.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"

namespace vidkv::cuda_parameter_copy {

namespace {

constexpr int kThreads = 256;

// The launch's parameters: Writes' header and the first Cap bytes of its data (Cap: the smallest of kLaunchBytes that
// holds them). The runtime copies every launch's whole parameter block, so a patch of a few hundred bytes (a decode
// step's usual one: docs/decode-attention.md) goes up in a launch of about 400 bytes of parameters instead of 4 KB.
template <std::size_t Cap>
struct SizedWrites {
  std::uint32_t segments;
  std::uint32_t offset[kMaxSegments];
  std::uint32_t begin[kMaxSegments + 1];
  alignas(16) std::uint8_t data[Cap];
};

// __grid_constant__: the parameter struct is read in place (indexed at run time) instead of copied per thread.
template <std::size_t Cap>
__global__ void write_kernel(std::uint8_t* dst, const __grid_constant__ SizedWrites<Cap> w) {
  for (std::uint32_t s = 0; s < w.segments; ++s) {
    const std::uint32_t b = w.begin[s], n = w.begin[s + 1] - b;
    std::uint8_t* to = dst + w.offset[s];
    for (std::uint32_t i = threadIdx.x; i < n; i += kThreads) to[i] = w.data[b + i];
  }
}

template <std::size_t Cap>
void launch(void* dst, const Writes& w, cudaStream_t stream) {
  static_assert(Cap % 16 == 0 && Cap <= kMaxBytes, "a capacity of whole 16-byte pieces within Writes' data");
  SizedWrites<Cap> sized;
  sized.segments = w.segments;
  std::memcpy(sized.offset, w.offset, sizeof(sized.offset));
  std::memcpy(sized.begin, w.begin, sizeof(sized.begin));
  std::memcpy(sized.data, w.data, w.bytes());  // the rest is never read (begin[segments] = bytes())
  write_kernel<Cap><<<1, kThreads, 0, stream>>>(static_cast<std::uint8_t*>(dst), sized);
}

// VIDKV_PARAMETER_COPY=full: every launch with the whole 3,840 bytes of data, as before the capacities (A / B
// measurements of the host time).
bool full_launches() {
  static const bool full = env_equals("VIDKV_PARAMETER_COPY", "full");
  return full;
}

}  // namespace

void enqueue(void* dst, const Writes& w, void* stream) {
  if (w.empty()) return;
  auto* st = static_cast<cudaStream_t>(stream);
  if (full_launches()) launch<kLaunchBytes[2]>(dst, w, st);
  else if (w.bytes() <= kLaunchBytes[0]) launch<kLaunchBytes[0]>(dst, w, st);
  else if (w.bytes() <= kLaunchBytes[1]) launch<kLaunchBytes[1]>(dst, w, st);
  else launch<kLaunchBytes[2]>(dst, w, st);
  const cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    VIDKV_THROW(CudaError, "host -> device write of ", w.bytes(), " bytes as kernel parameters: kernel launch: ",
                cudaGetErrorString(e));
}

}  // namespace vidkv::cuda_parameter_copy
