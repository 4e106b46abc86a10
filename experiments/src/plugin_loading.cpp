#include "vidkv/experiments/src/plugin_loading.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>

#include "vidkv/core/plugin_library.h"
#include "vidkv/experiments/src/python_command.h"

namespace fs = std::filesystem;

namespace vidkv {

std::vector<std::string> plugin_path_from_environment() {
  std::vector<std::string> out;
  const char* env = std::getenv("VIDKV_PLUGIN_PATH");
  if (!env) return out;
  std::stringstream ss(env);
  std::string item;
  while (std::getline(ss, item, ':'))
    if (!item.empty()) out.push_back(item);
  return out;
}

std::string load_plugin_file(PluginRegistry& registry, const std::string& path) {
  if (is_python_plugin_path(path)) return cli::load_python_plugin(registry, path);
  return load_plugin_library(registry, path);
}

bool is_python_plugin_path(const std::string& path) { return fs::path(path).extension() == ".py"; }

void load_user_plugins(PluginRegistry& registry, const std::vector<std::string>& cli_plugins) {
  for (const auto& p : plugin_path_from_environment()) {
    try {
      load_plugin_file(registry, p);
    } catch (const PluginLoadError& e) {
      throw PluginLoadError(std::string("VIDKV_PLUGIN_PATH: ") + e.what());
    }
  }
  for (const auto& p : cli_plugins) {
    try {
      load_plugin_file(registry, p);
    } catch (const PluginLoadError& e) {
      throw PluginLoadError(std::string("--plugin: ") + e.what());
    }
  }
}

void load_experiment_plugins(PluginRegistry& registry, const ConfigNode& document, const std::string& source_file,
                             bool allow_plugins) {
  if (!document.is_map()) return;
  const ConfigNode* list = document.find("plugins");
  if (!list) return;
  if (!list->is_list()) list->fail("plugins: expected a list of plugin library paths, e.g. [build/libmyquant.so]");
  const fs::path base = source_file.empty() ? fs::current_path() : fs::absolute(source_file).parent_path();
  for (const ConfigNode& item : list->items()) {
    if (!item.is_scalar()) item.fail("expected a plugin library path");
    const fs::path given = item.text();
    const fs::path path = given.is_absolute() ? given : base / given;
    std::error_code ec;
    if (!fs::is_regular_file(path, ec))
      item.fail("plugin library '" + item.text() + "' not found (looked for " + path.string() +
                "; relative paths are relative to the experiment file's folder)");
    if (!is_plugin_library_path(path.string()) && !is_python_plugin_path(path.string()))
      item.fail("'" + item.text() + "' is not a plugin library (a shared object, lib*.so) or a Python plugin (.py)");
    const std::string canonical = fs::canonical(path, ec).string();
    bool loaded = false;
    for (const auto& info : registry.list()) loaded = loaded || info.origin == canonical;
    if (!loaded && !allow_plugins)
      item.fail("this experiment names the plugin library '" + item.text() + "', which runs its own code when " +
                "loaded: refused without --allow-plugins (pass it if you trust the library and the experiment file, " +
                "or load the library yourself with --plugin or VIDKV_PLUGIN_PATH)");
    try {
      load_plugin_file(registry, path.string());
    } catch (const Error& e) {
      item.fail(e.what());
    }
  }
}

}  // namespace vidkv
