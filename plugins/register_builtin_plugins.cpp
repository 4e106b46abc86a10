// The explicit list of built-in plugins: one register_NAME() per plugin folder (no static initialisers).
#include "vidkv/core/plugin_registry.h"
#include "vidkv/plugins/channel_selectors/range/range.h"
#include "vidkv/plugins/channel_selectors/variance/variance.h"
#include "vidkv/plugins/channel_selectors/outlier/outlier.h"
#include "vidkv/plugins/token_protectors/none/none.h"
#include "vidkv/plugins/token_protectors/random/random.h"
#include "vidkv/plugins/token_protectors/semantic_embedding/semantic_embedding.h"
#include "vidkv/plugins/token_protectors/semantic_attention/semantic_attention.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token.h"
#include "vidkv/plugins/quantizers/identity/identity.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/plugins/quantizers/ternary/ternary.h"
#include "vidkv/plugins/quantizers/uniform/uniform.h"

namespace vidkv {

void register_builtin_plugins(PluginRegistry& registry) {
  // quantizers
  register_identity(registry);
  register_uniform(registry);
  register_sign(registry);
  register_ternary(registry);
  register_mixed_channel(registry);
  register_mixed_token(registry);
  // channel selectors
  register_range(registry);
  register_variance(registry);
  register_outlier(registry);
  // token protectors
  register_none(registry);
  register_random(registry);
  register_semantic_embedding(registry);
  register_semantic_attention(registry);
}

PluginRegistry builtin_plugin_registry(CpuImplementation implementation) {
  PluginRegistry registry(implementation);
  register_builtin_plugins(registry);
  return registry;
}

}  // namespace vidkv
