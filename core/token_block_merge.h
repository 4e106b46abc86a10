// Merging consecutive packed blocks of a token-separable quantizer (Quantizer::token_separable) into one block, byte
// for byte: the kivi lifecycle's value FIFO quantizes one token per decode step, and each such token is merged into
// the block before it while that block holds fewer than 32 tokens (cache_lifecycle.h), so that a long generation
// does not leave one block per token (one decode launch each when the cache is materialised, one single-token tile
// each in decode attention). Shared by the host (below) and the device copy (core/cuda/row_copy.h
// merge_token_blocks). No CUDA headers.
//
// Source block b (of `blocks`) holds tokens[b] tokens: in section s, [heads][tokens[b]][width[s]] bytes at
// src_offset[b][s]. The merged block holds T = sum of tokens[] tokens: in section s [heads][T][width[s]] at
// dst_offset[s], its token rows first[b] .. first[b] + tokens[b] - 1 (first[b] = tokens[0] + ... + tokens[b - 1])
// coming from block b:
//   dst[dst_offset[s] + ((h T + first[b] + t) width[s] + j] = src[b][src_offset[b][s] + (h tokens[b] + t) width[s] + j].
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "vidkv/core/host_device.h"

namespace vidkv {

struct TokenBlockMerge {
  static constexpr int kMaxBlocks = 4;
  static constexpr int kMaxSections = 8;
  const std::uint8_t* src[kMaxBlocks] = {};
  std::int64_t tokens[kMaxBlocks] = {};
  std::size_t src_offset[kMaxBlocks][kMaxSections] = {};
  int blocks = 0;
  std::size_t dst_offset[kMaxSections] = {}, width[kMaxSections] = {};
  int sections = 0;
  std::int64_t heads = 0;

  VIDKV_HOST_DEVICE std::int64_t total_tokens() const {
    std::int64_t n = 0;
    for (int b = 0; b < blocks; ++b) n += tokens[b];
    return n;
  }
  // Bytes the merge writes (every byte of the merged block when the sections cover it).
  std::size_t bytes() const {
    std::size_t n = 0;
    for (int s = 0; s < sections; ++s) n += static_cast<std::size_t>(total_tokens() * heads) * width[s];
    return n;
  }
};

// The merge on host memory.
inline void merge_token_blocks_host(const TokenBlockMerge& m, std::uint8_t* dst) {
  const std::int64_t total = m.total_tokens();
  for (int s = 0; s < m.sections; ++s) {
    const std::size_t w = m.width[s];
    for (std::int64_t h = 0; h < m.heads; ++h) {
      std::int64_t first = 0;
      for (int b = 0; b < m.blocks; ++b) {
        std::memcpy(dst + m.dst_offset[s] + static_cast<std::size_t>(h * total + first) * w,
                    m.src[b] + m.src_offset[b][s] + static_cast<std::size_t>(h * m.tokens[b]) * w,
                    static_cast<std::size_t>(m.tokens[b]) * w);
        first += m.tokens[b];
      }
    }
  }
}

}  // namespace vidkv
