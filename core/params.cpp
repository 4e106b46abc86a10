#include "vidkv/core/params.h"

#include <cmath>
#include <cstdio>

namespace vidkv {

std::string param_type_name(ParamType t) {
  switch (t) {
    case ParamType::integer: return "int";
    case ParamType::real: return "float";
    case ParamType::boolean: return "bool";
    case ParamType::choice: return "choice";
    case ParamType::block: return "block";
  }
  return "?";
}

std::string format_number(double v) {
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.10g", v);
  return buf;
}

}  // namespace vidkv
