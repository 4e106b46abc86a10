// Error hierarchy of VidKV.
//
// Two kinds of failure, as in faiss and gem5:
//  - the user's mistakes (bad config, bad trace, impossible shape, unsupported device) are exceptions derived
//    from vidkv::Error; every message names *what* and *where* (file, dataset, YAML line, plugin parameter);
//  - our own bugs are assertions (VIDKV_ASSERT) that abort with file and line.
#pragma once

#include <cstdio>
#include <sstream>
#include <type_traits>
#include <stdexcept>
#include <string>

namespace vidkv {

// Base of every error a user can cause. `what()` is one line, ready to print after "error: ".
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& message) : std::runtime_error(message) {}
};

// Experiment or plugin configuration: unknown key, bad value, impossible parameter combination.
class ConfigError : public Error {
 public:
  using Error::Error;
};

// A tensor whose rank, extent or dtype is not what an operation needs.
class ShapeError : public Error {
 public:
  using Error::Error;
};

// A value the data holds that an operation cannot take: non-finite input (NaN, inf), or a finite value that a
// chosen setting cannot represent (the message names where it is and the parameter that fixes it). In Python it
// is both vidkv.Error and the built-in ValueError.
class ValueError : public Error {
 public:
  using Error::Error;
};

// Reading or writing files: missing, corrupt, truncated, wrong schema, NaN/Inf in data.
class IoError : public Error {
 public:
  using Error::Error;
};

// A valid request that this build, backend or plugin cannot serve (e.g. CUDA without a GPU).
class NotSupportedError : public Error {
 public:
  using Error::Error;
};

// A CUDA runtime or library call failed; the message holds the call and the CUDA error string.
class CudaError : public Error {
 public:
  using Error::Error;
};

namespace detail {
[[noreturn]] void assertion_failed(const char* expr, const char* file, int line, const std::string& message);

// Message text without iostreams: strings and characters are appended, numbers formatted with snprintf (integers
// in full, floating point as %g like an ostream would). Iostream number formatting crashed inside the Python
// extension on the GPU machine (Ubuntu 24.04, Python 3.12, pybind11 3.1); this path needs no locale at all.
// Other streamable types still go through an ostringstream.
inline void append_piece(std::string& out, const std::string& v) { out += v; }
inline void append_piece(std::string& out, const char* v) { out += v ? v : "(null)"; }
inline void append_piece(std::string& out, char v) { out += v; }
inline void append_piece(std::string& out, bool v) { out += v ? "1" : "0"; }
template <class T>
void append_piece(std::string& out, const T& v) {
  char buf[64];
  if constexpr (std::is_integral_v<T> && std::is_signed_v<T>) {
    std::snprintf(buf, sizeof buf, "%lld", static_cast<long long>(v));
    out += buf;
  } else if constexpr (std::is_integral_v<T>) {
    std::snprintf(buf, sizeof buf, "%llu", static_cast<unsigned long long>(v));
    out += buf;
  } else if constexpr (std::is_floating_point_v<T>) {
    std::snprintf(buf, sizeof buf, "%g", static_cast<double>(v));
    out += buf;
  } else if constexpr (std::is_convertible_v<const T&, std::string>) {
    out += std::string(v);
  } else {
    std::ostringstream s;
    s << v;
    out += s.str();
  }
}

template <class... Args>
std::string concat(const Args&... args) {
  std::string out;
  (append_piece(out, args), ...);
  return out;
}
}  // namespace detail

}  // namespace vidkv

// Internal invariant: a failure is a VidKV bug, never the user's fault. Aborts with file, line and the streamed
// message: VIDKV_ASSERT(n <= cap, "n = ", n, " exceeds ", cap).
#define VIDKV_ASSERT(cond, ...)                                                                                 \
  do {                                                                                                          \
    if (!(cond)) ::vidkv::detail::assertion_failed(#cond, __FILE__, __LINE__, ::vidkv::detail::concat(__VA_ARGS__)); \
  } while (0)

// Throws ErrorType with the streamed arguments as message: VIDKV_THROW(ShapeError, "expected ", n, " tokens").
#define VIDKV_THROW(ErrorType, ...) throw ErrorType(::vidkv::detail::concat(__VA_ARGS__))

// Checks a user-facing precondition; throws ErrorType with the message when it fails.
#define VIDKV_REQUIRE(cond, ErrorType, ...) \
  do {                                      \
    if (!(cond)) VIDKV_THROW(ErrorType, __VA_ARGS__); \
  } while (0)
