// mixed_channel on CUDA: the data movement behind MixedChannelQuantizer::encode_cuda / decode_cuda
// (mixed_channel.cu). Host-only declarations, no CUDA headers.
//
// The split of a block [heads, tokens, channels] by the channel-mask section (mixed_channel_format.h) that already
// lies in device memory: channel c of a row of mask m goes to slot channel_slot(mask, D, m, c) of the dense high
// block [heads, tokens, k] or low block [heads, tokens, D - k] (ascending channel index, the CPU's gather). Rows are
// (head, token) in order, so the child blocks of scope head (one [1, tokens, k] block per head, back to back) and of
// scope layer ([heads, tokens, k]) are the same arrays. Pure data movement on elements of `element_bytes` (2 or 4)
// bytes: the child blocks keep the input's dtype (fp16 stays fp16, which halves the scratch traffic; the children
// convert exactly on load), so the bytes the children see are the CPU's values.
//
// (The split uniform high / sign FFT low runs fused instead, where mixed_channel_fused.h applies.)
// Kernels: a table kernel fills each mask's slot and source tables (mixed_channel_split.h; one thread per (mask,
// channel), mask_rank over the mask bytes). Where rows are 16-byte multiples (D = 128 in any dtype), gather and
// scatter work on tiles of rows staged in shared memory: coalesced 16-byte loads of the side read whole, coalesced
// 16-byte stores of the other side, each element found through the tables; every byte of the block and of the
// child blocks crosses device memory once. Otherwise one thread takes a run of a row (16 bytes, or one element).
// A mask whose number of set channels is not k (corrupt or foreign bytes; on encode, channel scores with NaN) makes
// scatter write NaN for every element of its rows: the CUDA decode does not synchronise to check (the CPU decode
// throws IoError); gather moves such rows as the split "first k channels high" (mixed_channel_split::fill_tables),
// so that it reads and writes only inside its rows.
#pragma once

#include <cstdint>

namespace vidkv::mixed_channel_cuda {

struct Split {
  const std::uint8_t* mask;     // device: the channel-mask section
  std::int64_t masks = 1;       // 1 (scope layer) or heads (scope head)
  std::int64_t rows_per_mask;   // heads * tokens (scope layer) or tokens (scope head)
  std::int64_t channels;        // D
  std::int64_t high;            // k: channels set in every mask
};

// The channel-mask section from the selector's device scores (masks rows of `channels` doubles): bit m * D + c set
// when in_top_k(scores of mask m, D, c, k) (mixed_channel_split.h), the host's top_k_indices rule. Where D % 8 == 0
// and D <= 4096, one block per mask stages its scores in shared memory and packs its own bytes; otherwise one thread
// per mask byte (a byte may then hold bits of two masks): no two threads write one byte either way. Lets the encode
// run without a synchronisation. With k == 0 or k == D every bit is known without scores, and `scores` may be null.
void mask_from_scores(const double* scores, std::int64_t masks, std::int64_t channels, std::int64_t k,
                      std::uint8_t* section, void* stream);
// in: device [masks * rows_per_mask, channels] elements; hi / lo: device [rows, k] / [rows, D - k] elements.
void gather(const Split& s, const void* in, int element_bytes, void* hi, void* lo, void* stream);
// The inverse; `nan_bits` is the element written for rows of an invalid mask (a quiet NaN of the dtype).
void scatter(const Split& s, const void* hi, const void* lo, int element_bytes, std::uint32_t nan_bits, void* out,
             void* stream);

}  // namespace vidkv::mixed_channel_cuda
