#include "vidkv/core/dtype.h"

#include "vidkv/core/error.h"

namespace vidkv {

std::string dtype_name(DType t) {
  switch (t) {
    case DType::f16: return "fp16";
    case DType::bf16: return "bf16";
    case DType::f32: return "fp32";
  }
  return "?";
}

DType parse_dtype(const std::string& text, const std::string& what) {
  if (text == "fp16" || text == "float16" || text == "f16") return DType::f16;
  if (text == "bf16" || text == "bfloat16") return DType::bf16;
  if (text == "fp32" || text == "float32" || text == "f32") return DType::f32;
  VIDKV_THROW(ConfigError, what, ": unknown dtype '", text, "' (valid: fp16, bf16, fp32)");
}

}  // namespace vidkv
