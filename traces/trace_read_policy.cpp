// The process-wide TraceReadPolicy (see trace_read_policy.h).
#include "vidkv/traces/trace_read_policy.h"

#include <hdf5.h>
#include <unistd.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "vidkv/traces/trace_isolation.h"

namespace vidkv {

namespace {

std::int64_t default_budget_bytes() {
  if (const char* mb = std::getenv("VIDKV_MEMORY_BUDGET_MB")) {
    char* end = nullptr;
    const long long v = std::strtoll(mb, &end, 10);
    if (end != mb && *end == '\0' && v > 0) return static_cast<std::int64_t>(v) << 20;
  }
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGE_SIZE);
  if (pages > 0 && page > 0) return static_cast<std::int64_t>(pages) * page / 2;
  return std::int64_t{4} << 30;
}

TraceReadPolicy defaults() {
  TraceReadPolicy p;
  p.memory_budget_bytes = default_budget_bytes();
  if (const char* iso = std::getenv("VIDKV_TRACE_ISOLATION")) p.isolate = std::string(iso) != "off";
  if (const char* s = std::getenv("VIDKV_TRACE_STALL_SECONDS")) {
    const double v = std::atof(s);
    if (v > 0) p.stall_seconds = v;
  }
  return p;
}

void apply_to_hdf5(const TraceReadPolicy& p) {
  // H5PL_ALL_PLUGIN enables every plugin kind; 0 disables loading altogether (HDF5 then never scans the plugin path).
  H5PLset_loading_state(p.allow_filter_plugins ? H5PL_ALL_PLUGIN : 0);
}

std::mutex& policy_mutex() {
  static std::mutex m;
  return m;
}

TraceReadPolicy& policy_storage() {
  static TraceReadPolicy p = [] {
    TraceReadPolicy d = defaults();
    apply_to_hdf5(d);
    return d;
  }();
  return p;
}

}  // namespace

const TraceReadPolicy& trace_read_policy() {
  if (trace_isolation::in_child()) return policy_storage();  // one thread; the mutex may be a stale copy
  std::lock_guard<std::mutex> lock(policy_mutex());
  return policy_storage();
}

void set_trace_read_policy(const TraceReadPolicy& policy) {
  std::lock_guard<std::mutex> lock(policy_mutex());
  policy_storage() = policy;
  if (policy_storage().memory_budget_bytes <= 0) policy_storage().memory_budget_bytes = default_budget_bytes();
  apply_to_hdf5(policy_storage());
}

}  // namespace vidkv
