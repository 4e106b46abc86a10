#include "vidkv/core/error.h"

#include <cstdio>
#include <cstdlib>

namespace vidkv::detail {

void assertion_failed(const char* expr, const char* file, int line, const std::string& message) {
  std::fprintf(stderr, "vidkv internal error (a bug, please report it): %s:%d: assertion `%s` failed%s%s\n", file, line,
               expr, message.empty() ? "" : ": ", message.c_str());
  std::abort();
}

}  // namespace vidkv::detail
