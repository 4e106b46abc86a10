// Keeps freed layer-sized host buffers in the process heap for reuse, instead of returning each to the kernel.
//
// Replaying one layer (replay_layer, the lifecycle's slices, the decoded K/V, the metrics' scratch) allocates and
// frees a few dozen blocks of a layer's size (16 MiB each at 4 x 8192 x 128 fp32). glibc serves blocks above its
// mmap threshold (128 KiB, growing to at most 32 MiB) with fresh mappings, so every layer paid the kernel's page
// faults and zeroing again: 55 of the 86 ms that replay_layer took per layer of that shape on one thread
// (docs/performance.md). With the threshold at its maximum (32 MiB) and trimming above 1 GiB only, the second
// layer reuses the first layer's pages. Peak memory is unchanged (the same blocks are live at the peak); the
// process keeps up to one layer's worth of freed blocks between layers. Process-wide and idempotent; a no-op
// outside glibc.
#pragma once

namespace vidkv {

void keep_freed_layer_buffers();

}  // namespace vidkv
