// Streaming-read benchmark: reads every layer of a trace one at a time and reports the wall time and the process's
// resident memory (VmRSS / VmHWM from /proc/self/status), to show that reading is bounded by one layer.
#pragma once

#include <cstdint>
#include <string>

#include "vidkv/traces/trace_reader.h"

namespace vidkv {

struct ReadBenchmark {
  TraceInfo info;
  double seconds = 0;                   // wall time to stream all layers
  std::int64_t layer_bytes_fp32 = 0;    // one layer's K + V as fp32: 2 * kv_heads * T * head_dim * 4 bytes
  std::int64_t baseline_rss_bytes = 0;  // VmRSS after opening the trace, before the first layer
  std::int64_t peak_rss_bytes = 0;      // VmHWM after the last layer
  bool peak_reset = false;              // the peak was reset to the baseline before streaming (clear_refs "5")
  double checksum = 0;                  // sum of all K and V values (keeps the reads from being optimised away)

  std::int64_t growth_bytes() const { return peak_rss_bytes - baseline_rss_bytes; }
  std::string summary() const;          // several lines, sizes in MB (10^6 bytes)
};

// Resident memory of this process from /proc/self/status, in bytes: "VmRSS" (now) or "VmHWM" (peak); -1 if unknown.
std::int64_t process_memory_bytes(const std::string& field);

// Streams every layer of `path` through TraceReader::read_layer, holding one layer at a time.
ReadBenchmark benchmark_streaming_read(const std::string& path);

}  // namespace vidkv
