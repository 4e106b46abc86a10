// identity on CUDA (identity.cu): one thread per element, group_format::put_scalar / get_scalar as on the CPU, so
// the bytes and the decoded values are bit-identical to identity.cpp. Host-only declarations.
#pragma once

#include <cstdint>

#include "vidkv/core/dtype.h"

namespace vidkv::identity_cuda {

// in: `elements` device values of in_dtype; out: elements * dtype_size(storage) device bytes.
void encode(DType storage, const void* in, DType in_dtype, std::int64_t elements, std::uint8_t* out, void* stream);
// in: the bytes; out: `elements` device values of out_dtype.
void decode(DType storage, const std::uint8_t* in, std::int64_t elements, void* out, DType out_dtype, void* stream);

}  // namespace vidkv::identity_cuda
