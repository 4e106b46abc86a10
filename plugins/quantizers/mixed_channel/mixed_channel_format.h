// Packed format of mixed_channel's channel-mask section, shared by host and CUDA code (mixed_channel.cu).
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

// Set bits of one byte.
VIDKV_HOST_DEVICE constexpr unsigned popcount8(unsigned v) {
  v = v - ((v >> 1) & 0x55u);
  v = (v & 0x33u) + ((v >> 2) & 0x33u);
  return (v + (v >> 4)) & 0x0fu;
}

// Number of high channels of mask m among channels [0, c): the index of channel c among the high channels when
// it is one. Bytewise over the mask's bits (masks need not start on a byte: bit m * channels).
VIDKV_HOST_DEVICE inline std::size_t mask_rank(const std::uint8_t* section, std::size_t channels, std::size_t m,
                                               std::size_t c) {
  std::size_t bit = m * channels, n = 0;
  const std::size_t end = bit + c;
  for (; bit < end && (bit & 7u) != 0; ++bit) n += (section[bit >> 3] >> (bit & 7u)) & 1u;
  for (; bit + 8 <= end; bit += 8) n += popcount8(section[bit >> 3]);
  for (; bit < end; ++bit) n += (section[bit >> 3] >> (bit & 7u)) & 1u;
  return n;
}

// Where channel c of mask m goes in the dense child blocks (channels in ascending index, as the CPU gathers them):
// a high channel -> its index among the high channels (>= 0); a low channel -> -1 - its index among the low ones.
VIDKV_HOST_DEVICE inline std::int32_t channel_slot(const std::uint8_t* section, std::size_t channels, std::size_t m,
                                                   std::size_t c) {
  const std::size_t rank = mask_rank(section, channels, m, c);
  return mask_get(section, channels, m, c) ? static_cast<std::int32_t>(rank)
                                           : -1 - static_cast<std::int32_t>(c - rank);
}

static_assert(popcount8(0xffu) == 8 && popcount8(0xa5u) == 4 && popcount8(0u) == 0);

// D = 128 with one layer-wide mask: 16 bytes (0.125 bytes per channel); 4 head masks: 64 bytes; 3 x 64: 24 bytes.
static_assert(mask_bytes(1, 128) == 16);
static_assert(mask_bytes(4, 128) == 64);
static_assert(mask_bytes(3, 64) == 24);
static_assert(mask_bytes(1, 9) == 2);

}  // namespace vidkv::mixed_channel_format
