// The explicit list of built-in plugins: one register_NAME() per plugin folder (no static initialisers).
#include "vidkv/core/plugin_registry.h"

namespace vidkv {

void register_builtin_plugins(PluginRegistry& registry) {
  (void)registry;
}

const PluginRegistry& builtin_registry() {
  static const PluginRegistry registry = [] {
    PluginRegistry r;
    register_builtin_plugins(r);
    return r;
  }();
  return registry;
}

}  // namespace vidkv
