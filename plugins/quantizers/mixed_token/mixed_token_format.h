// Packed format of mixed_token's protected-token mask section, shared by host and (future) CUDA code.
//
// Format version 1. One mask for the whole block (every KV head shares the protected set): a dense little-endian
// bitstream (core/bit_packing.h) of `tokens` bits, bit t = 1 when local token t is protected; ceil(tokens / 8)
// bytes, zero-padded at the end.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/bit_packing.h"
#include "vidkv/core/host_device.h"

namespace vidkv::mixed_token_format {

constexpr int kVersion = 1;

VIDKV_HOST_DEVICE constexpr std::size_t mask_bytes(std::size_t tokens) { return bits::dense_bytes(tokens, 1); }

VIDKV_HOST_DEVICE inline void mask_set(std::uint8_t* section, std::size_t t) { bits::dense_put(section, t, 1, 1u); }

VIDKV_HOST_DEVICE inline bool mask_get(const std::uint8_t* section, std::size_t t) { return bits::dense_get(section, t, 1) != 0; }

// 196 visual tokens of one frame: 25 bytes; a 32-token group: 4 bytes; 1 token: 1 byte; none: 0.
static_assert(mask_bytes(196) == 25);
static_assert(mask_bytes(32) == 4);
static_assert(mask_bytes(1) == 1);
static_assert(mask_bytes(0) == 0);

}  // namespace vidkv::mixed_token_format
