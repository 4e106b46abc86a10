// The `vidkv` command: subcommands register here, each with a one-line summary and its own --help text.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace vidkv::cli {

// Arguments after the subcommand words (e.g. after `vidkv trace info`).
using Args = std::vector<std::string>;

struct Command {
  std::vector<std::string> words;  // {"trace", "info"}
  std::string usage;               // "vidkv trace info TRACE.h5"
  std::string summary;             // one line
  std::string help;                // full --help text (options, examples)
  std::function<int(const Args&)> run;
};

// Every subcommand of the vidkv binary, in the order `vidkv --help` lists them.
std::vector<Command> all_commands();

// Per-area registration (one file each under experiments/src/).
void add_plugin_commands(std::vector<Command>& out);
void add_trace_commands(std::vector<Command>& out);
void add_run_commands(std::vector<Command>& out);
void add_report_commands(std::vector<Command>& out);
void add_record_commands(std::vector<Command>& out);
void add_live_commands(std::vector<Command>& out);
void add_bench_commands(std::vector<Command>& out);

// Small helpers for option parsing: "--name value" or "--name=value".
bool take_flag(Args& args, const std::string& name);
bool take_option(Args& args, const std::string& name, std::string& value);
// Throws ConfigError "unknown option" naming the command when an argument starting with "-" is left.
void reject_unknown_options(const Args& args, const std::string& command);

}  // namespace vidkv::cli
