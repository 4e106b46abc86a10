// libFuzzer target: any byte string as a trace file, through what `vidkv trace info` and `vidkv run` do with a
// trace: validate_trace (in a child process, traces/trace_isolation.h), then, when it passes, TraceReader in this
// process reading the tokens, the query positions and every layer. Must end in a vidkv::Error or success: no
// crash, no hang (libFuzzer -timeout), no allocation past -rss_limit_mb (the memory budget is set to 256 MiB).
//
// Coverage: the checks run in a forked child, whose coverage counters do not reach libFuzzer; the feedback comes
// from the parent's side (error paths, the second read). HDF5 itself is not instrumented. Seeds: fuzz/corpus/
// fuzz_trace_reader (small valid traces and the crashing mutants of tests/data/bad_traces).
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "vidkv/core/error.h"
#include "vidkv/traces/trace_read_policy.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"

namespace {

std::string input_path() {
  static const std::string path = "/tmp/vidkv-fuzz-trace-" + std::to_string(::getpid()) + ".h5";
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  vidkv::TraceReadPolicy p = vidkv::trace_read_policy();
  p.memory_budget_bytes = std::int64_t{256} << 20;
  p.stall_seconds = 2.0;
  vidkv::set_trace_read_policy(p);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = input_path();
  // A new file each time (unlink first): a new inode, so no earlier check of this path is reused.
  ::unlink(path.c_str());
  if (FILE* f = std::fopen(path.c_str(), "wb")) {
    if (size) std::fwrite(data, 1, size, f);
    std::fclose(f);
  } else {
    return 0;
  }
  try {
    vidkv::validate_trace(path);
    vidkv::TraceReader reader(path);
    reader.tokens();
    reader.token_ids();
    reader.query_positions();
    vidkv::LayerData layer;
    for (int l = 0; l < reader.info().num_layers; ++l) reader.read_layer(l, layer);
  } catch (const vidkv::Error&) {
  }
  ::unlink(path.c_str());
  return 0;
}
