#include "vidkv/core/plugin_registry.h"

#include <algorithm>

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"

namespace vidkv {

const char* plugin_family_name(PluginFamily f) {
  switch (f) {
    case PluginFamily::quantizer: return "quantizer";
    case PluginFamily::channel_selector: return "channel_selector";
    case PluginFamily::token_protector: return "token_protector";
  }
  return "?";
}

PluginFamily plugin_family_from_name(const std::string& name) {
  for (PluginFamily f : {PluginFamily::quantizer, PluginFamily::channel_selector, PluginFamily::token_protector})
    if (name == plugin_family_name(f)) return f;
  VIDKV_THROW(ConfigError, "unknown plugin family '", name, "'; valid: quantizer, channel_selector, token_protector");
}

void PluginRegistry::add_info(PluginInfo info) {
  auto key = std::make_pair(info.family, info.name);
  if (auto it = infos_.find(key); it != infos_.end())
    VIDKV_THROW(ConfigError, plugin_family_name(info.family), " '", info.name, "' is registered twice (", it->second.origin,
                ", then ", info.origin, ")");
  infos_.emplace(std::move(key), std::move(info));
}

void PluginRegistry::add_quantizer(PluginInfo info, QuantizerFactory factory) {
  if (info.family != PluginFamily::quantizer) VIDKV_THROW(ConfigError, "add_quantizer: '", info.name, "' is not a quantizer");
  if (info.origin.empty()) info.origin = origin_;
  const std::string name = info.name;
  add_info(std::move(info));
  quantizers_[name] = std::move(factory);
}

PluginRegistry PluginRegistry::with_implementation(CpuImplementation implementation) const {
  PluginRegistry copy = *this;
  copy.implementation_ = implementation;
  return copy;
}

const std::string& PluginRegistry::block_type(PluginFamily family, const ConfigNode& block) const {
  const char* key = kPluginTypeKey;
  if (!block.is_map()) block.fail(std::string("expected a ") + plugin_family_name(family) + " block {" + key + ": NAME, ...}");
  const ConfigNode* type = block.find(key);
  if (!type) {
    std::string hint;
    if (block.has("preset")) hint = " (presets are resolved by the experiment loader, not inside plugin blocks)";
    if (block.has("quantizer")) hint = " (the plugin key was 'quantizer:' in earlier versions; every family now uses 'type:')";
    for (const auto& [k, v] : block.entries()) {
      const std::string near = did_you_mean(k, {key});
      if (k != "quantizer" && !near.empty())
        v.fail_at_key("unknown key '" + k + "'" + near + "; a " + plugin_family_name(family) +
               " block names its plugin with '" + key + ": NAME'");
    }
    block.fail(std::string("missing '") + key + "' naming the " + plugin_family_name(family) + "; valid: " +
               join_names(names(family)) + hint);
  }
  const std::string& name = type->text();
  auto it = infos_.find({family, name});
  if (it == infos_.end()) {
    auto valid = names(family);
    type->fail("unknown " + std::string(plugin_family_name(family)) + " '" + name + "'" + did_you_mean(name, valid) +
               "; valid: " + join_names(valid));
  }
  return name;
}

std::unique_ptr<Quantizer> PluginRegistry::make_quantizer(const ConfigNode& block) const {
  const std::string& name = block_type(PluginFamily::quantizer, block);
  std::unique_ptr<Quantizer> q = quantizers_.at(name)(block, *this);
  q->name_ = name;
  return q;
}

std::unique_ptr<ChannelSelector> PluginRegistry::make_channel_selector(const ConfigNode& block) const {
  const std::string& name = block_type(PluginFamily::channel_selector, block);
  std::unique_ptr<ChannelSelector> s = selectors_.at(name)(block, *this);
  s->name_ = name;
  return s;
}

std::unique_ptr<TokenProtector> PluginRegistry::make_token_protector(const ConfigNode& block) const {
  const std::string& name = block_type(PluginFamily::token_protector, block);
  std::unique_ptr<TokenProtector> p = protectors_.at(name)(block, *this);
  p->name_ = name;
  return p;
}

void PluginRegistry::validate(PluginFamily family, const ConfigNode& block) const {
  switch (family) {
    case PluginFamily::quantizer: (void)make_quantizer(block); break;
    case PluginFamily::channel_selector: (void)make_channel_selector(block); break;
    case PluginFamily::token_protector: (void)make_token_protector(block); break;
  }
}

const PluginInfo* PluginRegistry::find(PluginFamily family, const std::string& name) const {
  auto it = infos_.find({family, name});
  return it == infos_.end() ? nullptr : &it->second;
}

std::vector<PluginInfo> PluginRegistry::list() const {
  std::vector<PluginInfo> out;
  for (const auto& [key, info] : infos_) out.push_back(info);  // the map's order: family, then name
  return out;
}

std::vector<std::string> PluginRegistry::names(PluginFamily family) const {
  std::vector<std::string> out;
  for (const auto& [key, info] : infos_)
    if (key.first == family) out.push_back(key.second);
  return out;
}

}  // namespace vidkv
