#include "vidkv/core/cpu_implementation.h"

#include "vidkv/core/error.h"

namespace vidkv {

const char* cpu_implementation_name(CpuImplementation i) {
  return i == CpuImplementation::reference ? "reference" : "optimized";
}

CpuImplementation parse_cpu_implementation(const std::string& name) {
  if (name == "reference") return CpuImplementation::reference;
  if (name == "optimized") return CpuImplementation::optimized;
  VIDKV_THROW(ConfigError, "implementation: expected 'reference' or 'optimized', got '", name, "'");
}

}  // namespace vidkv
