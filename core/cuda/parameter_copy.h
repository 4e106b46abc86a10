// Small host -> device writes carried in one kernel launch's parameters: no cudaMemcpy, no event, no pinned staging
// buffer. Host-only declarations, no CUDA headers (parameter_copy.cu); enqueue() only in builds with CUDA.
//
// Why: a live decode step at batch 1 is bound by the host, and there a CUDA runtime call other than a kernel launch
// costs the step far more than its own time. Measured on the H200 machine (docs/performance.md section 8, 2026-12-02,
// third session): one pinned cudaMemcpyAsync with its event record and event synchronize per layer, added beside
// DynamicCache, took 92 us per layer itself and made the model's own calls 4.3 ms per step slower (28 layers); a
// kernel launch does not. Decode attention's per-step table changes (the new tiles and blocks, the sequence entries:
// a few hundred bytes) go up this way; whole tables still go through pinned memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace vidkv::cuda_parameter_copy {

// What one launch carries: at most kMaxSegments writes of kMaxBytes in all, so that the parameters stay under the
// 4 KB that every CUDA version accepts.
constexpr int kMaxSegments = 16;
constexpr std::size_t kMaxBytes = 3840;

// The writes of one launch: write s puts bytes [begin[s], begin[s + 1]) of `data` at dst + offset[s].
struct Writes {
  std::uint32_t segments = 0;
  std::uint32_t offset[kMaxSegments] = {};
  std::uint32_t begin[kMaxSegments + 1] = {};
  alignas(16) std::uint8_t data[kMaxBytes] = {};

  // Adds a write of `bytes` bytes from src to dst + dst_offset (bytes == 0: nothing to add, true). Returns false and
  // adds nothing when the launch has no segment or byte left for it.
  bool add(std::size_t dst_offset, const void* src, std::size_t bytes) {
    if (bytes == 0) return true;
    const std::size_t used = begin[segments];
    if (segments == static_cast<std::uint32_t>(kMaxSegments) || bytes > kMaxBytes - used || dst_offset > UINT32_MAX)
      return false;
    std::memcpy(data + used, src, bytes);
    offset[segments] = static_cast<std::uint32_t>(dst_offset);
    ++segments;
    begin[segments] = static_cast<std::uint32_t>(used + bytes);
    return true;
  }
  std::size_t bytes() const { return begin[segments]; }
  bool empty() const { return segments == 0; }
};
// The launch's parameters: the destination pointer (8 bytes), padding to the struct's 16-byte alignment, the struct.
static_assert(16 + sizeof(Writes) <= 4096, "kernel parameters above 4 KB");

// Enqueues w's writes into device memory `dst` on `stream` (one launch of one block; none when w is empty). Every
// dst + offset[s] .. + its bytes must lie in one allocation. Ordered with the stream's other work, like a
// cudaMemcpyAsync from pinned memory, but the bytes travel in the launch: w may be reused as soon as this returns.
// Throws CudaError when the launch fails.
void enqueue(void* dst, const Writes& w, void* stream);

}  // namespace vidkv::cuda_parameter_copy
