// A bounds-checked decode entry point for packed blocks that come from outside the process (a file, a fuzzer):
// Quantizer::decode trusts that `in` holds exactly layout(shape, ctx).bytes() bytes that encode() wrote. This
// wrapper checks the sizes first and the decoded values after, without changing the plugin interface.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/quantizer.h"

namespace vidkv {

// in:  `in_bytes` bytes of a packed block, host memory; out: `out_elements` fp32 values, host memory.
// Throws ShapeError when in_bytes != q.layout(shape, ctx).bytes() or out_elements != shape.elements(), and IoError
// (naming the first index) when a decoded value is NaN or Inf: a corrupt scale decodes to those, never to an
// out-of-bounds read, since every plugin's decode reads only the sections of its layout (tested by
// fuzz/fuzz_packed_decode.cpp under AddressSanitizer).
void decode_checked(const Quantizer& q, const std::uint8_t* in, std::size_t in_bytes, const BlockShape& shape,
                    const TokenContext& ctx, float* out, std::size_t out_elements);

}  // namespace vidkv
