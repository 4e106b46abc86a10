// The rotary embedding on the device, for `rope: pre` traces replayed with backend: cuda (cuda_replay.h). Host-only
// declarations, no CUDA headers (cuda_rotary.cu); only in builds with CUDA.
//
// Bit-identical to apply_rotary (core/rotary.h): the cos / sin of every angle come from the host's table
// (rotary_cos_sin: the same rotary_angle, std::cos and std::sin as apply_rotary), and each pair is rotated by
// rotate_pair, the one definition of the arithmetic that apply_rotary runs on the host (each double product and sum
// rounded once, __dmul_rn / __dsub_rn / __dadd_rn on the device, never an FMA; then rounded to fp32).
#pragma once

#include <cstdint>

#include "vidkv/core/rotary.h"

namespace vidkv::rotary_cuda {

// x: [heads, rows, dim] fp32 device memory (dim even), rotated in place as apply_rotary_rows does: row r by the
// table row table_row[r] (table_row: [rows] int32 device memory, each in [0, table rows)), or by table row r when
// table_row is null. cos_sin: the table of rotary_cos_sin ([table rows, dim / 2, 2] doubles) in device memory.
// One thread per (head, row, pair). Enqueued on `stream`.
void rotate_rows(float* x, std::int64_t heads, std::int64_t rows, std::int64_t dim, const double* cos_sin,
                 const std::int32_t* table_row, RotaryPairing pairing, void* stream);

}  // namespace vidkv::rotary_cuda
