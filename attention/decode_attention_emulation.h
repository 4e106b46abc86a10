// The CUDA decode-attention kernels' computation on the host (decode_attention.cu), for the [cpu] tests of their
// logic on machines without a GPU: the same tables, the same per-element reads (decode_attention_tables.h), the
// same order of work: the fast tiles' splits, then the other tiles' (decode_attention_tables.h), per (sequence,
// KV head, split) 4 "warps" taking every 4th tile of the split, per tile the
// query transform when the key block changes, fp32 scores, the online-softmax update (tile max, exp2, rescale),
// the value sums in token order; then the warp merge and the split combine. The order of the additions differs
// where the kernels sum across lanes (warp reductions; a key-residual tile's four partial scores per token; the
// query transform, which the kernels take from a per-block kernel summing over lanes): equal within the tolerance of
// decode_attention_tolerance.h, not bit for bit.
#pragma once

#include "vidkv/attention/decode_attention_tables.h"

namespace vidkv::attention_emulation {

// p: host pointers everywhere (tables, queries, out, partial_* workspace).
void run(const attention_tables::Problem& p);

}  // namespace vidkv::attention_emulation
