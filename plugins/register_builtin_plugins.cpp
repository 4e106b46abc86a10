// The explicit list of built-in plugins: one register_NAME() per plugin folder (no static initialisers).
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/quantizers/identity/identity.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"

namespace vidkv {

void register_builtin_plugins(PluginRegistry& registry) {
  register_identity(registry);
  register_uniform(registry);
  register_sign(registry);
  register_ternary(registry);
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
