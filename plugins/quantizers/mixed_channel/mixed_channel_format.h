// Packed format of mixed_channel's channel-mask section, shared by host and (future) CUDA code.
//
// Format version 1. `masks` masks (1 for scope: layer, one per KV head for scope: head) of `channels` bits each
// form one dense little-endian bitstream (core/bit_packing.h): bit m * channels + c is 1 when channel c is a
// "high" channel of mask m. The section is ceil(masks * channels / 8) bytes, zero-padded at the end.
#pragma once

#include <cstddef>
#include <cstdint>

#include "vidkv/core/bit_packing.h"
#include "vidkv/core/host_device.h"

namespace vidkv::mixed_channel_format {

constexpr int kVersion = 1;

// Bytes of the channel-mask section.
VIDKV_HOST_DEVICE constexpr std::size_t mask_bytes(std::size_t masks, std::size_t channels) {
  return bits::dense_bytes(masks * channels, 1);
}

// Sets channel c of mask m (the section must start zeroed).
VIDKV_HOST_DEVICE inline void mask_set(std::uint8_t* section, std::size_t channels, std::size_t m, std::size_t c) {
  bits::dense_put(section, m * channels + c, 1, 1u);
}

// Whether channel c of mask m is a high channel.
VIDKV_HOST_DEVICE inline bool mask_get(const std::uint8_t* section, std::size_t channels, std::size_t m, std::size_t c) {
  return bits::dense_get(section, m * channels + c, 1) != 0;
}

// D = 128 with one layer-wide mask: 16 bytes (0.125 bytes per channel); 4 head masks: 64 bytes; 3 x 64: 24 bytes.
static_assert(mask_bytes(1, 128) == 16);
static_assert(mask_bytes(4, 128) == 64);
static_assert(mask_bytes(3, 64) == 24);
static_assert(mask_bytes(1, 9) == 2);

}  // namespace vidkv::mixed_channel_format
