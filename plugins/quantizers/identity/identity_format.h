// The packed format of the `identity` quantizer: values stored in `dtype`, little-endian, block order.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/dtype.h"
#include "vidkv/core/host_device.h"

namespace vidkv::identity_format {

constexpr int kFormatVersion = 1;

VIDKV_HOST_DEVICE constexpr std::size_t values_bytes(std::int64_t elements, DType dtype) {
  return static_cast<std::size_t>(elements) * static_cast<std::size_t>(dtype_size(dtype));
}
static_assert(values_bytes(128, DType::f16) * 8 == 16 * 128, "fp16 is 16 bits per element");

}  // namespace vidkv::identity_format
