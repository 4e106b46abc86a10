// Merging consecutive one-token packed blocks of a token-separable quantizer (Quantizer::token_separable) into one
// block, byte for byte: the kivi lifecycle's value FIFO quantizes one token per decode step, and without merging a
// long generation leaves one block per generated token (one decode launch each when the cache is materialised, one
// single-token tile each in decode attention). Shared by the host (below) and the device copy
// (core/cuda/row_copy.h merge_token_blocks). No CUDA headers.
//
// Source block b (of `blocks`, token b of the merged block) holds, in section s, heads x width[s] bytes at
// src_offset[s] ([heads][1 token][width]); the merged block holds in section s [heads][blocks tokens][width] at
// dst_offset[s]:  dst[dst_offset[s] + (h * blocks + b) * width[s] + j] = src[b][src_offset[s] + h * width[s] + j].
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace vidkv {

struct TokenBlockMerge {
  static constexpr int kMaxBlocks = 32;    // one decode-attention tile of tokens
  static constexpr int kMaxSections = 8;
  const std::uint8_t* src[kMaxBlocks] = {};
  int blocks = 0;
  std::size_t src_offset[kMaxSections] = {}, dst_offset[kMaxSections] = {}, width[kMaxSections] = {};
  int sections = 0;
  std::int64_t heads = 0;
  // Bytes the merge writes (every byte of the merged block when the sections cover it).
  std::size_t bytes() const {
    std::size_t n = 0;
    for (int s = 0; s < sections; ++s) n += static_cast<std::size_t>(blocks) * static_cast<std::size_t>(heads) * width[s];
    return n;
  }
};

// The merge on host memory.
inline void merge_token_blocks_host(const TokenBlockMerge& m, std::uint8_t* dst) {
  for (int s = 0; s < m.sections; ++s)
    for (std::int64_t h = 0; h < m.heads; ++h)
      for (int b = 0; b < m.blocks; ++b)
        std::memcpy(dst + m.dst_offset[s] + (static_cast<std::size_t>(h) * static_cast<std::size_t>(m.blocks) + static_cast<std::size_t>(b)) * m.width[s],
                    m.src[b] + m.src_offset[s] + static_cast<std::size_t>(h) * m.width[s], m.width[s]);
}

}  // namespace vidkv
