// Subcommands implemented in Python (vidkv record, vidkv live): run `python -m MODULE ARGS...` with the project's
// virtual environment and return its exit status.
#pragma once

#include <string>
#include <vector>

namespace vidkv::cli {

// Runs `PYTHON -m module args...` in a child process and waits for it. PYTHON is $VIDKV_PYTHON when set, else the
// project's .venv/bin/python (scripts/setup.sh --models makes it). PYTHONPATH is prefixed with the package folder
// experiments/python, the folder of the built `_vidkv` extension and analysis/, so `import vidkv` and
// `import vidkv_analysis` need no installation.
// `command` ("vidkv live") and `needs` (what the environment must hold) word the errors. Returns the child's exit
// status (0 success, 1 a user error it reported, 2 a usage error); throws when the interpreter cannot be started.
int run_python_module(const std::string& command, const std::string& module, const std::vector<std::string>& args,
                      const std::string& needs);

}  // namespace vidkv::cli
