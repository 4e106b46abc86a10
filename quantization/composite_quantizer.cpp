// The composite quantizers' shared child handling (composite_quantizer.h).
#include "vidkv/quantization/composite_quantizer.h"

namespace vidkv::composite {

ConfigNode default_block(std::initializer_list<std::pair<const char*, const char*>> entries) {
  ConfigNode n = ConfigNode::map();
  for (const auto& [k, v] : entries) n.set(k, ConfigNode::scalar(v));
  return n;
}

std::uint8_t* encode_child(const Quantizer& child, const float* in, const BlockShape& shape, const TokenContext& ctx,
                           std::uint8_t* cursor) {
  child.encode(in, shape, ctx, cursor);
  return cursor + child.layout(shape, ctx).bytes();
}

const std::uint8_t* decode_child(const Quantizer& child, const std::uint8_t* cursor, const BlockShape& shape,
                                 const TokenContext& ctx, float* out) {
  child.decode(cursor, shape, ctx, out);
  return cursor + child.layout(shape, ctx).bytes();
}

TensorView device_part(void* data, DType dtype, const BlockShape& shape) {
  return TensorView{data, dtype, Device::cuda, {shape.heads, shape.tokens, shape.channels}};
}

KernelTier joined_tier(const std::string& composite, const std::vector<KernelTier>& children) {
  KernelTier out{composite + "(", true};
  for (std::size_t i = 0; i < children.size(); ++i) {
    out.name += (i == 0 ? "" : ", ") + children[i].name;
    out.exact = out.exact && children[i].exact;
  }
  out.name += ")";
  return out;
}

}  // namespace vidkv::composite
