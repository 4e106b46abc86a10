// mixed_token's token split as index arithmetic, shared by the CUDA kernels (mixed_token.cu) and the [cpu] tests.
// C++17, no CUDA headers.
//
// A block's rows are (head h, token t) pairs, row = h * tokens + t. Row (h, t) goes to row h * n + slots[t] of the
// protected block when slots[t] >= 0, else to row h * (tokens - n) + (-1 - slots[t]) of the rest block
// (mixed_token_format::token_slots). A thread visits rows first, first + stride, first + 2 * stride, ...: RowWalk
// keeps (h, t) by increments (one division when it starts), so the kernels divide once per thread, not per row.
#pragma once

#include <cstdint>

#include "vidkv/core/host_device.h"

namespace vidkv::mixed_token_split {

struct RowWalk {
  std::int64_t tokens, h, t, dh, dt;
  VIDKV_HOST_DEVICE RowWalk(std::int64_t tokens_, std::int64_t first, std::int64_t stride)
      : tokens(tokens_), h(first / tokens_), t(first % tokens_), dh(stride / tokens_), dt(stride % tokens_) {}
  VIDKV_HOST_DEVICE void next() {
    h += dh;
    t += dt;
    if (t >= tokens) {
      t -= tokens;
      ++h;
    }
  }
  // The destination row of (h, t) in its child block, and which block: kept (slot >= 0) or rest.
  VIDKV_HOST_DEVICE std::int64_t child_row(const std::int32_t* slots, std::int64_t kept, bool* is_kept) const {
    const std::int32_t slot = slots[t];
    *is_kept = slot >= 0;
    return slot >= 0 ? h * kept + slot : h * (tokens - kept) + (-1 - slot);
  }
};

}  // namespace vidkv::mixed_token_split
