#include "vidkv/core/plugin_library.h"

#include <dlfcn.h>

#include <filesystem>
#include <system_error>

#include "vidkv/core/plugin_abi.h"

namespace vidkv {

int plugin_abi_version() { return VIDKV_PLUGIN_ABI_VERSION; }

bool is_plugin_library_path(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  const auto so = name.find(".so");
  return so != std::string::npos && (so + 3 == name.size() || name[so + 3] == '.');
}

namespace {

std::string dl_error() {
  const char* e = dlerror();
  return e ? e : "unknown dlopen error";
}

bool already_loaded(const PluginRegistry& registry, const std::string& canonical) {
  for (const auto& info : registry.list())
    if (info.origin == canonical) return true;
  return false;
}

}  // namespace

std::string load_plugin_library(PluginRegistry& registry, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))
    throw PluginLoadError("plugin library '" + path + "': no such file");
  const std::string canonical = std::filesystem::canonical(path, ec).string();
  if (ec) throw PluginLoadError("plugin library '" + path + "': " + ec.message());
  if (already_loaded(registry, canonical)) return canonical;
  // Never dlclose()d (plugin_library.h).
  void* handle = dlopen(canonical.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) throw PluginLoadError("plugin library '" + path + "' cannot be loaded: " + dl_error());
  using AbiFn = int (*)();
  using RegisterFn = void (*)(PluginRegistry&);
  auto abi = reinterpret_cast<AbiFn>(dlsym(handle, "vidkv_plugin_abi_version"));
  if (!abi)
    throw PluginLoadError("plugin library '" + path + "' has no vidkv_plugin_abi_version(): not a VidKV plugin, or "
                          "built without VIDKV_PLUGIN_ENTRY (vidkv/core/plugin_abi.h)");
  const int theirs = abi();
  if (theirs != VIDKV_PLUGIN_ABI_VERSION)
    throw PluginLoadError("plugin library '" + path + "' was built for VidKV plugin ABI version " +
                          std::to_string(theirs) + ", but this VidKV has plugin ABI version " +
                          std::to_string(VIDKV_PLUGIN_ABI_VERSION) +
                          ": rebuild the plugin against this VidKV (find_package(VidKV), docs/writing-a-plugin.md)");
  auto reg = reinterpret_cast<RegisterFn>(dlsym(handle, "vidkv_register_plugins"));
  if (!reg) throw PluginLoadError("plugin library '" + path + "' has no vidkv_register_plugins(PluginRegistry&)");
  // Registration is all or nothing: into a copy, which replaces the registry only when every add<>() succeeded.
  PluginRegistry grown = registry;
  grown.set_origin(canonical);
  reg(grown);
  grown.set_origin(registry.origin());
  registry = std::move(grown);
  return canonical;
}

}  // namespace vidkv
