// Loading a plugin library (a shared object with the entry point of plugin_abi.h) into a registry at run time,
// with dlopen(3).
//
// load_plugin_library(registry, path):
//   - dlopen(path, RTLD_NOW | RTLD_LOCAL): every undefined symbol is resolved now (against the libvidkv_core.so the
//     program has loaded), so a library built against another VidKV fails here or at the version check, not later;
//   - looks up vidkv_plugin_abi_version and vidkv_register_plugins (a missing one: PluginLoadError naming it);
//   - refuses a library whose vidkv_plugin_abi_version() differs from this program's, naming both versions;
//   - calls vidkv_register_plugins(registry) with the registry's origin set to the library's canonical path (shown
//     by `vidkv plugins list`); a name the registry already has in that family is a ConfigError naming both origins.
// Loading the same file (canonical path) into the same registry twice does nothing the second time.
// Libraries are never unloaded (dlclose): the plugins they built may live anywhere in the process until it exits.
// Errors: PluginLoadError (a ConfigError: exit status 1) naming the path and the reason (dlerror() text).
#pragma once

#include <string>

#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

class PluginLoadError : public ConfigError {
 public:
  using ConfigError::ConfigError;
};

// Returns the canonical path it loaded (or had loaded before).
std::string load_plugin_library(PluginRegistry& registry, const std::string& path);

// True when `path` names a shared library (ends in .so, or .so.N...) rather than a Python module (.py).
bool is_plugin_library_path(const std::string& path);

}  // namespace vidkv
