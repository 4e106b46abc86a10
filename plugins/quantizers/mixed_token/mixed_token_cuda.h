// mixed_token on CUDA: the data movement behind MixedTokenQuantizer::encode_cuda / decode_cuda (mixed_token.cu).
// Host-only declarations, no CUDA headers.
//
// A block [heads, tokens, channels] split by token: token t of head h goes to row (h, slots[t]) of the dense
// protected block [heads, n, channels] when slots[t] >= 0, else to row (h, -1 - slots[t]) of the rest block
// [heads, tokens - n, channels] (mixed_token_format::token_slots, ascending positions: the CPU's gather). Whole
// rows move unchanged, so the child blocks keep the input's dtype (fp16 stays fp16; the children convert exactly
// on load). Each thread moves one 16-byte unit of a row (where rows are 16-byte multiples and the buffers 16-byte
// aligned; else one element) in every stride-th row, keeping (head, token) by increments (mixed_token_split.h):
// coalesced 16-byte loads and stores on both sides, no division per row.
#pragma once

#include <cstdint>

namespace vidkv::mixed_token_cuda {

struct Split {
  const std::int32_t* slots;  // device: one slot per token
  std::int64_t heads;
  std::int64_t tokens;
  std::int64_t kept;          // n: protected tokens
  std::int64_t row_bytes;     // channels * element bytes
};

// slots: device, one per token, from the device token-mask section (mixed_token_format::token_slots computed on
// the device: one block scans the mask bytes' bit counts), so no table crosses from the host.
void slots_from_mask(const std::uint8_t* mask, std::int64_t tokens, std::int32_t* slots, void* stream);
// in: device [heads, tokens, channels]; kept / rest: device [heads, n, channels] / [heads, tokens - n, channels].
void gather(const Split& s, const void* in, int element_bytes, void* kept, void* rest, void* stream);
// The inverse.
void scatter(const Split& s, const void* kept, const void* rest, int element_bytes, void* out, void* stream);

}  // namespace vidkv::mixed_token_cuda
