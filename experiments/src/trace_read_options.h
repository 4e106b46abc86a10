// Command-line options of the trace reader's policy (traces/trace_read_policy.h), shared by `vidkv run` and
// `vidkv trace info|validate`.
#pragma once

#include <string>

#include "vidkv/experiments/src/command_line.h"

namespace vidkv::cli {

// Takes --allow-external-data and --allow-filter-plugins out of `args` and applies them process-wide.
void take_trace_read_options(Args& args);

// Their --help lines.
extern const char* const kTraceReadOptionsHelp;

}  // namespace vidkv::cli
