#include "vidkv/core/thread_scratch.h"

#include <cstdlib>
#include <new>

#include "vidkv/core/host_memory.h"

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
  if (b.floats < floats || !b.data) {  // a block of 0 floats still gets its padding: vector kernels may write it
    b.data.reset(static_cast<float*>(allocate_host_block((floats + kPadding) * sizeof(float))));
    if (!b.data) throw std::bad_alloc();
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
