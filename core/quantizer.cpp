#include "vidkv/core/quantizer.h"

namespace vidkv {

bool Quantizer::supports(Device device, const BlockShape& shape, std::string* why) const {
  if (device == Device::cpu && shape.heads > 0 && shape.tokens >= 0 && shape.channels > 0) return true;
  if (why) *why = device == Device::cpu ? "empty channel axis" : "no CUDA implementation of this quantizer yet";
  return false;
}

}  // namespace vidkv
