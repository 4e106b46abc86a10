#include "vidkv/core/thread_scratch.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace vidkv {

namespace {

struct Buffer {
  struct Free {
    void operator()(float* p) const { std::free(p); }
  };
  std::unique_ptr<float, Free> data;
  std::size_t floats = 0;
};

struct Stack {
  std::vector<Buffer> buffers;
  std::size_t depth = 0;
};

thread_local Stack stack;

constexpr std::size_t kPadding = 16;

}  // namespace

ThreadScratch::ThreadScratch(std::size_t floats) {
  if (stack.depth == stack.buffers.size()) stack.buffers.emplace_back();
  Buffer& b = stack.buffers[stack.depth];
  if (b.floats < floats) {
    // As HostTensor: blocks of 2 MiB or more on 2 MiB boundaries, advised as transparent huge pages.
    constexpr std::size_t kHuge = std::size_t{2} << 20;
    const std::size_t want = (floats + kPadding) * sizeof(float);
    const std::size_t align = want >= kHuge ? kHuge : 64;
    const std::size_t bytes = (want + align - 1) / align * align;
    b.data.reset(static_cast<float*>(std::aligned_alloc(align, bytes)));
    if (!b.data) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (align == kHuge) ::madvise(b.data.get(), bytes, MADV_HUGEPAGE);
#endif
    b.floats = floats;
  }
  data_ = b.data.get();
  ++stack.depth;
}

ThreadScratch::~ThreadScratch() { --stack.depth; }

bool ThreadScratch::holds(const void* p) {
  const auto* c = static_cast<const char*>(p);
  for (std::size_t i = 0; i < stack.depth; ++i) {
    const auto* begin = reinterpret_cast<const char*>(stack.buffers[i].data.get());
    if (c >= begin && c < begin + stack.buffers[i].floats * sizeof(float)) return true;
  }
  return false;
}

}  // namespace vidkv
