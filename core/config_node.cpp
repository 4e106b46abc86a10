#include "vidkv/core/config_node.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "vidkv/core/error.h"

namespace vidkv {

std::string SourceLocation::str() const {
  if (file.empty() && line == 0) return "";
  // A --set value is one line of the command: "--set PATH", without a made-up line and column.
  if (file.rfind("--set ", 0) == 0) return file;
  std::string out = file.empty() ? "<config>" : file;
  if (line > 0) out += detail::concat(":", line);
  if (column > 0) out += detail::concat(":", column);
  return out;
}

ConfigNode ConfigNode::scalar(std::string text, SourceLocation loc) {
  ConfigNode n;
  n.kind_ = Kind::scalar;
  n.scalar_ = std::move(text);
  n.loc_ = std::move(loc);
  return n;
}

ConfigNode ConfigNode::map(SourceLocation loc) {
  ConfigNode n;
  n.kind_ = Kind::map;
  n.loc_ = std::move(loc);
  return n;
}

ConfigNode ConfigNode::list(SourceLocation loc) {
  ConfigNode n;
  n.kind_ = Kind::list;
  n.loc_ = std::move(loc);
  return n;
}

void ConfigNode::set_path(const std::string& path) {
  path_ = path;
  for (auto& [key, child] : map_) child.set_path(path.empty() ? key : path + "." + key);
  for (std::size_t i = 0; i < list_.size(); ++i) list_[i].set_path(path + "[" + std::to_string(i) + "]");
}

namespace {

// "path: " before a message, unless the message already starts with it ("metrics: the list is empty" from the
// node at path metrics reads once, not "metrics: metrics: ...").
std::string path_prefix(const std::string& path, const std::string& message) {
  if (path.empty() || message.rfind(path + ": ", 0) == 0) return "";
  return path + ": ";
}

}  // namespace

void ConfigNode::fail(const std::string& message) const {
  std::string where = loc_.str();
  std::string prefix = where.empty() ? "" : where + ": ";
  throw ConfigError(prefix + path_prefix(path_, message) + message);
}

void ConfigNode::fail_at_key(const std::string& message) const {
  if (key_loc_.line == 0) fail(message);
  throw ConfigError(key_loc_.str() + ": " + path_prefix(path_, message) + message);
}

const std::string& ConfigNode::text() const {
  if (kind_ != Kind::scalar) fail("expected a single value, got a " + std::string(is_map() ? "mapping" : is_list() ? "list" : "null"));
  return scalar_;
}

std::int64_t ConfigNode::as_int() const {
  const std::string& t = text();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || *end != '\0' || errno == ERANGE) fail("expected an integer, got '" + t + "'");
  return v;
}

double ConfigNode::as_double() const {
  const std::string& t = text();
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(t.c_str(), &end);
  if (t.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(v)) fail("expected a finite number, got '" + t + "'");
  return v;
}

bool ConfigNode::as_bool() const {
  std::string t = text();
  std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (t == "true" || t == "yes" || t == "on" || t == "1") return true;
  if (t == "false" || t == "no" || t == "off" || t == "0") return false;
  fail("expected true or false, got '" + text() + "'");
}

bool ConfigNode::has(const std::string& key) const { return find(key) != nullptr; }

const ConfigNode* ConfigNode::find(const std::string& key) const {
  for (const auto& [k, v] : map_)
    if (k == key) return &v;
  return nullptr;
}

ConfigNode* ConfigNode::find(const std::string& key) {
  for (auto& [k, v] : map_)
    if (k == key) return &v;
  return nullptr;
}

const ConfigNode& ConfigNode::at(const std::string& key) const {
  if (!is_map()) fail("expected a mapping with key '" + key + "'");
  const ConfigNode* n = find(key);
  if (!n) fail("missing key '" + key + "'");
  return *n;
}

ConfigNode& ConfigNode::set(const std::string& key, ConfigNode value) {
  if (kind_ == Kind::null) kind_ = Kind::map;
  VIDKV_ASSERT(kind_ == Kind::map, "set() on a non-map node at ", path_);
  value.set_path(path_.empty() ? key : path_ + "." + key);
  if (ConfigNode* existing = find(key)) {
    *existing = std::move(value);
    return *existing;
  }
  map_.emplace_back(key, std::move(value));
  return map_.back().second;
}

bool ConfigNode::erase(const std::string& key) {
  auto it = std::find_if(map_.begin(), map_.end(), [&](const auto& e) { return e.first == key; });
  if (it == map_.end()) return false;
  map_.erase(it);
  return true;
}

