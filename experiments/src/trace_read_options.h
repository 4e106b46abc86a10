// Command-line options of the trace reader's policy (traces/trace_read_policy.h), shared by `vidkv run` and
// `vidkv trace info|validate`: --allow-external-data and --allow-filter-plugins (both refused by default).
#pragma once

namespace CLI {
class App;
}

namespace vidkv::cli {

struct TraceReadFlags {
  bool allow_external_data = false;   // follow HDF5 external links, external-file and virtual datasets
  bool allow_filter_plugins = false;  // let HDF5 load filter plugins from HDF5_PLUGIN_PATH
};

// Declares the two flags on `app` (with their --help lines), bound to `flags`, which must outlive the parse.
void add_trace_read_options(CLI::App& app, TraceReadFlags& flags);

// Applies `flags` process-wide (set_trace_read_policy), before any trace is opened.
void apply_trace_read_options(const TraceReadFlags& flags);

}  // namespace vidkv::cli
