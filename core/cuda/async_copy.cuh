// Asynchronous copies from device (global) memory to shared memory: PTX cp.async, sm_80 and newer. CUDA sources only.
//
// Why: a block-strided staging loop `for (i = tid; i < n; i += blockDim.x) smem[i] = gmem[i];` compiles to one load
// and the shared store that waits for it per iteration (the compiler does not hoist the next iteration's load above
// the store: the trip count is unknown), so a thread with 8 vectors to stage waits 8 device-memory round trips in a
// row. With cp.async the thread issues all its copies without holding a register or waiting, and waits once.
// Measured on an H200 (docs/performance.md, section 6): uniform's channel-axis encode tile and mixed_channel's
// gather / scatter staged this way.
//
// Usage: issue copies, then wait_all() in each issuing thread, then __syncthreads() (or __syncwarp() for copies a
// warp reads alone) before other threads read them.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace vidkv::cuda_async {

// Copies 4 bytes from src (device memory, 4-byte aligned) to the shared-memory address dst (4-byte aligned; the shared
// window's 32-bit address, __cvta_generic_to_shared of a pointer); cached in L1. The integer form is for loops that
// keep their destinations as integers and offsets; copy4 below takes a pointer.
__device__ __forceinline__ void copy4_shared(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(dst), "l"(src));
}

// The same for 8 bytes (8-byte aligned); cached in L1.
__device__ __forceinline__ void copy8_shared(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(dst), "l"(src));
}

// The same for 16 bytes (16-byte aligned), through L2 only (cp.async.cg: streamed data that the block reads once).
__device__ __forceinline__ void copy16_shared(std::uint32_t dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}

// copy4_shared, copy8_shared, copy16_shared to a shared-memory pointer dst.
__device__ __forceinline__ void copy4(void* dst, const void* src) {
  copy4_shared(static_cast<std::uint32_t>(__cvta_generic_to_shared(dst)), src);
}
__device__ __forceinline__ void copy8(void* dst, const void* src) {
  copy8_shared(static_cast<std::uint32_t>(__cvta_generic_to_shared(dst)), src);
}
__device__ __forceinline__ void copy16(void* dst, const void* src) {
  copy16_shared(static_cast<std::uint32_t>(__cvta_generic_to_shared(dst)), src);
}

// Closes the group of copies issued so far by this thread (for wait_all's older PTX form and for pipelines).
__device__ __forceinline__ void commit() { asm volatile("cp.async.commit_group;\n" ::); }

// Waits until every copy this thread issued has landed (not other threads' copies: synchronise after it).
__device__ __forceinline__ void wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

// Waits until at most `pending` of this thread's committed groups are still in flight (the older ones have landed):
// a pipeline that commits one group per stage waits for the stage before the newest with wait_prior<1>().
template <int pending>
__device__ __forceinline__ void wait_prior() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(pending) : "memory");
}

// Issues dst[i] = src[i] for the `count` 16-byte vectors i, block-strided over the block's threads, without waiting.
template <class Index>
__device__ inline void issue16(uint4* dst, const uint4* src, Index count) {
  for (Index i = threadIdx.x; i < count; i += blockDim.x) copy16(dst + i, src + i);
}

// issue16, then waits for this thread's copies. The caller synchronises the block before reading the vectors of
// other threads.
template <class Index>
__device__ inline void stage16(uint4* dst, const uint4* src, Index count) {
  issue16(dst, src, count);
  wait_all();
}

}  // namespace vidkv::cuda_async
