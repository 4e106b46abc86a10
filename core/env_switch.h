// Environment switches that select an implementation (A / B measurements, tests): whether the variable `name` is set
// to exactly `value`. Read at each call; a caller on a hot path that wants the process's first answer caches it.
// C++17, no CUDA headers (host code of .cu files includes it too).
#pragma once

#include <cstdlib>
#include <cstring>

namespace vidkv {

inline bool env_equals(const char* name, const char* value) {
  const char* v = std::getenv(name);
  return v != nullptr && std::strcmp(v, value) == 0;
}

}  // namespace vidkv
