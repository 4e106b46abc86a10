// Which plugin libraries a command loads, and the rule that refuses code an experiment file names.
//
// A plugin file is a shared library (lib*.so: core/plugin_library.h) or a Python module (*.py, a VIDKV_PLUGINS list
// of quantizer classes: experiments/python/python_quantizer.h, loaded through the embedded interpreter).
// Three sources, all loaded into the registry the command then hands on (core/plugin_library.h):
//   1. VIDKV_PLUGIN_PATH: a colon-separated list of plugin files in the user's environment, loaded by every
//      command that builds plugins (run, plugins list|describe|check, presets bits);
//   2. --plugin LIB (repeatable) on those commands' command lines;
//   3. `plugins: [path/to/libmyquant.so, my_quant.py]` in an experiment file (paths relative to the file's folder).
// 1 and 2 are the user's own choice and load without further ado. 3 comes with a YAML file that may be someone
// else's, so each library it names is refused (PluginLoadError naming the file, line and the flag) unless the user
// passes --allow-plugins, or already loaded that same file (canonical path) through 1 or 2.
#pragma once

#include <string>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

// Loads one plugin file of either kind; returns its canonical path (the origin of its plugins).
std::string load_plugin_file(PluginRegistry& registry, const std::string& path);
bool is_python_plugin_path(const std::string& path);

// The files VIDKV_PLUGIN_PATH lists (empty entries skipped).
std::vector<std::string> plugin_path_from_environment();

// Loads VIDKV_PLUGIN_PATH, then `cli_plugins`, into `registry`.
void load_user_plugins(PluginRegistry& registry, const std::vector<std::string>& cli_plugins);

// Loads the libraries the experiment document's `plugins:` names (nothing when absent), under the rule above.
void load_experiment_plugins(PluginRegistry& registry, const ConfigNode& document, const std::string& source_file,
                             bool allow_plugins);

}  // namespace vidkv
