#include "vidkv/experiments/src/trace_read_options.h"

#include <CLI/CLI.hpp>

#include "vidkv/traces/trace_read_policy.h"

namespace vidkv::cli {

void add_trace_read_options(CLI::App& app, TraceReadFlags& flags) {
  app.add_flag("--allow-external-data", flags.allow_external_data,
               "follow HDF5 external links and read external-file and virtual datasets (data outside the trace file;\n"
               "refused by default)");
  app.add_flag("--allow-filter-plugins", flags.allow_filter_plugins,
               "let HDF5 load filter plugins from HDF5_PLUGIN_PATH (refused by default)");
}

void apply_trace_read_options(const TraceReadFlags& flags) {
  TraceReadPolicy policy = trace_read_policy();
  policy.allow_external_data = flags.allow_external_data;
  policy.allow_filter_plugins = flags.allow_filter_plugins;
  set_trace_read_policy(policy);
}

}  // namespace vidkv::cli
