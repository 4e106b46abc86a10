// Per-thread reusable scratch memory for hot paths that need a large temporary per call (a composite
// quantizer's gathered channels, an FFT's components). Allocating such blocks per call costs a fresh mmap and a
// page fault per 4 KiB on every call; a thread's buffers are kept and grown instead. Lifetimes nest (a composite
// inside a composite on the same thread takes the next buffer of the thread's stack), so two live scratch blocks
// never share memory. Buffers are freed when the thread ends; each holds the largest size it was asked for.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace vidkv {

class ThreadScratch {
 public:
  // Borrows at least `floats` floats (plus 16 floats of padding that vector kernels may read or write past the
  // end), 64-byte aligned, uninitialised.
  explicit ThreadScratch(std::size_t floats);
  ~ThreadScratch();
  ThreadScratch(const ThreadScratch&) = delete;
  ThreadScratch& operator=(const ThreadScratch&) = delete;

  float* data() const { return data_; }

  // Whether p points into a scratch block that is live on the calling thread: such outputs are read back at
  // once (a composite's parts), which is how the SIMD kernels decide not to stream them past the caches.
  static bool holds(const void* p);

 private:
  float* data_ = nullptr;
};

}  // namespace vidkv
