#include "vidkv/experiments/src/python_command.h"

#include <filesystem>
#include <string>
#include <vector>

#include "vidkv/core/error.h"
#include "vidkv/core/plugin_library.h"

#ifdef VIDKV_EMBED_PYTHON
#include <pybind11/embed.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <stdexcept>
#endif

namespace fs = std::filesystem;

namespace vidkv::cli {

namespace {

fs::path source_dir() {
#ifdef VIDKV_SOURCE_DIR
  return VIDKV_SOURCE_DIR;
#else
  return fs::current_path();
#endif
}

fs::path extension_dir() {
#ifdef VIDKV_PYTHON_MODULE_DIR
  return VIDKV_PYTHON_MODULE_DIR;
#else
  return source_dir() / "build" / "python";
#endif
}

// experiments/python (the vidkv package), the built _vidkv extension, analysis/ (vidkv_analysis).
std::string project_python_path() {
  return (source_dir() / "experiments" / "python").string() + ":" + extension_dir().string() + ":" +
         (source_dir() / "analysis").string();
}

}  // namespace

#ifdef VIDKV_EMBED_PYTHON

namespace py = pybind11;

namespace {

constexpr const char* kPythonVersion = PY_VERSION;  // of the libpython this binary embeds, e.g. "3.11.7"

std::string major_minor() { return std::to_string(PY_MAJOR_VERSION) + "." + std::to_string(PY_MINOR_VERSION); }

// The pyvenv.cfg of a virtual environment's python (next to it or one folder up, where `python -m venv` puts it),
// or an empty path when `python` is not in a virtual environment.
fs::path venv_config(const fs::path& python) {
  for (const fs::path& dir : {python.parent_path(), python.parent_path().parent_path()})
    if (fs::is_regular_file(dir / "pyvenv.cfg")) return dir / "pyvenv.cfg";
  return {};
}

// The release (major.minor.micro) of the python at `python`, as it reports it when run (`-I -S`: no site, no PYTHON*
// variables), or "" when it cannot be run. A virtual environment's python reports its base installation's release.
std::string installed_release(const fs::path& python) {
  std::string quoted = "'";
  for (const char c : python.string()) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  quoted += "'";
  const std::string cmd = quoted + " -I -S -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])' 2>/dev/null";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (!pipe) return {};
  char buf[64] = {};
  const bool got = std::fgets(buf, sizeof buf, pipe) != nullptr;
  ::pclose(pipe);
  if (!got) return {};
  std::string out(buf);
  out.erase(out.find_last_not_of(" \t\r\n") + 1);
  int dots = 0;  // "N.N.N" only: anything else (a wrapper's own output) is not a release
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (out[i] == '.' && i > 0 && out[i - 1] != '.') ++dots;
    else if (out[i] < '0' || out[i] > '9') return {};
  }
  return dots == 2 && !out.empty() && out.back() != '.' ? out : std::string();
}

// The release of the libpython this process loaded ("3.11.7" of Py_GetVersion's "3.11.7 (main, ...) [GCC ...]", also
// of "3.11.2+ ..." or "3.13.0rc1 ...": the leading digits and dots, as sys.version_info[:3] gives them): the one whose
// standard library the environment's must be.
std::string loaded_release() {
  const std::string v = Py_GetVersion();
  std::size_t n = 0;
  while (n < v.size() && ((v[n] >= '0' && v[n] <= '9') || v[n] == '.')) ++n;
  return v.substr(0, n);
}

// The environment's packages must be built for the embedded Python's version (a torch wheel for 3.12 does not
// load into 3.11): checks the version the environment was made with, and that its folders exist for this version.
// Then the release: the embedded interpreter reads the environment's standard library, and one patch release's does
// not always load into another's libpython (Debian's 3.11.2 standard library under a pyenv 3.11.7 libpython fails
// inside it), so the python VIDKV_PYTHON names must report the loaded libpython's release.
void check_release(const std::string& command, const fs::path& python, const std::string& what) {
  const std::string have = installed_release(python), want = loaded_release();
  if (have.empty() || have == want) return;  // a python that cannot be run fails later, with its own error
  VIDKV_THROW(NotSupportedError, command, ": ", what, " is Python ", have, ", and this vidkv runs Python ", want,
              " (the libpython it loaded), whose standard library it must use: point VIDKV_PYTHON at a python of that ",
              want, " installation or a virtual environment made from it, or rebuild vidkv against this one "
              "(cmake -DPython3_EXECUTABLE=", python.string(), ")");
}

void check_environment(const std::string& command, const fs::path& python, const std::string& what) {
  const std::string want = major_minor();
  const std::string rebuild = " (this vidkv embeds Python " + std::string(kPythonVersion) +
                              "): point VIDKV_PYTHON at a python of a Python " + want +
                              " environment, or rebuild vidkv against this one (cmake -DPython3_EXECUTABLE=" +
                              python.string() + ")";
  if (const fs::path cfg = venv_config(python); !cfg.empty()) {
    std::ifstream in(cfg);
    std::string line;
    while (std::getline(in, line)) {
      const auto eq = line.find('=');
      if (eq == std::string::npos) continue;
      std::string key = line.substr(0, eq), value = line.substr(eq + 1);
      auto trim = [](std::string& s) {
        s.erase(0, s.find_first_not_of(" \t\r"));
        s.erase(s.find_last_not_of(" \t\r") + 1);
      };
      trim(key);
      trim(value);
      if (key != "version" && key != "version_info") continue;
      // "3.11.7" or "3.11.7.final.0": compare major.minor.
      const auto second_dot = value.find('.', value.find('.') + 1);
      const std::string have = value.substr(0, second_dot);
      if (have != want) VIDKV_THROW(NotSupportedError, command, ": ", what, " is a Python ", have, " environment", rebuild);
    }
    const fs::path site = cfg.parent_path() / "lib" / ("python" + want) / "site-packages";
    if (!fs::is_directory(site))
      VIDKV_THROW(NotSupportedError, command, ": ", what, " is not a Python ", want, " environment (no ", site.string(), ")",
                  rebuild);
    check_release(command, python, what);
    return;
  }
  std::error_code ec;
  const fs::path real = fs::canonical(python, ec);
  const fs::path stdlib = (ec ? python : real).parent_path().parent_path() / "lib" / ("python" + want);
  if (!fs::is_regular_file(stdlib / "os.py"))
    VIDKV_THROW(NotSupportedError, command, ": ", what, " is not a Python ", want, " installation (no ", stdlib.string(),
                ")", rebuild);
  check_release(command, python, what);
}

// Frees a PyConfig unless pybind11 took it over (initialize_interpreter clears it itself).
struct ConfigGuard {
  PyConfig* config;
  ~ConfigGuard() {
    if (config) PyConfig_Clear(config);
  }
};

void set_string(PyConfig& config, wchar_t** field, const std::string& value, const std::string& command) {
  const PyStatus status = PyConfig_SetBytesString(&config, field, value.c_str());
  if (PyStatus_Exception(status))
    VIDKV_THROW(Error, command, ": cannot configure the embedded Python: ",
                status.err_msg ? status.err_msg : "PyConfig_SetBytesString failed");
}

// The vidkv executable links the system HDF5 (libhdf5_serial, for its trace files), so the dynamic loader resolves
// every HDF5 symbol of a library loaded later to that one first. h5py's wheel bundles its own HDF5 (another version);
// without care its extension modules would call a mix of both and fail ("ValueError: Not a datatype"). This import
// hook loads the extension modules of the packages listed (today h5py only: add a package here when its wheel
// bundles a library the vidkv executable links) with RTLD_DEEPBIND, so they bind to the library they ship with, as in
// a plain `python` process. Other imports are untouched.
constexpr const char* kBundledLibraryHook = R"PY(
import importlib.machinery as _machinery
import os as _os
import sys as _sys


class _DeepBindExtensionLoader(_machinery.ExtensionFileLoader):
    def create_module(self, spec):
        flags = _sys.getdlopenflags()
        _sys.setdlopenflags(flags | _os.RTLD_DEEPBIND)
        try:
            return super().create_module(spec)
        finally:
            _sys.setdlopenflags(flags)


class VidkvBundledLibraryFinder:
    """vidkv (embedded Python): loads the extension modules of h5py with RTLD_DEEPBIND (see python_command.cpp)."""

