#include "vidkv/experiments/src/command_line.h"

#include "vidkv/core/error.h"

namespace vidkv::cli {

std::vector<Command> all_commands() {
  std::vector<Command> out;
  add_run_commands(out);
  add_live_commands(out);
  add_record_commands(out);
  add_report_commands(out);
  add_bench_commands(out);
  add_trace_commands(out);
  add_plugin_commands(out);
  return out;
}

bool take_flag(Args& args, const std::string& name) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == name) {
      args.erase(it);
      return true;
    }
  }
  return false;
}

bool take_option(Args& args, const std::string& name, std::string& value) {
  for (auto it = args.begin(); it != args.end(); ++it) {
    if (*it == name) {
      if (it + 1 == args.end()) VIDKV_THROW(ConfigError, "option ", name, " needs a value");
      value = *(it + 1);
      args.erase(it, it + 2);
      return true;
    }
    if (it->rfind(name + "=", 0) == 0) {
      value = it->substr(name.size() + 1);
      args.erase(it);
      return true;
    }
  }
  return false;
}

void reject_unknown_options(const Args& args, const std::string& command) {
  for (const auto& a : args)
    if (a.size() > 1 && a[0] == '-') VIDKV_THROW(ConfigError, command, ": unknown option '", a, "' (see ", command, " --help)");
}

}  // namespace vidkv::cli
