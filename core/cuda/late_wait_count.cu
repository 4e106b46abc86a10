// The process-wide count of late-waiting launches (late_wait_count.h).
#include "vidkv/core/cuda/late_wait_count.h"

#include <atomic>

namespace vidkv::dependent_launch {

namespace {
std::atomic<std::int64_t> late_waits{0};
}  // namespace

void count_late_wait() { late_waits.fetch_add(1, std::memory_order_relaxed); }

std::int64_t late_wait_launches() { return late_waits.load(std::memory_order_relaxed); }

}  // namespace vidkv::dependent_launch
