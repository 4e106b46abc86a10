// The `vidkv` command line, on CLI11 (Debian/Ubuntu libcli11-dev): every command declares its positionals and
// options on a CLI::App, and CLI11 parses, validates and generates `--help` from those declarations, for every
// command and for the words that group commands (`vidkv trace --help`). Exit status: 0 success, 1 a user error
// (vidkv::Error: config, input file, unsupported request; one line "vidkv: error: ..."), 2 a usage error (an unknown
// option, a missing or malformed argument: one line naming it and the command's --help), 3 an unexpected failure.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace CLI {
class App;
}

namespace vidkv::cli {

// The arguments after the command words, as typed (`vidkv report DIR --layers 0` -> {"DIR", "--layers", "0"}):
// what the Python-implemented commands forward to their module, and what provenance records.
using Args = std::vector<std::string>;
// What runs once the command line has parsed; returns the exit status.
using Action = std::function<int(const Args& raw)>;

struct Command {
  std::vector<std::string> words;  // {"trace", "info"}
  std::string summary;             // one line, in `vidkv --help` and atop the command's own help
  std::string footer;              // printed after the generated options: details, files written, an example
  // Declares the command's positionals and options on `app` and returns the action, which reads what they bound.
  std::function<Action(CLI::App& app)> define;
};

// Every command of the vidkv binary, in the order `vidkv --help` lists them.
std::vector<Command> all_commands();

// Per-area registration (one file each under experiments/src/).
void add_plugin_commands(std::vector<Command>& out);
void add_trace_commands(std::vector<Command>& out);
void add_run_commands(std::vector<Command>& out);
void add_report_commands(std::vector<Command>& out);
void add_record_commands(std::vector<Command>& out);
void add_live_commands(std::vector<Command>& out);
void add_validate_commands(std::vector<Command>& out);
void add_bench_commands(std::vector<Command>& out);

// The parser of `commands`: the App "vidkv" with one subcommand per command word (nested: trace -> info), and the
// leaf of each command with its action.
struct CommandLine {
  std::unique_ptr<CLI::App> app;
  std::vector<std::pair<CLI::App*, Action>> leaves;  // in the order of `commands`
  std::vector<std::vector<std::string>> words;       // words of leaves[i]
  CommandLine();
  ~CommandLine();
  CommandLine(CommandLine&&) noexcept;
};
CommandLine build_command_line(const std::vector<Command>& commands);

// Parses argv with the parser of all_commands() and runs the chosen command (exit status as above).
int run_command_line(int argc, const char* const* argv);

}  // namespace vidkv::cli
