// The CUDA runtime's answers about a kernel, asked once per process: the live cache builds decode-attention tables
// and launches per layer and decode step, and cudaFuncSetAttribute / cudaOccupancyMaxActiveBlocksPerMultiprocessor
// / cudaDeviceGetAttribute cost microseconds of host time each (host time is what a batch-1 decode step is bound
// by: docs/performance.md section 7). Only in CUDA builds (VIDKV_WITH_CUDA); thread-safe; per device (the
// current one). `kernel` is the kernel's host function pointer, cast to const void*. Every failure throws CudaError
// naming `what`.
#pragma once

#include <cstddef>

namespace vidkv::cuda_kernels {

// Lets `kernel` take `smem` bytes of dynamic shared memory (cudaFuncAttributeMaxDynamicSharedMemorySize, set to
// max(smem, 48 KB)). The limit only ever rises and never goes under CUDA's 48 KB default: a later call with fewer
// bytes keeps the larger limit, and a launch that needs no opt-in still fits, so every shape of a kernel launches
// whatever the order of the calls (lowering it once broke launches: the revert d30e775).
void allow_dynamic_smem(const void* kernel, std::size_t smem, const char* what);

// Thread blocks of `kernel` with `threads` threads and `smem` bytes of dynamic shared memory that one multiprocessor
// of the current device holds at once (allows `smem` first), at least 1.
int resident_blocks(const void* kernel, int threads, std::size_t smem, const char* what);

// Streaming multiprocessors of the current device.
int multiprocessors();

}  // namespace vidkv::cuda_kernels
