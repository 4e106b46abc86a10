// identity: stores every value in fp16, bf16 or fp32 (round to nearest even) and converts back on decode. The
// full-precision baseline (the paper's "FP16" rows) and the reference against which errors are measured.
// No paper differences; fp32 is lossless. A finite value beyond the dtype's range saturates to its largest finite
// value (fp16: 125000 is stored as 65504; group_format.h put_scalar), never to inf.
//
// Packed layout (identity_format.h): values, elements * sizeof(dtype) bytes, little-endian, block order
// [heads, tokens, channels]. effective bits = nominal bits = 16 (fp16, bf16) or 32 (fp32).
#pragma once

#include "vidkv/core/dtype.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/core/quantizer.h"

namespace vidkv {

struct IdentityParams {
  DType dtype = DType::f16;

  template <class B>
  static void bind(B& b) {
    b.choice("dtype", &IdentityParams::dtype,
             std::vector<std::pair<std::string, DType>>{{"fp16", DType::f16}, {"bf16", DType::bf16}, {"fp32", DType::f32}},
             "storage type of every value (round to nearest even)");
  }
};

class IdentityQuantizer : public Quantizer {
 public:
  using Params = IdentityParams;
  explicit IdentityQuantizer(const Params& params) : params_(params) { set_plugin_name("identity"); }
  const Params& params() const { return params_; }

  PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const override;
  // Always token-separable (Quantizer::token_separable): the values are stored in block order.
  bool token_separable(const BlockShape&) const override { return true; }
  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override;
  void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const override;
  // "identity:reference" on cpu (one loop, no optimised variant), "identity:cuda". Exact.
  KernelTier tier(Device device, const BlockShape& shape) const override;

 protected:
  // identity.cu: one thread per element, the same put_scalar / get_scalar conversions.
  VIDKV_QUANTIZER_CUDA_OVERRIDES

 private:
  Params params_;
};

void register_identity(PluginRegistry& registry);

}  // namespace vidkv
