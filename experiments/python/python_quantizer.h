// Python-defined quantizers: a Python class used through the registry like any C++ quantizer, for prototyping.
// Slower (every call goes through the interpreter, one at a time under the GIL) but identical in results to a C++
// quantizer computing the same arithmetic (tests/python/test_python_plugins.py compares results.csv).
//
// The class (examples/plugin-skeletons/python/py_absmax.py):
//   name = "py_absmax"                    registry name (quantizer family)
//   summary = "one line"                  optional
//   params = {"bits": {"default": 4, "min": 2, "max": 8, "description": "...", "unit": "bits"},
//             "mode": {"default": "a", "choices": ["a", "b"], "description": "..."}}
//                                         type from the default: bool, int, float, or str with `choices`
//   __init__(self, **params)              the parsed parameters (every one, defaults filled)
//   layout(self, shape) -> (nominal_bits, [(section_name, kind, bytes), ...])
//                                         shape = (heads, tokens, channels); kind: codes, scales, zero_points,
//                                         channel_mask, token_mask, residual, header
//   encode(self, x) -> bytes              x: numpy float32 [heads, tokens, channels]; exactly layout's bytes
//   decode(self, data, shape) -> array    data: bytes; the float32 values [heads, tokens, channels]
// A module file lists its classes in VIDKV_PLUGINS = [Cls, ...].
//
// Errors: a class without these attributes, or with a bad params spec, is a ConfigError naming it; a parameter out
// of its range a ConfigError naming the YAML line (parse_dynamic_params); encode/decode returning the wrong size, or
// an exception raised inside Python, a vidkv::Error naming the plugin and the Python error text.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "vidkv/core/plugin_registry.h"

namespace vidkv {

// Adds the Python class `cls` to `registry` as a quantizer; origin: shown by `vidkv plugins list`. GIL held.
void register_python_quantizer(PluginRegistry& registry, const pybind11::object& cls, const std::string& origin);

// Imports the Python file `path` as a module and registers every class of its VIDKV_PLUGINS list (origin: the
// file's canonical path); returns their number. GIL held.
int register_python_plugin_file(PluginRegistry& registry, const std::string& path);

}  // namespace vidkv
