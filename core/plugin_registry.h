// The plugin registry: every quantizer, channel selector and token protector by name, with its parameter specs.
//
// A registry is a value that grows at run time and is handed explicitly to whoever builds plugins (the experiment
// planner and runner, the benches, the Python bindings): there is no global one. builtin_plugin_registry() makes one
// holding every plugin shipped with VidKV (register_builtin_plugins(), plugins/register_builtin_plugins.cpp, calls
// one `register_NAME(registry)` per plugin folder); plugins loaded at run time (shared libraries through
// plugin_library.h, Python classes through the embedded interpreter) call the same add<>() on the caller's registry.
// Names are scoped by family: a quantizer and a channel selector may share a name. Every plugin block of every
// family names its plugin with the one key `type:` ({type: uniform, bits: 2}, {type: range, fraction: 0.5}).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
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
// "quantizer" -> PluginFamily::quantizer, ...; nullptr-free: throws ConfigError for another text.
PluginFamily plugin_family_from_name(const std::string& name);
// The key that names the plugin in a config block of any family: "type".
inline constexpr const char* kPluginTypeKey = "type";

struct PluginInfo {
  std::string name;
  PluginFamily family = PluginFamily::quantizer;
  std::string summary;  // one line
  std::vector<ParamSpec> params;
  std::string origin;  // "built-in", or the library / module that registered it
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
  // (const Params&, const PluginRegistry&). Registering a name twice in one family is a ConfigError.
  template <class Plugin>
  void add(const std::string& name, const std::string& summary);

  // Registers a quantizer whose parameters are known only at run time (a Python class,
  // experiments/python/python_quantizer.h): info.params describe them (`vidkv plugins describe`), and `factory`
  // parses the block itself (core/dynamic_params.h). info.family must be quantizer; an empty info.origin takes the
  // registry's origin. Same duplicate rule as add<>().
  using QuantizerFactory = std::function<std::unique_ptr<Quantizer>(const ConfigNode& block, const PluginRegistry& registry)>;
  void add_quantizer(PluginInfo info, QuantizerFactory factory);

  // Builds the plugin a config block names, e.g. {type: uniform, bits: 2}. Errors name the block's location.
  std::unique_ptr<Quantizer> make_quantizer(const ConfigNode& block) const;
  std::unique_ptr<ChannelSelector> make_channel_selector(const ConfigNode& block) const;
  std::unique_ptr<TokenProtector> make_token_protector(const ConfigNode& block) const;

  // Checks a block fully (parameters and nested blocks) without keeping the plugin.
  void validate(PluginFamily family, const ConfigNode& block) const;

  const PluginInfo* find(PluginFamily family, const std::string& name) const;
  std::vector<PluginInfo> list() const;  // sorted by family, then name
  std::vector<std::string> names(PluginFamily family) const;

  // The same plugins (factories are shared) building with another CPU implementation: how a run gets the reference
  // twin of a registry that has plugins loaded at run time.
  PluginRegistry with_implementation(CpuImplementation implementation) const;

  // Where the plugins registered from now on come from ("built-in" until set; a loader sets the library's path
  // while its entry point runs). Recorded in PluginInfo::origin for `vidkv plugins list`.
  void set_origin(std::string origin) { origin_ = std::move(origin); }
  const std::string& origin() const { return origin_; }

 private:
  template <class Base>
  using Factory = std::function<std::unique_ptr<Base>(const ConfigNode&, const PluginRegistry&)>;

  void add_info(PluginInfo info);
  const std::string& block_type(PluginFamily family, const ConfigNode& block) const;

  CpuImplementation implementation_;
  std::string origin_ = "built-in";
  std::map<std::pair<PluginFamily, std::string>, PluginInfo> infos_;
  std::map<std::string, Factory<Quantizer>> quantizers_;
  std::map<std::string, Factory<ChannelSelector>> selectors_;
  std::map<std::string, Factory<TokenProtector>> protectors_;
};

// Registers every plugin shipped with VidKV; both are defined in plugins/register_builtin_plugins.cpp.
void register_builtin_plugins(PluginRegistry& registry);
// A new registry holding every built-in plugin (optimized CPU paths unless asked otherwise); callers add loaded
// plugins to it and pass it on.
PluginRegistry builtin_plugin_registry(CpuImplementation implementation = CpuImplementation::optimized);

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
  add_info(PluginInfo{name, family, summary, describe_params<P>(), origin_});
  auto factory = [name](const ConfigNode& block, const PluginRegistry& registry) {
    P params = parse_params<P>(block, {kPluginTypeKey}, name);
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
