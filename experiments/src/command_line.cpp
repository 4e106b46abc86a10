#include "vidkv/experiments/src/command_line.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <exception>
#include <iostream>

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"

namespace vidkv::cli {

namespace {

// Help lines of the words that only group commands.
std::string group_summary(const std::string& word) {
  if (word == "trace") return "describe, check, synthesize or benchmark trace files (traces/SCHEMA.md)";
  if (word == "plugins") return "list the plugins and presets, or describe one plugin's parameters";
  if (word == "presets") return "the presets' nominal and effective bits (`vidkv presets bits`)";
  return word + " commands";
}

// A usage error of command `where` ("vidkv trace synth"): reported with the help to read; exit status 2.
int usage_error(const std::string& where, const CLI::ParseError& e) {
  std::cerr << "vidkv: error: " << where << ": " << e.what() << " (see " << where << " --help)\n";
  return 2;
}

constexpr const char* kDescription =
    "vidkv: low-bit KV-cache quantization for video LLMs (VidKV, KIVI and ablations), trace replay on CPU.";
constexpr const char* kFooter =
    "`vidkv COMMAND --help` explains one command. Docs: README.md, experiments/README.md, traces/SCHEMA.md.";

}  // namespace

std::vector<Command> all_commands() {
  std::vector<Command> out;
  add_run_commands(out);
  add_live_commands(out);
  add_validate_commands(out);
  add_record_commands(out);
  add_report_commands(out);
  add_bench_commands(out);
  add_trace_commands(out);
  add_plugin_commands(out);
  return out;
}

CommandLine::CommandLine() = default;
CommandLine::~CommandLine() = default;
CommandLine::CommandLine(CommandLine&&) noexcept = default;

CommandLine build_command_line(const std::vector<Command>& commands) {
  CommandLine cl;
  cl.app = std::make_unique<CLI::App>(kDescription, "vidkv");
  cl.app->footer(kFooter);
  cl.app->set_version_flag("--version", "vidkv 0.1.0");
  cl.app->require_subcommand(1);
  for (const Command& c : commands) {
    CLI::App* parent = cl.app.get();
    for (std::size_t i = 0; i + 1 < c.words.size(); ++i) {
      CLI::App* group = nullptr;
      for (CLI::App* sub : parent->get_subcommands({})) group = sub->get_name() == c.words[i] ? sub : group;
      if (!group) {
        group = parent->add_subcommand(c.words[i], group_summary(c.words[i]));
        group->require_subcommand(1);
        group->footer("`vidkv " + c.words[i] + " COMMAND --help` explains one of them.");
      }
      parent = group;
    }
    CLI::App* leaf = parent->add_subcommand(c.words.back(), c.summary);
    leaf->footer(c.footer);
    cl.leaves.emplace_back(leaf, c.define(*leaf));
    cl.words.push_back(c.words);
  }
  return cl;
}

int run_command_line(int argc, const char* const* argv) {
  const CommandLine cl = build_command_line(all_commands());
  if (argc < 2) {
    std::cout << cl.app->help();
    return 2;
  }
  if (std::string(argv[1]) == "help") {
    std::cout << cl.app->help();
    return 0;
  }
  // An unknown command word: named, with the closest command (CLI11 would only say that a command is required).
  if (argv[1][0] != '-') {
    std::vector<std::string> names;
    for (const CLI::App* sub : cl.app->get_subcommands({})) names.push_back(sub->get_name());
    if (std::find(names.begin(), names.end(), argv[1]) == names.end()) {
      const std::string near = did_you_mean(argv[1], names);
      std::cerr << "vidkv: error: unknown command '" << argv[1] << "'"
                << (near.empty() ? "; the commands: " + join_names(names, ", ") : near) << " (see vidkv --help)\n";
      return 2;
    }
  }
  try {
    cl.app->parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return cl.app->exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return cl.app->exit(e);
  } catch (const CLI::CallForVersion& e) {
    return cl.app->exit(e);
  } catch (const CLI::ParseError& e) {
    // The deepest command that parsed names the help to read.
    std::string where = "vidkv";
    for (const CLI::App* a = cl.app.get(); a;) {
      const CLI::App* next = nullptr;
      for (const CLI::App* sub : a->get_subcommands()) next = sub;
      if (next) where += " " + next->get_name();
      a = next;
    }
    return usage_error(where, e);
  }
  for (std::size_t i = 0; i < cl.leaves.size(); ++i) {
    if (!cl.leaves[i].first->parsed()) continue;
    const Args raw(argv + 1 + cl.words[i].size(), argv + argc);
    try {
      return cl.leaves[i].second(raw);
    } catch (const CLI::ParseError& e) {  // a command's own check of its options (one that applies elsewhere only)
      std::string where = "vidkv";
      for (const std::string& w : cl.words[i]) where += " " + w;
      return usage_error(where, e);
    } catch (const Error& e) {
      std::cerr << "vidkv: error: " << e.what() << "\n";
      return 1;
    } catch (const std::exception& e) {
      std::cerr << "vidkv: unexpected error: " << e.what() << "\n";
      return 3;
    }
  }
  std::cout << cl.app->help();  // not reached: require_subcommand(1) at every level
  return 2;
}

}  // namespace vidkv::cli
