#include "vidkv/experiments/src/layer_buffer_reuse.h"

#include <mutex>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace vidkv {

void keep_freed_layer_buffers() {
  static std::once_flag once;
  std::call_once(once, [] {
#if defined(__GLIBC__)
    mallopt(M_MMAP_THRESHOLD, 32 << 20);  // glibc's largest accepted value (DEFAULT_MMAP_THRESHOLD_MAX, 64-bit)
    mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  });
}

}  // namespace vidkv
