#include "vidkv/core/dynamic_params.h"

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"

namespace vidkv {

namespace {

DynamicParamValue read_value(const ParamSpec& s, const ConfigNode& n, const std::string& plugin) {
  DynamicParamValue v;
  v.type = s.type;
  switch (s.type) {
    case ParamType::integer:
      v.integer = n.as_int();
      if (double(v.integer) < s.min || double(v.integer) > s.max)
        n.fail(s.name + " = " + std::to_string(v.integer) + " is out of range [" + format_number(s.min) + ", " +
               format_number(s.max) + "] for " + plugin);
      break;
    case ParamType::real:
      v.real = n.as_double();
      if (v.real < s.min || v.real > s.max)
        n.fail(s.name + " = " + format_number(v.real) + " is out of range [" + format_number(s.min) + ", " +
               format_number(s.max) + "] for " + plugin);
      break;
    case ParamType::boolean: v.boolean = n.as_bool(); break;
    case ParamType::choice: {
      v.text = n.text();
      for (const auto& c : s.choices)
        if (c == v.text) return v;
      n.fail("'" + v.text + "' is not valid for " + plugin + " (valid: " + join_names(s.choices) + ")");
    }
    case ParamType::block: n.fail("block parameters are not supported for " + plugin);
  }
  return v;
}

}  // namespace

std::vector<std::pair<std::string, DynamicParamValue>> parse_dynamic_params(const ConfigNode& node,
                                                                            const std::vector<ParamSpec>& specs,
                                                                            const std::set<std::string>& reserved,
                                                                            const std::string& plugin) {
  if (!node.is_map() && !node.is_null()) node.fail("expected a mapping of parameters for '" + plugin + "'");
  std::vector<std::string> known;
  for (const auto& s : specs) known.push_back(s.name);
  if (node.is_map()) {
    for (const auto& [key, value] : node.entries()) {
      if (reserved.count(key)) continue;
      bool found = false;
      for (const auto& k : known) found = found || k == key;
      if (found) continue;
      const std::string valid = join_names(known);
      value.fail_at_key("unknown key '" + key + "' for " + plugin + did_you_mean(key, known) +
                 "; valid keys: " + (valid.empty() ? "none" : valid));
    }
  }
  std::vector<std::pair<std::string, DynamicParamValue>> out;
  for (const auto& s : specs) {
    const ConfigNode* n = node.is_map() ? node.find(s.name) : nullptr;
    const ConfigNode def = ConfigNode::scalar(s.default_text, {"default of " + plugin, 0, 0});
    out.emplace_back(s.name, read_value(s, n ? *n : def, plugin));
  }
  return out;
}

}  // namespace vidkv
