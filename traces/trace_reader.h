// Streaming reader of VidKV HDF5 traces (schema v1, traces/SCHEMA.md).
//
// Opening a trace validates the root attributes and /model and reads the token count; the per-token metadata and
// each layer's K/V are read on request, one layer at a time (nothing is cached: memory is bounded by one layer).
// Opening refuses anything but a regular file and first reads the file's structure in a child process (every
// attribute, the per-token datasets, every layer's extents and storage; traces/trace_isolation.h), under the
// process's TraceReadPolicy (traces/trace_read_policy.h: external data, filter plugins, memory budget). Every read
// checks the declared size against the stored bytes and the memory budget before allocating.
// Every read validates rank, extents, dtype and finiteness and throws a vidkv::Error naming the file and dataset:
//   IoError    missing file/dataset/attribute, not HDF5, truncated or corrupt, bad attribute values, NaN/Inf;
//   ShapeError a dataset whose rank, extent or element type disagrees with /model, the token count or `dtype`.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/rotary.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

// Root attributes and /model of a trace, plus counts taken from the datasets.
struct TraceInfo {
  std::string path;
  int schema_version = 0;
  std::string producer;
  std::string created_at;    // ISO 8601
  std::string source;        // "model" or "synthetic"
  std::string model_id;
  std::string model_family;
  DType dtype = DType::f16;  // element type of key/value/query datasets

  int num_layers = 0;
  int num_kv_heads = 0;
  int num_query_heads = 0;
  int head_dim = 0;
  std::int64_t hidden_size = 0;
  std::string rope;          // "post" (keys stored after RoPE) or "pre"
  std::optional<RotaryParams> rotary;  // the rotary parameters when /model states them (rope_theta, ...)

  std::int64_t tokens = 0;   // T, the length of /tokens/modality
  std::int64_t queries = 0;  // Q, the length of /queries/positions (0 when absent)
  bool has_embeddings = false;
  bool has_token_ids = false;
  std::map<std::string, std::string> provenance;  // optional root attrs: model_revision, prompt, notes, ...
};

// One layer of a trace, converted to fp32. key/value are [heads, tokens, dim] row-major.
struct LayerData {
  int layer = 0;
  std::int64_t heads = 0;
  std::int64_t tokens = 0;
  std::int64_t dim = 0;
  std::vector<float> key;
  std::vector<float> value;
  std::optional<LayerQueries> queries;  // [query_heads, Q, dim] with token_index = /queries/positions
};

// Which parts of a layer read_layer() reads: K and V always; the recorded query states (/layers/NNN/query and
// /queries/positions) only when `queries` is true. Without them LayerData::queries is empty and no byte of those
// datasets is read, so their values (damaged or not) cannot stop a run that never looks at them (a run whose
// metrics and codec do not use the queries: experiment_runner.cpp).
struct LayerParts {
  bool queries = true;
};

// The file is opened with HDF5's evict-on-close access property (metadata of each layer is dropped once read).
// HDF5 refuses to open one file twice in a process with different evict-on-close settings, so code that opens a
// trace with the HDF5 API directly must do so while no TraceReader holds it (other processes are unaffected).
class TraceReader {
 public:
  // Opens `path` read-only and validates the root attributes, /model and the token count.
  explicit TraceReader(const std::string& path);
  ~TraceReader();
  TraceReader(TraceReader&&) noexcept;
  TraceReader& operator=(TraceReader&&) noexcept;
  TraceReader(const TraceReader&) = delete;
  TraceReader& operator=(const TraceReader&) = delete;

  const TraceInfo& info() const;

  // Per-token metadata (T entries each). Embeddings [T, hidden] are converted to fp32 and filled when present and
  // `with_embeddings` is true (they are large: T x hidden).
  TraceTokens tokens(bool with_embeddings = true) const;
  // Checks /embeddings (rank, extents, dtype, finiteness) block by block without keeping it; no-op when absent.
  void check_embeddings() const;
  // /tokens/ids, or empty when absent.
  std::vector<std::int32_t> token_ids() const;
  // /queries/positions (token indices 0..T-1 whose query states are recorded), or empty when absent.
  std::vector<std::int32_t> query_positions() const;

  // Reads /layers/NNN/key, /value and (when present and parts.queries) /query of one layer, 0 <= layer < num_layers.
  LayerData read_layer(int layer, LayerParts parts = {}) const;
  // The same into `out`, reusing its buffers: a loop over layers with one LayerData allocates the layer once,
  // so resident memory stays at one layer regardless of how the allocator treats large blocks.
  void read_layer(int layer, LayerData& out, LayerParts parts = {}) const;
  // Whether /layers/NNN/query exists (its extents were checked when the file was opened; no value is read).
  bool has_layer_queries(int layer) const;

 private:
  struct Impl;
  explicit TraceReader(std::unique_ptr<Impl> impl);  // an opened file, without the isolated structure check
  std::unique_ptr<Impl> impl_;
};

}  // namespace vidkv
