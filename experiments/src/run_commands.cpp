// `vidkv run ...` subcommands.
#include "vidkv/experiments/src/command_line.h"

namespace vidkv::cli {

void add_run_commands(std::vector<Command>& out) { (void)out; }

}  // namespace vidkv::cli
