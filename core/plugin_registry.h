// The plugin registry: every quantizer, channel selector and token protector by name, with its parameter specs.
//
// Registration is explicit: register_builtin_plugins() (plugins/register_builtin_plugins.cpp) calls one
// `register_NAME(registry)` per plugin folder; shared libraries loaded at run time will call the same add<>().
// Plugin blocks in configs name their type with `quantizer:` (quantizers) or `type:` (selectors, protectors).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "vidkv/core/channel_selector.h"
#include "vidkv/core/config_node.h"
#include "vidkv/core/cpu_implementation.h"
#include "vidkv/core/params.h"
#include "vidkv/core/quantizer.h"
#include "vidkv/core/token_protector.h"

namespace vidkv {

enum class PluginFamily { quantizer, channel_selector, token_protector };
const char* plugin_family_name(PluginFamily f);
// The key that names the plugin in a config block: "quantizer" or "type".
const char* plugin_type_key(PluginFamily f);

struct PluginInfo {
  std::string name;
  PluginFamily family = PluginFamily::quantizer;
  std::string summary;  // one line
  std::vector<ParamSpec> params;
};

class PluginRegistry {
 public:
  explicit PluginRegistry(CpuImplementation implementation = CpuImplementation::optimized)
      : implementation_(implementation) {}

  // The CPU implementation every quantizer this registry builds runs (core/cpu_implementation.h). A plugin whose
  // constructor takes (const Params&, CpuImplementation) receives it; composites pass it on to their children by
  // building them through this registry.
  CpuImplementation implementation() const { return implementation_; }

  // Registers Plugin (a Quantizer, ChannelSelector or TokenProtector subclass with a nested `Params` struct that has
  // a static bind()). Plugin is constructed from (const Params&) or, for composites that build children,
  // (const Params&, const PluginRegistry&). Registering a name twice is a ConfigError.
  template <class Plugin>
  void add(const std::string& name, const std::string& summary);

  // Builds the plugin a config block names, e.g. {quantizer: uniform, bits: 2}. Errors name the block's location.
  std::unique_ptr<Quantizer> make_quantizer(const ConfigNode& block) const;
  std::unique_ptr<ChannelSelector> make_channel_selector(const ConfigNode& block) const;
  std::unique_ptr<TokenProtector> make_token_protector(const ConfigNode& block) const;

  // Checks a block fully (parameters and nested blocks) without keeping the plugin.
  void validate(PluginFamily family, const ConfigNode& block) const;

  const PluginInfo* find(const std::string& name) const;
  std::vector<PluginInfo> list() const;  // sorted by family, then name
  std::vector<std::string> names(PluginFamily family) const;

 private:
  template <class Base>
  using Factory = std::function<std::unique_ptr<Base>(const ConfigNode&, const PluginRegistry&)>;

  void add_info(PluginInfo info);
  const std::string& block_type(PluginFamily family, const ConfigNode& block) const;

  CpuImplementation implementation_;
  std::map<std::string, PluginInfo> infos_;
  std::map<std::string, Factory<Quantizer>> quantizers_;
  std::map<std::string, Factory<ChannelSelector>> selectors_;
  std::map<std::string, Factory<TokenProtector>> protectors_;
};

// Registers every plugin shipped with VidKV; both are defined in plugins/register_builtin_plugins.cpp.
void register_builtin_plugins(PluginRegistry& registry);
// A registry with every built-in plugin, built once per implementation (optimized unless asked otherwise).
const PluginRegistry& builtin_registry(CpuImplementation implementation = CpuImplementation::optimized);

template <class Plugin>
void PluginRegistry::add(const std::string& name, const std::string& summary) {
  using P = typename Plugin::Params;
  PluginFamily family;
  if constexpr (std::is_base_of_v<Quantizer, Plugin>) {
    family = PluginFamily::quantizer;
  } else if constexpr (std::is_base_of_v<ChannelSelector, Plugin>) {
    family = PluginFamily::channel_selector;
  } else {
    static_assert(std::is_base_of_v<TokenProtector, Plugin>, "a plugin derives from Quantizer, ChannelSelector or TokenProtector");
    family = PluginFamily::token_protector;
  }
  add_info(PluginInfo{name, family, summary, describe_params<P>()});
  auto factory = [name, family](const ConfigNode& block, const PluginRegistry& registry) {
    P params = parse_params<P>(block, {plugin_type_key(family)}, name);
    if constexpr (std::is_constructible_v<Plugin, const P&, const PluginRegistry&>) {
      return std::make_unique<Plugin>(params, registry);
    } else if constexpr (std::is_constructible_v<Plugin, const P&, CpuImplementation>) {
      return std::make_unique<Plugin>(params, registry.implementation());
    } else {
      return std::make_unique<Plugin>(params);
    }
  };
  if constexpr (std::is_base_of_v<Quantizer, Plugin>) {
    quantizers_[name] = factory;
  } else if constexpr (std::is_base_of_v<ChannelSelector, Plugin>) {
    selectors_[name] = factory;
  } else {
    protectors_[name] = factory;
  }
}

}  // namespace vidkv
