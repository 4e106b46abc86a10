// YAML -> ConfigNode, keeping file:line:column of every value. The only YAML parser entry point of VidKV.
#pragma once

#include <string>

#include "vidkv/core/config_node.h"

namespace vidkv {

// Parses a YAML file; syntax errors are ConfigErrors "FILE:LINE:COL: YAML syntax error: ...". Bounded: at most
// 4 MiB of text, 20000 values after aliases are expanded (a "billion laughs" document is an error at its first
// line past the bound) and 64 levels of nesting; only regular files are read.
ConfigNode load_yaml_file(const std::string& path);
// Parses YAML text; `source_name` stands in for the file in locations ("--set", "python").
ConfigNode parse_yaml_text(const std::string& text, const std::string& source_name);
// Parses one `--set dotted.path=value` override into (path, value); the value is YAML (so lists and maps work).
std::pair<std::string, ConfigNode> parse_set_override(const std::string& assignment);

}  // namespace vidkv