    packages = ("h5py",)

    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.partition(".")[0] not in cls.packages:
            return None
        for finder in _sys.meta_path:
            if finder is cls or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if type(spec.loader) is _machinery.ExtensionFileLoader:
                    spec.loader = _DeepBindExtensionLoader(spec.loader.name, spec.loader.path)
                return spec
        return None


_sys.meta_path.insert(0, VidkvBundledLibraryFinder)
)PY";

// Exit status of a SystemExit, as `python` computes it: code None -> 0, an int -> that int, anything else is printed
// to stderr and gives 1.
int system_exit_status(const py::error_already_set& e) {
  const py::object code = py::getattr(e.value(), "code", py::none());
  if (code.is_none()) return 0;
  if (py::isinstance<py::int_>(code)) {
    const long value = PyLong_AsLong(code.ptr());
    if (value == -1 && PyErr_Occurred()) {  // does not fit a C long
      PyErr_Clear();
      return 1;
    }
    return static_cast<int>(value);
  }
  try {
    py::module_::import("sys").attr("stderr").attr("write")(py::str(code) + py::str("\n"));
  } catch (py::error_already_set&) {  // no usable sys.stderr: the status still says it failed
  }
  return 1;
}

}  // namespace

int run_python_module(const std::string& command, const std::string& module, const std::vector<std::string>& args,
                      const std::string& needs) {
  fs::path python = source_dir() / ".venv" / "bin" / "python";
  std::string what = "the project's Python environment (" + python.string() + ")";
  if (const char* env = std::getenv("VIDKV_PYTHON"); env && *env) {
    python = fs::absolute(env);  // not canonical: a venv's python is a link to the base interpreter
    what = "VIDKV_PYTHON (" + python.string() + ")";
  }
  if (!fs::exists(python))
    VIDKV_THROW(NotSupportedError, command, " needs ", what, ": run scripts/setup.sh --models, or set VIDKV_PYTHON to a ",
                "python with ", needs);
  check_environment(command, python, what);

  PyConfig config;
  PyConfig_InitPythonConfig(&config);  // like `python`: reads PYTHON* variables, installs the SIGINT handler
  ConfigGuard guard{&config};
  config.parse_argv = 0;  // argv is the module's, not options for the interpreter
  // The interpreter takes its prefix, its standard library and (through pyvenv.cfg) its site-packages from the
  // environment's python, as if that python ran: sys.executable is it, so subprocesses of the module use it too.
  set_string(config, &config.program_name, python.string(), command);
  set_string(config, &config.executable, python.string(), command);
  std::string path = project_python_path();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += std::string(":") + old;
  set_string(config, &config.pythonpath_env, path, command);

  std::vector<std::string> argv_strings = {module};
  argv_strings.insert(argv_strings.end(), args.begin(), args.end());
  std::vector<const char*> argv;
  for (const auto& a : argv_strings) argv.push_back(a.c_str());

  int status = 0;
  bool interrupted = false;
  {
    std::optional<py::scoped_interpreter> interpreter;
    guard.config = nullptr;  // initialize_interpreter clears the config, on failure too
    try {
      interpreter.emplace(&config, static_cast<int>(argv.size()), argv.data(), /*add_program_dir_to_path=*/false);
    } catch (const std::exception& e) {
      VIDKV_THROW(Error, command, ": cannot start the embedded Python with ", what, ": ", e.what());
    }
    try {
      py::dict scope;
      scope["__name__"] = "vidkv_embedded";
      py::exec(kBundledLibraryHook, scope);
      py::module_::import("runpy").attr("run_module")(module, py::arg("run_name") = "__main__",
                                                      py::arg("alter_sys") = true);
    } catch (py::error_already_set& e) {
      if (e.matches(PyExc_SystemExit)) {
        status = system_exit_status(e);
      } else {
        interrupted = e.matches(PyExc_KeyboardInterrupt);
        e.restore();
        PyErr_Print();  // the traceback, through sys.excepthook
        status = 1;
      }
    }
  }  // Py_Finalize: atexit handlers run, sys.stdout/stderr are flushed, the signal handlers are restored
  if (interrupted) {
    // As `python` does after an uncaught KeyboardInterrupt: end by SIGINT, so a calling shell stops too.
    std::signal(SIGINT, SIG_DFL);
    std::raise(SIGINT);
    return 130;  // only when SIGINT is blocked
  }
  return status;
}

