// identity: CPU reference of the full-precision baseline (values stored in fp16, bf16 or fp32, round to nearest
// even). Layout: identity_format.h (one values section; effective bits 16 or 32).
#include "vidkv/plugins/quantizers/identity/identity.h"

#include "vidkv/plugins/quantizers/identity/identity_cuda.h"
#include "vidkv/plugins/quantizers/identity/identity_format.h"
#include "vidkv/quantization/group_format.h"

namespace vidkv {

PackedLayout IdentityQuantizer::layout(const BlockShape& shape, const TokenContext&) const {
  PackedLayout l(shape.elements(), 8.0 * dtype_size(params_.dtype));
  l.add("values", SectionKind::codes, identity_format::values_bytes(shape.elements(), params_.dtype));
  return l;
}

void IdentityQuantizer::encode(const float* in, const BlockShape& shape, const TokenContext&, std::uint8_t* out) const {
  for (std::int64_t i = 0; i < shape.elements(); ++i) group_format::put_scalar(out, i, params_.dtype, in[i]);
}

void IdentityQuantizer::decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, float* out) const {
  for (std::int64_t i = 0; i < shape.elements(); ++i) out[i] = group_format::get_scalar(in, i, params_.dtype);
}

KernelTier IdentityQuantizer::tier(Device device, const BlockShape&) const {
  return {plugin_name() + (device == Device::cuda ? ":cuda" : ":reference"), true};
}

#ifdef VIDKV_WITH_CUDA
void IdentityQuantizer::encode_cuda(const TensorView& in, const BlockShape& shape, const TokenContext&, std::uint8_t* out,
                           const Execution& ex) const {
  identity_cuda::encode(params_.dtype, in.data, in.dtype, shape.elements(), out, ex.cuda_stream);
}

void IdentityQuantizer::decode_cuda(const std::uint8_t* in, const BlockShape& shape, const TokenContext&, const TensorView& out,
                           const Execution& ex) const {
  identity_cuda::decode(params_.dtype, in, shape.elements(), out.data, out.dtype, ex.cuda_stream);
}
#endif

void register_identity(PluginRegistry& registry) {
  registry.add<IdentityQuantizer>("identity", "stores values in fp16, bf16 or fp32 (the full-precision baseline)");
}

}  // namespace vidkv
