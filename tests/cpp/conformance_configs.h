// The conformance configurations of the quantizer registry: every registered quantizer with its defaults, plus a
// table of extra configurations of the plugins that are registered. Shared by test_plugin_conformance.cpp (CPU
// paths) and test_cuda_registry.cpp (CUDA against the CPU reference).
#pragma once
#include "test_registry.h"

#include <string>
#include <vector>

#include "quantizer_test_helpers.h"
#include "vidkv/core/plugin_registry.h"

namespace vidkv::test {

struct Config {
  std::string name;
  KeyValues params;
  std::string str() const {
    std::string s = "{type: " + name;
    for (const auto& [k, v] : params) s += ", " + k + ": " + v;
    return s + "}";
  }
};

// Every registered quantizer with defaults, then the extra configurations of the plugins that are registered.
inline std::vector<Config> conformance_configs() {
  std::vector<Config> out;
  for (const auto& name : test::builtin_registry().names(PluginFamily::quantizer)) out.push_back({name, {}});
  const std::vector<Config> extra{
      {"identity", {{"dtype", "bf16"}}},
      {"identity", {{"dtype", "fp32"}}},
      {"uniform", {{"bits", "1"}}},
      {"uniform", {{"bits", "3"}, {"group", "7"}}},
      {"uniform", {{"bits", "4"}, {"axis", "token"}}},
      {"uniform", {{"bits", "8"}, {"scale_dtype", "fp32"}}},
      {"uniform", {{"bits", "2"}, {"layout", "release"}}},
      {"uniform", {{"bits", "4"}, {"layout", "release"}, {"axis", "token"}}},
      {"uniform", {{"bits", "1"}, {"layout", "release"}, {"group", "5"}}},
      {"sign", {{"axis", "token"}}},
      {"sign", {{"reconstruction", "symmetric"}, {"group", "7"}}},
      {"sign", {{"fft", "complex"}}},
      {"sign", {{"fft", "real"}}},
      {"sign", {{"fft", "complex"}, {"layout", "release"}}},
      {"sign", {{"fft", "real"}, {"axis", "token"}, {"scale_dtype", "fp32"}}},
      {"sign", {{"layout", "release"}, {"reconstruction", "symmetric"}}},
      {"ternary", {{"packing", "slots2"}}},
      {"ternary", {{"packing", "release"}, {"gamma", "0.5"}}},
      {"ternary", {{"reconstruction", "scaled"}, {"group", "5"}}},
      {"ternary", {{"reconstruction", "scaled"}, {"packing", "release"}, {"axis", "token"}}},
      {"ternary", {{"axis", "token"}, {"packing", "slots2"}, {"scale_dtype", "fp32"}, {"reconstruction", "scaled"}}},
  };
  for (const auto& c : extra)
    if (test::builtin_registry().find(PluginFamily::quantizer, c.name)) out.push_back(c);
  return out;
}

}  // namespace vidkv::test
