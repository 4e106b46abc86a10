#include "vidkv/core/host_memory.h"

#include <sys/mman.h>

#include <cstdlib>

namespace vidkv {

void* allocate_host_block(std::size_t bytes) {
  constexpr std::size_t kHuge = std::size_t{2} << 20;
  const std::size_t align = bytes >= kHuge ? kHuge : 64;
  const std::size_t rounded = (bytes + align - 1) / align * align;
  void* p = rounded ? std::aligned_alloc(align, rounded) : nullptr;
#ifdef MADV_HUGEPAGE
  if (p && align == kHuge) ::madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

}  // namespace vidkv