namespace {

// The interpreter of Python-defined plugins (load_python_plugin): started once, with the environment and sys.path
// of run_python_module, and never finalized (plugins built from it live until the process exits). The GIL is
// released after each use, so the runner's worker threads can take it (python_quantizer.cpp).
void start_plugin_interpreter(const std::string& command) {
  if (Py_IsInitialized()) return;
  fs::path python = source_dir() / ".venv" / "bin" / "python";
  std::string what = "the project's Python environment (" + python.string() + ")";
  if (const char* env = std::getenv("VIDKV_PYTHON"); env && *env) {
    python = fs::absolute(env);
    what = "VIDKV_PYTHON (" + python.string() + ")";
  }
  if (!fs::exists(python))
    VIDKV_THROW(NotSupportedError, command, " needs ", what, ": run scripts/setup.sh, or set VIDKV_PYTHON to a python with numpy");
  check_environment(command, python, what);
  PyConfig config;
  PyConfig_InitIsolatedConfig(&config);  // no signal handlers, no PYTHON* variables beyond the path set here
  ConfigGuard guard{&config};
  config.isolated = 0;
  config.use_environment = 1;
  set_string(config, &config.program_name, python.string(), command);
  set_string(config, &config.executable, python.string(), command);
  std::string path = project_python_path();
  if (const char* old = std::getenv("PYTHONPATH"); old && *old) path += std::string(":") + old;
  set_string(config, &config.pythonpath_env, path, command);
  guard.config = nullptr;
  try {
    py::initialize_interpreter(&config, 0, nullptr, /*add_program_dir_to_path=*/false);
    py::dict scope;
    scope["__name__"] = "vidkv_embedded";
    py::exec(kBundledLibraryHook, scope);
  } catch (const std::exception& e) {
    VIDKV_THROW(Error, command, ": cannot start the embedded Python with ", what, ": ", e.what());
  }
  PyEval_SaveThread();  // the GIL is taken again, per call, with PyGILState_Ensure
}

}  // namespace

