// Packed format of mixed_token's protected-token mask section, shared by host and CUDA code (mixed_token.cu).
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

// Where each token of a block goes in the dense child blocks (tokens in ascending position, as the CPU gathers
// them): slots[t] = index of t among the protected tokens (>= 0) when bit t of `section` is set, else -1 - its
// index among the other tokens. Returns the number of protected tokens. One pass over the mask, on the host.
inline std::int64_t token_slots(const std::uint8_t* section, std::size_t tokens, std::int32_t* slots) {
  std::int32_t kept = 0, rest = 0;
  for (std::size_t t = 0; t < tokens; ++t) slots[t] = mask_get(section, t) ? kept++ : -1 - rest++;
  return kept;
}

// 196 visual tokens of one frame: 25 bytes; a 32-token group: 4 bytes; 1 token: 1 byte; none: 0.
static_assert(mask_bytes(196) == 25);
static_assert(mask_bytes(32) == 4);
static_assert(mask_bytes(1) == 1);
static_assert(mask_bytes(0) == 0);

}  // namespace vidkv::mixed_token_format
