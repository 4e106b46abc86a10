#include "vidkv/experiments/src/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <fstream>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

SourceLocation location_of(const YAML::Node& node, const std::string& file) {
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return {file, 0, 0};
  return {file, m.line + 1, m.column + 1};
}

ConfigNode convert(const YAML::Node& node, const std::string& file) {
  const SourceLocation loc = location_of(node, file);
  switch (node.Type()) {
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined: {
      ConfigNode n;
      n.set_location(loc);
      return n;
    }
    case YAML::NodeType::Scalar: return ConfigNode::scalar(node.Scalar(), loc);
    case YAML::NodeType::Sequence: {
      ConfigNode n = ConfigNode::list(loc);
      for (const auto& item : node) n.push_back(convert(item, file));
      return n;
    }
    case YAML::NodeType::Map: {
      ConfigNode n = ConfigNode::map(loc);
      for (const auto& kv : node) {
        const std::string key = kv.first.as<std::string>();
        if (n.has(key)) {
          const SourceLocation kl = location_of(kv.first, file);
          throw ConfigError(kl.str() + ": duplicate key '" + key + "'");
        }
        ConfigNode child = convert(kv.second, file);
        // A key with no value has no mark of its own: point at the key.
        if (child.location().line == 0) child.set_location(location_of(kv.first, file));
        n.set(key, std::move(child));
      }
      return n;
    }
  }
  return ConfigNode();
}

ConfigNode parse(const std::string& text, const std::string& source_name) {
  try {
    YAML::Node root = YAML::Load(text);
    ConfigNode n = convert(root, source_name);
    n.set_path("");
    return n;
  } catch (const YAML::ParserException& e) {
    SourceLocation loc{source_name, e.mark.line + 1, e.mark.column + 1};
    throw ConfigError(loc.str() + ": YAML syntax error: " + e.msg);
  }
}

}  // namespace

ConfigNode load_yaml_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ConfigError(path + ": cannot open experiment file");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return parse(text, path);
}

ConfigNode parse_yaml_text(const std::string& text, const std::string& source_name) { return parse(text, source_name); }

std::pair<std::string, ConfigNode> parse_set_override(const std::string& assignment) {
  const auto eq = assignment.find('=');
  if (eq == std::string::npos || eq == 0)
    throw ConfigError("--set " + assignment + ": expected dotted.path=value (e.g. --set codec.value.gamma=0.5)");
  const std::string path = assignment.substr(0, eq);
  ConfigNode value = parse(assignment.substr(eq + 1), "--set " + path);
  if (value.is_null() && eq + 1 == assignment.size()) value = ConfigNode::scalar("", {"--set " + path, 0, 0});
  return {path, value};
}

}  // namespace vidkv
