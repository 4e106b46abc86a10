// The codec contract every quantizer implements (faiss style: bytes, encode, decode).
//
// A quantizer works on a block `[heads, tokens, channels]` of fp32 values: the K or the V of one layer (all its KV
// heads, so that layer-wide statistics such as the release's channel selection are possible) or a single slab
// (heads == 1). Everything needed to decode lives in the bytes: codes, scales, channel masks, protected-token
// masks. The TokenContext is known to both sides (token modality and positions are not stored).
#pragma once

#include <cstdint>
#include <string>

#include "vidkv/core/packed_layout.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

class Quantizer {
 public:
  virtual ~Quantizer() = default;

  // Exact sections and bytes that encode() writes for a block of `shape` under `ctx`, with the element count and
  // the nominal (paper-convention) bits. Depends only on shape and token metadata, never on values.
  virtual PackedLayout layout(const BlockShape& shape, const TokenContext& ctx) const = 0;

  // in:  shape.elements() fp32 values, [heads, tokens, channels] row-major, host memory, all finite.
  // out: exactly layout(shape, ctx).bytes() bytes, host memory. Deterministic for the same input and ctx.
  virtual void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const = 0;

  // in:  the bytes that encode() wrote for the same shape and ctx.
  // out: shape.elements() fp32 values, [heads, tokens, channels] row-major.
  virtual void decode(const std::uint8_t* in, const BlockShape& shape, const TokenContext& ctx, float* out) const = 0;

  // Whether this quantizer can run on `device` for `shape`; when not, `why` (if given) says why.
  virtual bool supports(Device device, const BlockShape& shape, std::string* why = nullptr) const;
};

}  // namespace vidkv
