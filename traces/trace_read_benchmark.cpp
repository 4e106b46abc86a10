// benchmark_streaming_read: times a layer-by-layer read of a trace and measures peak resident memory.
#include "vidkv/traces/trace_read_benchmark.h"

#include <chrono>
#include <fstream>
#include <sstream>

#include "vidkv/core/error.h"

namespace vidkv {

std::int64_t process_memory_bytes(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) != 0) continue;
    std::istringstream in(line.substr(field.size() + 1));
    std::int64_t kb = -1;
    in >> kb;
    return kb < 0 ? -1 : kb * 1024;
  }
  return -1;
}

namespace {

// Writing "5" to /proc/self/clear_refs resets VmHWM to the current RSS (Linux >= 4.0).
bool reset_peak_rss() {
  std::ofstream clear("/proc/self/clear_refs");
  if (!clear) return false;
  clear << "5";
  clear.flush();
  return static_cast<bool>(clear);
}

std::string megabytes(std::int64_t bytes) {
  std::ostringstream out;
  out.setf(std::ios::fixed);
  out.precision(1);
  out << static_cast<double>(bytes) / 1e6 << " MB";
  return out.str();
}

}  // namespace

std::string ReadBenchmark::summary() const {
  const double total_bytes = static_cast<double>(layer_bytes_fp32) / 4.0 * dtype_size(info.dtype) * info.num_layers;
  std::ostringstream out;
  out << "trace: " << info.path << ": " << info.num_layers << " layers x " << info.num_kv_heads << " KV heads x "
      << info.tokens << " tokens x " << info.head_dim << " dims, " << dtype_name(info.dtype) << "\n";
  out << "read: all " << info.num_layers << " layers (K and V) in " << seconds << " s, "
      << (seconds > 0 ? total_bytes / 1e6 / seconds : 0.0) << " MB/s of stored data, checksum " << checksum << "\n";
  out << "resident memory: baseline " << megabytes(baseline_rss_bytes) << ", peak " << megabytes(peak_rss_bytes)
      << ", peak growth " << megabytes(growth_bytes()) << (peak_reset ? "" : " (peak not reset: includes earlier peaks)")
      << "\n";
  out << "one layer K+V as fp32: " << megabytes(layer_bytes_fp32) << "; growth - one layer = "
      << megabytes(growth_bytes() - layer_bytes_fp32);
  return out.str();
}

ReadBenchmark benchmark_streaming_read(const std::string& path) {
  TraceReader reader(path);
  ReadBenchmark b;
  b.info = reader.info();
  b.layer_bytes_fp32 = 2 * std::int64_t{b.info.num_kv_heads} * b.info.tokens * b.info.head_dim * 4;
  b.peak_reset = reset_peak_rss();
  b.baseline_rss_bytes = process_memory_bytes("VmRSS");
  const auto start = std::chrono::steady_clock::now();
  LayerData layer;  // one layer buffer, reused: the streaming pattern experiments follow
  for (int l = 0; l < b.info.num_layers; ++l) {
    reader.read_layer(l, layer);
    double sum = 0;
    for (float v : layer.key) sum += v;
    for (float v : layer.value) sum += v;
    b.checksum += sum;
  }
  b.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  b.peak_rss_bytes = process_memory_bytes("VmHWM");
  if (b.baseline_rss_bytes < 0 || b.peak_rss_bytes < 0)
    VIDKV_THROW(NotSupportedError, path, ": cannot read VmRSS/VmHWM from /proc/self/status on this system");
  return b;
}

}  // namespace vidkv
