// The `vidkv` command line: dispatches to the subcommands registered in experiments/src/*_commands.cpp.
// Exit codes: 0 success, 1 a user error (config, input file, unsupported request), 2 usage error,
// 3 an unexpected failure. User errors print one line "vidkv: error: ..." naming the file, dataset or YAML line.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/experiments/src/command_line.h"

namespace {

void print_help(const std::vector<vidkv::cli::Command>& commands) {
  std::cout << "vidkv: low-bit KV-cache quantization for video LLMs (VidKV, KIVI and ablations), trace replay on CPU.\n\n"
               "usage:\n";
  for (const auto& c : commands) std::printf("  %s\n      %s\n", c.usage.c_str(), c.summary.c_str());
  std::cout << "\n`vidkv COMMAND --help` explains one command. Docs: README.md, experiments/README.md, traces/SCHEMA.md.\n";
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  const auto commands = vidkv::cli::all_commands();
  if (args.empty() || args[0] == "--help" || args[0] == "-h" || args[0] == "help") {
    print_help(commands);
    return args.empty() ? 2 : 0;
  }
  if (args[0] == "--version") {
    std::cout << "vidkv 0.1.0\n";
    return 0;
  }
  // Longest match of command words.
  const vidkv::cli::Command* best = nullptr;
  for (const auto& c : commands) {
    if (c.words.size() > args.size()) continue;
    bool match = true;
    for (std::size_t i = 0; i < c.words.size(); ++i) match = match && c.words[i] == args[i];
    if (match && (!best || c.words.size() > best->words.size())) best = &c;
  }
  if (!best) {
    std::cerr << "vidkv: error: unknown command '" << args[0] << (args.size() > 1 ? " " + args[1] : "")
              << "' (see vidkv --help)\n";
    return 2;
  }
  vidkv::cli::Args rest(args.begin() + static_cast<long>(best->words.size()), args.end());
  if (vidkv::cli::take_flag(rest, "--help") || vidkv::cli::take_flag(rest, "-h")) {
    std::cout << "usage: " << best->usage << "\n\n" << best->summary << ".\n\n" << best->help << "\n";
    return 0;
  }
  try {
    return best->run(rest);
  } catch (const vidkv::Error& e) {
    std::cerr << "vidkv: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "vidkv: unexpected error: " << e.what() << "\n";
    return 3;
  }
}
