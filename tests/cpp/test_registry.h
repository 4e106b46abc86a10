// The tests' registry of the built-in plugins: one instance per CPU implementation, built on first use from the
// factory builtin_plugin_registry() (core/plugin_registry.h). Production code has no such instance: each command
// builds its registry, adds the plugins it loads, and hands it to whoever builds plugins.
#pragma once

#include "vidkv/core/plugin_registry.h"

namespace vidkv::test {

inline const PluginRegistry& builtin_registry(CpuImplementation implementation = CpuImplementation::optimized) {
  static const PluginRegistry optimized = builtin_plugin_registry(CpuImplementation::optimized);
  static const PluginRegistry reference = builtin_plugin_registry(CpuImplementation::reference);
  return implementation == CpuImplementation::reference ? reference : optimized;
}

}  // namespace vidkv::test
