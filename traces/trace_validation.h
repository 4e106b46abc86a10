// Full validation of a trace file, layer by layer in constant memory (used by `vidkv trace validate`).
//
// Beyond what TraceReader checks on every read (root attributes, /model, ranks, extents, dtypes, NaN/Inf), it
// checks the token metadata for consistency: visual tokens have frame >= 0 and patch row/col >= 0, other tokens
// -1 in all three; /queries/positions is strictly increasing; either every layer records query states or none.
#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "vidkv/traces/trace_reader.h"

namespace vidkv {

struct TraceValidationReport {
  TraceInfo info;
  std::array<std::int64_t, 4> modality_count{};  // tokens by Modality code (context text, visual, query, generated)
  int frames = 0;                                // distinct frame indices of visual tokens
  int grid_rows = 0;                             // 1 + largest patch row / column of visual tokens
  int grid_cols = 0;
  std::int64_t grid_extra = 0;                   // closing visual tokens outside the grid (traces/patch_grid.h)
  int layers_checked = 0;
  bool layer_queries = false;                    // every layer has /query
  std::int64_t values_checked = 0;               // K/V/query/embedding values read and found finite
  std::uint64_t shapes_hash = 0;                 // FNV-1a of every layer's (heads, tokens, dim, query heads, Q)
  std::string identity;                          // trace_identity(path, shapes_hash) when it was validated

  // "ok: FILE: 8 layers, 2 KV heads (14 query heads), head_dim 64, float16, 1024 tokens (40 context text, ...)..."
  std::string summary() const;
};

// Reads everything in `path` one layer at a time and returns a report, or throws the first problem as a
// vidkv::Error naming the file and dataset (IoError / ShapeError, as TraceReader documents). The reading runs in a
// child process (traces/trace_isolation.h): a crash, a stall or a runaway allocation inside HDF5 is an IoError
// naming the object. `vidkv run` calls this for every trace before any cell starts.
// `parts.queries` false: the recorded query states are not read (neither /layers/NNN/query nor /queries/positions:
// their presence is checked, their extents were checked at open, their values are not), for a run that never uses
// them; the report's shapes_hash and identity are the same as with them.
TraceValidationReport validate_trace(const std::string& path, LayerParts parts = {});

// "size=BYTES,mtime=SECONDS.NANOS,hash=HEX": the file's size, modification time and an FNV-1a hash of its first
// 64 KiB (superblock, root attributes) and of `shapes_hash`. What a results folder's resume fingerprint records.
std::string trace_identity(const std::string& path, std::uint64_t shapes_hash);

}  // namespace vidkv
