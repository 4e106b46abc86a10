// `vidkv trace ...` subcommands.
#include "vidkv/experiments/src/command_line.h"

namespace vidkv::cli {

void add_trace_commands(std::vector<Command>& out) { (void)out; }

}  // namespace vidkv::cli