std::string load_python_plugin(PluginRegistry& registry, const std::string& path) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) VIDKV_THROW(PluginLoadError, "python plugin '", path, "': no such file");
  const std::string canonical = fs::canonical(path, ec).string();
  start_plugin_interpreter("python plugin '" + path + "'");
  std::string error;
  {
    const PyGILState_STATE gil = PyGILState_Ensure();
    try {
      py::module_::import("_vidkv").attr("_register_plugin_file_into")(
          py::capsule(static_cast<void*>(&registry), "vidkv.PluginRegistry"), canonical);
    } catch (py::error_already_set& e) {
      error = e.what();
    }
    PyGILState_Release(gil);
  }
  if (!error.empty()) VIDKV_THROW(PluginLoadError, "python plugin '", path, "' cannot be loaded: ", error);
  return canonical;
}

#else  // built without Python (VIDKV_ENABLE_PYTHON=OFF)

std::string load_python_plugin(PluginRegistry&, const std::string& path) {
  VIDKV_THROW(NotSupportedError, "python plugin '", path, "': this vidkv was built without Python ",
              "(VIDKV_ENABLE_PYTHON=OFF): run scripts/setup.sh (it builds with -DVIDKV_ENABLE_PYTHON=ON)");
}

int run_python_module(const std::string& command, const std::string& module, const std::vector<std::string>& args,
                      const std::string& needs) {
  std::string line = "python -m " + module;
  for (const auto& a : args) line += " " + a;
  VIDKV_THROW(NotSupportedError, command, " runs Python inside vidkv, but this vidkv was built without Python ",
              "(VIDKV_ENABLE_PYTHON=OFF): run scripts/setup.sh (it builds with -DVIDKV_ENABLE_PYTHON=ON), or run `",
              line, "` with PYTHONPATH=", project_python_path(), " and a python with ", needs);
}

#endif

}  // namespace vidkv::cli
