#include "vidkv/experiments/src/yaml_config.h"

#include <yaml-cpp/yaml.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

SourceLocation location_of(const YAML::Node& node, const std::string& file) {
  const YAML::Mark m = node.Mark();
  if (m.is_null()) return {file, 0, 0};
  return {file, m.line + 1, m.column + 1};
}

// Bounds on an experiment document. yaml-cpp keeps an alias as a second reference to its anchor's node, so a
// kilobyte of nested anchors ("billion laughs") is small in yaml-cpp but would expand to billions of values here:
// the conversion counts every value it makes and stops at kMaxValues. Real experiment files hold a few hundred
// (experiments/paper/*.yaml and quickstart.yaml: at most about 100).
constexpr std::size_t kMaxValues = 20000;
constexpr int kMaxDepth = 64;
constexpr std::size_t kMaxFileBytes = std::size_t{4} << 20;

struct Budget {
  std::size_t values = 0;
};

ConfigNode convert(const YAML::Node& node, const std::string& file, Budget& budget, int depth) {
  const SourceLocation loc = location_of(node, file);
  if (++budget.values > kMaxValues)
    throw ConfigError(loc.str() + ": the YAML document expands to more than " + std::to_string(kMaxValues) +
                      " values (anchors and aliases nested in each other?); an experiment file is far smaller");
  if (depth > kMaxDepth)
    throw ConfigError(loc.str() + ": the YAML document nests deeper than " + std::to_string(kMaxDepth) + " levels");
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
      for (const auto& item : node) n.push_back(convert(item, file, budget, depth + 1));
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
        if (!kv.first.IsScalar()) {
          const SourceLocation kl = location_of(kv.first, file);
          throw ConfigError(kl.str() + ": a key must be a plain text, not a list or a map");
        }
        ConfigNode child = convert(kv.second, file, budget, depth + 1);
        child.set_key_location(location_of(kv.first, file));
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
    if (text.size() > kMaxFileBytes)
      throw ConfigError(source_name + ": " + std::to_string(text.size()) + " bytes, more than an experiment file may hold (" +
                        std::to_string(kMaxFileBytes) + ")");
    YAML::Node root = YAML::Load(text);
    Budget budget;
    ConfigNode n = convert(root, source_name, budget, 0);
    n.set_path("");
    return n;
  } catch (const YAML::ParserException& e) {
    SourceLocation loc{source_name, e.mark.line + 1, e.mark.column + 1};
    throw ConfigError(loc.str() + ": YAML syntax error: " + e.msg);
  } catch (const YAML::Exception& e) {  // e.g. an alias to an unknown anchor, a bad conversion
    SourceLocation loc{source_name, e.mark.line + 1, e.mark.column + 1};
    throw ConfigError(loc.str() + ": YAML error: " + e.msg);
  }
}

}  // namespace

ConfigNode load_yaml_file(const std::string& path) {
  struct stat st{};
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    throw ConfigError(path + ": not a regular file (a folder, FIFO or device); an experiment is a YAML file");
  if (::stat(path.c_str(), &st) == 0 && static_cast<std::size_t>(st.st_size) > kMaxFileBytes)
    throw ConfigError(path + ": " + std::to_string(st.st_size) + " bytes, more than an experiment file may hold (" +
                      std::to_string(kMaxFileBytes) + ")");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int err = errno;  // ENOENT: "No such file or directory", EACCES: "Permission denied", ...
    throw ConfigError(path + ": cannot open experiment file: " + std::strerror(err));
  }
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
