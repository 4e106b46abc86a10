// Subcommands implemented in Python (vidkv live, vidkv record, vidkv report): run a Python module inside the
// `vidkv` process, in an embedded interpreter that uses the project's virtual environment.
// Built into the library vidkv_python_launcher, which only the `vidkv` executable (and the C++ tests) link: it
// links libpython (pybind11::embed), which the extension module _vidkv must not.
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/plugin_registry.h"

namespace vidkv::cli {

// Runs the Python module `module` as `python -m module args...` would, but in this process: an embedded interpreter
// (pybind11::scoped_interpreter) runs runpy.run_module(module, run_name="__main__", alter_sys=True) with
// sys.argv = [module, args...]. The interpreter uses the environment of the python $VIDKV_PYTHON when set, else of
// the project's .venv/bin/python (scripts/setup.sh --models makes it): sys.executable is that python, and its
// pyvenv.cfg selects the site-packages (torch, transformers, ...), as when that python runs. It must be the Python
// version vidkv was built against (-DPython3_EXECUTABLE). sys.path starts with the package folder experiments/python,
// the folder of the built `_vidkv` extension and analysis/, then $PYTHONPATH, so `import vidkv` and
// `import vidkv_analysis` need no installation (unlike `python -m`, the current directory is not on sys.path).
// `command` ("vidkv live") and `needs` (what the environment must hold) word the errors.
// Returns the exit status: 0 success (the module returned, or SystemExit(0/None)), the code of SystemExit(int)
// (1 a user error the module reported, 2 a usage error), 1 after SystemExit("message") (message printed) or an
// uncaught exception (traceback printed to stderr). On KeyboardInterrupt (Ctrl-C) the traceback is printed and the
// process ends by SIGINT, as `python` does, so a calling shell sees the interrupt.
// Throws NotSupportedError when the environment is missing or of another Python version, or when this vidkv was
// built without Python (VIDKV_ENABLE_PYTHON=OFF).
int run_python_module(const std::string& command, const std::string& module, const std::vector<std::string>& args,
                      const std::string& needs);

// Loads a Python-defined plugin file (a module with VIDKV_PLUGINS = [Class, ...]; experiments/python/
// python_quantizer.h) into `registry`, through an interpreter started once in this process with the environment
// described above and never finalized; returns the file's canonical path (the plugins' origin). Throws
// PluginLoadError (the Python error text) or NotSupportedError (no environment; built without Python).
std::string load_python_plugin(PluginRegistry& registry, const std::string& path);

}  // namespace vidkv::cli
