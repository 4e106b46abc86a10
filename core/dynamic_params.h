// Parameters of a plugin known only at run time (a Python-defined plugin): described by ParamSpecs (params.h)
// instead of a struct with bind(), and parsed by the same rules with the same messages as ParamReader: unknown keys
// (with "did you mean"), out-of-range integers and reals, invalid choices are ConfigErrors naming the YAML line.
// Block parameters are not supported for such plugins (ConfigError when a spec declares one).
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "vidkv/core/config_node.h"
#include "vidkv/core/params.h"

namespace vidkv {

struct DynamicParamValue {
  ParamType type = ParamType::integer;
  std::int64_t integer = 0;
  double real = 0;
  bool boolean = false;
  std::string text;  // the choice
};

// Every parameter of `specs`, in their order: the block's value, or the spec's default_text when absent.
std::vector<std::pair<std::string, DynamicParamValue>> parse_dynamic_params(const ConfigNode& node,
                                                                            const std::vector<ParamSpec>& specs,
                                                                            const std::set<std::string>& reserved,
                                                                            const std::string& plugin);

}  // namespace vidkv
