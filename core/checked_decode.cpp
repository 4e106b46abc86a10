// decode_checked (see checked_decode.h).
#include "vidkv/core/checked_decode.h"

#include <cmath>

#include "vidkv/core/error.h"

namespace vidkv {

void decode_checked(const Quantizer& q, const std::uint8_t* in, std::size_t in_bytes, const BlockShape& shape,
                    const TokenContext& ctx, float* out, std::size_t out_elements) {
  VIDKV_REQUIRE(shape.heads > 0 && shape.tokens > 0 && shape.channels > 0, ShapeError, "decode: block shape ",
                shape.str(), " must be positive");
  const PackedLayout layout = q.layout(shape, ctx);
  VIDKV_REQUIRE(in_bytes == layout.bytes(), ShapeError, "decode: a packed block of shape ", shape.str(), " is ",
                layout.bytes(), " bytes in this layout, got ", in_bytes);
  VIDKV_REQUIRE(out_elements == static_cast<std::size_t>(shape.elements()), ShapeError, "decode: output holds ",
                out_elements, " values, the block has ", shape.elements());
  q.decode(in, shape, ctx, out);
  for (std::size_t i = 0; i < out_elements; ++i)
    if (!std::isfinite(out[i]))
      VIDKV_THROW(IoError, "decode: value ", i, " of the block ", shape.str(), " decodes to ", out[i],
                  " (a corrupt scale in the packed bytes)");
}

}  // namespace vidkv
