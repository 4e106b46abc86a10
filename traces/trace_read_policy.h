// What the trace reader accepts from an untrusted file, process-wide (docs/reliability.md).
//
// A trace is data from another tool, so by default the reader refuses everything in HDF5 that reaches outside the
// file or runs foreign code: external links (a link to an object in another file), external-file datasets (raw
// data kept in another file, e.g. /etc/passwd), virtual datasets (data mapped from other files) and filter plugins
// (HDF5 would dlopen shared libraries from HDF5_PLUGIN_PATH to decode an unknown filter). The command-line options
// --allow-external-data and --allow-filter-plugins (vidkv run, vidkv trace info|validate) turn those on.
//
// Each file's structure is read first in a child process (traces/trace_isolation.h) that must report progress at
// least every `stall_seconds`; a crash, a stall or a runaway allocation inside HDF5 there becomes an IoError naming
// the file and the object being read. Declared sizes are checked against the bytes the file stores and against
// `memory_budget_bytes` before anything is allocated.
#pragma once

#include <cstdint>

namespace vidkv {

struct TraceReadPolicy {
  bool allow_external_data = false;    // external links, external-file datasets, virtual datasets
  bool allow_filter_plugins = false;   // HDF5 dynamically loaded filters (HDF5_PLUGIN_PATH)
  // Largest block the reader allocates for one read (a layer's K + V + query as fp32, the embeddings), bytes.
  // Default: half the machine's physical memory, or $VIDKV_MEMORY_BUDGET_MB.
  std::int64_t memory_budget_bytes = 0;
  // Untrusted structure is read in a child process (off: $VIDKV_TRACE_ISOLATION=off; for debugging only).
  bool isolate = true;
  // The child is stopped when it reports no progress for this long (default 5 s, or $VIDKV_TRACE_STALL_SECONDS).
  double stall_seconds = 5.0;
};

// The process-wide policy (defaults above, read from the environment once).
const TraceReadPolicy& trace_read_policy();
// Replaces it (command-line options; tests). Also switches HDF5's filter-plugin loading on or off.
void set_trace_read_policy(const TraceReadPolicy& policy);

}  // namespace vidkv
