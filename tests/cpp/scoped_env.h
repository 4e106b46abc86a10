// Sets an environment variable for a scope (a null value unsets it) and restores the value it had before: the tests
// that switch a kernel tier through the environment (VIDKV_SIGN_FFT, VIDKV_CUDA_MIXED_CHANNEL, ...).
#pragma once

#include <cstdlib>
#include <optional>
#include <string>

namespace vidkv::test {

class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* v = std::getenv(name)) saved_ = v;
    set(value);
  }
  ~ScopedEnv() { set(saved_ ? saved_->c_str() : nullptr); }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  void set(const char* value) const {
    if (value) ::setenv(name_.c_str(), value, 1);
    else ::unsetenv(name_.c_str());
  }
  std::string name_;
  std::optional<std::string> saved_;
};

}  // namespace vidkv::test
