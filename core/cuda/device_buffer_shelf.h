// A few device buffers kept for reuse by one owner whose device work all runs on one stream (a LayerCache on
// cuda): a buffer given back after the work that reads it was enqueued can serve the owner's next request at once,
// because every later use is enqueued on the same stream and so runs after that work (the ordering that
// cudaFreeAsync + cudaMallocAsync on one stream also give, without the two runtime calls per buffer). Host-only
// code, no CUDA headers (DeviceBuffer, device_memory.h). Not thread-safe: the owner serialises its calls.
//
// Why: under KIVI's lifecycle a live cache quantizes one value token per decode step and merges it into the block
// before it (cache_lifecycle.h), which took three allocations and three frees per layer and step; on the H200
// machine's host these runtime calls were most of the step's extra host time over a cache that only appends
// (docs/performance.md section 7).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

#include "vidkv/core/cuda/device_memory.h"

namespace vidkv {

class DeviceBufferShelf {
 public:
  // At most this many buffers wait on the shelf; giving one more frees the oldest (stream-ordered, as DeviceBuffer).
  static constexpr std::size_t kMaxBuffers = 4;

  // A buffer of exactly `bytes`: one from the shelf, else a new one on `stream`. Its contents are whatever the last
  // user left.
  DeviceBuffer take(std::size_t bytes, void* stream) {
    for (std::size_t i = 0; i < shelf_.size(); ++i)
      if (shelf_[i].bytes() == bytes) {
        DeviceBuffer out = std::move(shelf_[i]);
        shelf_.erase(shelf_.begin() + static_cast<std::ptrdiff_t>(i));
        ++reuses_;
        return out;
      }
    ++allocations_;
    return DeviceBuffer(bytes, stream);
  }
  // Puts `b` on the shelf (nothing for an empty buffer). Call it after enqueuing the last work that uses b.
  void give(DeviceBuffer&& b) {
    if (b.bytes() == 0) return;
    if (shelf_.size() == kMaxBuffers) shelf_.erase(shelf_.begin());
    shelf_.push_back(std::move(b));
  }
  // Bytes of device memory the shelf holds.
  std::size_t bytes() const {
    std::size_t n = 0;
    for (const DeviceBuffer& b : shelf_) n += b.bytes();
    return n;
  }
  // Requests served from the shelf and requests that allocated, since construction (tests).
  std::size_t reuses() const { return reuses_; }
  std::size_t allocations() const { return allocations_; }

 private:
  std::vector<DeviceBuffer> shelf_;
  std::size_t reuses_ = 0, allocations_ = 0;
};

}  // namespace vidkv
