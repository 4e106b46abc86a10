// The `vidkv` command line: the commands registered in experiments/src/*_commands.cpp, parsed with CLI11
// (command_line.h: help, exit status).
#include "vidkv/experiments/src/command_line.h"

int main(int argc, char** argv) { return vidkv::cli::run_command_line(argc, argv); }
