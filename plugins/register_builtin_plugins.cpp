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

namespace vidkv {

void register_builtin_plugins(PluginRegistry& registry) {
  register_range(registry);
  register_variance(registry);
  register_outlier(registry);
  register_none(registry);
  register_random(registry);
  register_semantic_embedding(registry);
  register_semantic_attention(registry);
  register_mixed_channel(registry);
  register_mixed_token(registry);
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
