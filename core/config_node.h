// A parsed configuration tree that remembers where every value came from.
//
// YAML files, `--set` overrides and Python dicts are all converted to ConfigNode by the experiments layer; plugins'
// parameters are read from it (params.h). Core never sees YAML or Python: errors still name the source file, line
// and column, and the dotted path of the value.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace vidkv {

struct SourceLocation {
  std::string file;  // "" when the value was built in code; "--set" for command-line overrides; "python" for dicts
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown

  // "file:line:column" (or the parts that are known).
  std::string str() const;
};

class ConfigNode {
 public:
  enum class Kind { null, scalar, map, list };

  ConfigNode() = default;
  static ConfigNode scalar(std::string text, SourceLocation loc = {});
  static ConfigNode map(SourceLocation loc = {});
  static ConfigNode list(SourceLocation loc = {});

  Kind kind() const { return kind_; }
  bool is_null() const { return kind_ == Kind::null; }
  bool is_scalar() const { return kind_ == Kind::scalar; }
  bool is_map() const { return kind_ == Kind::map; }
  bool is_list() const { return kind_ == Kind::list; }

  const SourceLocation& location() const { return loc_; }
  void set_location(SourceLocation loc) { loc_ = std::move(loc); }
  // Where this value's key stands in its parent map (a YAML file's key; unknown, line 0, for values built in code).
  const SourceLocation& key_location() const { return key_loc_; }
  void set_key_location(SourceLocation loc) { key_loc_ = std::move(loc); }
  // Dotted path from the document root ("codec.key.high.bits"), for messages.
  const std::string& path() const { return path_; }
  void set_path(const std::string& path);  // also re-derives the children's paths

  // Scalars. The typed readers throw ConfigError "file:line:col: path: expected an integer, got 'x'".
  const std::string& text() const;
  std::int64_t as_int() const;
  double as_double() const;
  bool as_bool() const;

  // Maps keep insertion order (so printed configs follow the file).
  const std::vector<std::pair<std::string, ConfigNode>>& entries() const { return map_; }
  bool has(const std::string& key) const;
  const ConfigNode* find(const std::string& key) const;
  ConfigNode* find(const std::string& key);
  const ConfigNode& at(const std::string& key) const;  // throws ConfigError "missing key"
  ConfigNode& set(const std::string& key, ConfigNode value);  // replaces or appends
  bool erase(const std::string& key);

  // Lists.
  const std::vector<ConfigNode>& items() const { return list_; }
  void push_back(ConfigNode value);

  // Dotted-path access ("codec.key.bits"); creates intermediate maps for set_path_value.
  const ConfigNode* find_path(const std::string& dotted) const;
  void set_path_value(const std::string& dotted, ConfigNode value);

  // Deep merge: maps merge key by key, anything else replaces. Used for defaults -> preset -> file -> --set.
  void merge_from(const ConfigNode& overlay);

  // Compact flow-style text, e.g. {type: uniform, bits: 2}; stable (used in run names and hashes).
  std::string dump() const;
  // Block-style YAML text, indented by `indent` spaces (used to save resolved configs).
  std::string dump_yaml(int indent = 0) const;

  // Throws ConfigError prefixed with this node's location and path.
  [[noreturn]] void fail(const std::string& message) const;
  // fail() at the key's location where it is known (an unknown or misplaced key: the line and column of the key, not
  // of its value, which for a block starts on the next line), else at the value's.
  [[noreturn]] void fail_at_key(const std::string& message) const;

 private:
  Kind kind_ = Kind::null;
  std::string scalar_;
  std::vector<std::pair<std::string, ConfigNode>> map_;
  std::vector<ConfigNode> list_;
  SourceLocation loc_;
  SourceLocation key_loc_;
  std::string path_;
};

}  // namespace vidkv
