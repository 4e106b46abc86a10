#include "vidkv/experiments/src/trace_read_options.h"

#include "vidkv/traces/trace_read_policy.h"

namespace vidkv::cli {

const char* const kTraceReadOptionsHelp =
    "  --allow-external-data    follow HDF5 external links and read external-file and virtual datasets (data\n"
    "                           outside the trace file; refused by default)\n"
    "  --allow-filter-plugins   let HDF5 load filter plugins from HDF5_PLUGIN_PATH (refused by default)\n";

void take_trace_read_options(Args& args) {
  TraceReadPolicy policy = trace_read_policy();
  policy.allow_external_data = take_flag(args, "--allow-external-data");
  policy.allow_filter_plugins = take_flag(args, "--allow-filter-plugins");
  set_trace_read_policy(policy);
}

}  // namespace vidkv::cli