void ConfigNode::push_back(ConfigNode value) {
  if (kind_ == Kind::null) kind_ = Kind::list;
  VIDKV_ASSERT(kind_ == Kind::list, "push_back() on a non-list node at ", path_);
  value.set_path(path_ + "[" + std::to_string(list_.size()) + "]");
  list_.push_back(std::move(value));
}

static std::vector<std::string> split_dotted(const std::string& dotted) {
  std::vector<std::string> parts;
  std::string cur;
  for (char c : dotted) {
    if (c == '.') {
      parts.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  parts.push_back(cur);
  return parts;
}

const ConfigNode* ConfigNode::find_path(const std::string& dotted) const {
  const ConfigNode* n = this;
  for (const auto& part : split_dotted(dotted)) {
    if (!n->is_map()) return nullptr;
    n = n->find(part);
    if (!n) return nullptr;
  }
  return n;
}

void ConfigNode::set_path_value(const std::string& dotted, ConfigNode value) {
  auto parts = split_dotted(dotted);
  ConfigNode* n = this;
  for (std::size_t i = 0; i + 1 < parts.size(); ++i) {
    ConfigNode* child = n->is_map() ? n->find(parts[i]) : nullptr;
    if (!child || !child->is_map()) {
      if (!n->is_map() && !n->is_null()) n->fail("cannot set '" + dotted + "': not a mapping");
      child = &n->set(parts[i], ConfigNode::map(value.location()));
    }
    n = child;
  }
  if (!n->is_map() && !n->is_null()) n->fail("cannot set '" + dotted + "': not a mapping");
  n->set(parts.back(), std::move(value));
}

void ConfigNode::merge_from(const ConfigNode& overlay) {
  if (overlay.is_map() && is_map()) {
    for (const auto& [key, value] : overlay.map_) {
      ConfigNode* mine = find(key);
      if (mine && mine->is_map() && value.is_map()) {
        mine->merge_from(value);
      } else {
        set(key, value);
      }
    }
    return;
  }
  std::string keep_path = path_;
  *this = overlay;
  set_path(keep_path);
}

static bool needs_quotes(const std::string& s) {
  if (s.empty()) return true;
  for (char c : s)
    if (c == ':' || c == ',' || c == '{' || c == '}' || c == '[' || c == ']' || c == '#' || c == '"' || c == '\'' ||
        c == '\n')
      return true;
  return s.front() == ' ' || s.back() == ' ' || s.front() == '*' || s.front() == '&' || s.front() == '!' ||
         s.front() == '-';
}

static std::string quote(const std::string& s) {
  if (!needs_quotes(s)) return s;
  // Numbers like -1 or -0.5 are fine unquoted.
  char* end = nullptr;
  std::strtod(s.c_str(), &end);
  if (!s.empty() && end && *end == '\0') return s;
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out + "\"";
}

std::string ConfigNode::dump() const {
  switch (kind_) {
    case Kind::null: return "null";
    case Kind::scalar: return quote(scalar_);
    case Kind::list: {
      std::string out = "[";
      for (std::size_t i = 0; i < list_.size(); ++i) out += (i ? ", " : "") + list_[i].dump();
      return out + "]";
    }
    case Kind::map: {
      std::string out = "{";
      for (std::size_t i = 0; i < map_.size(); ++i) out += (i ? ", " : "") + map_[i].first + ": " + map_[i].second.dump();
      return out + "}";
    }
  }
  return "";
}

std::string ConfigNode::dump_yaml(int indent) const {
  const std::string pad(static_cast<std::size_t>(indent), ' ');
  std::string out;
  if (is_map()) {
    for (const auto& [key, value] : map_) {
      if ((value.is_map() && !value.map_.empty()) || (value.is_list() && !value.list_.empty())) {
        out += pad + key + ":\n" + value.dump_yaml(indent + 2);
      } else {
        out += pad + key + ": " + value.dump() + "\n";
      }
    }
  } else if (is_list()) {
    for (const auto& item : list_) {
      if (item.is_map() && !item.map_.empty()) {
        std::string inner = item.dump_yaml(indent + 2);
        out += pad + "- " + inner.substr(static_cast<std::size_t>(indent) + 2);
      } else {
        out += pad + "- " + item.dump() + "\n";
      }
    }
  } else {
    out += pad + dump() + "\n";
  }
  return out;
}

}  // namespace vidkv
