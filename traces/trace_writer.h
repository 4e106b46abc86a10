// Writer of VidKV HDF5 traces (schema v1, traces/SCHEMA.md), and appending decode steps to a finished trace.
//
// A TraceWriter writes into "PATH.partial" and renames it to PATH in finish(); a writer destroyed without finish()
// (an exception, an early return) removes the partial file, so no half-written trace is ever left at PATH.
// Order of calls: constructor, write_tokens, [write_query_positions], write_layer for every layer, finish.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/rotary.h"
#include "vidkv/core/tensor_view.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

// Root attributes and /model of a trace to write.
struct TraceMetadata {
  std::string producer = "vidkv";
  std::string created_at;  // ISO 8601; empty: the current UTC time
  std::string source = "model";  // "model" or "synthetic"
  std::string model_id;
  std::string model_family;
  DType dtype = DType::f16;  // element type of key/value/query datasets (bf16 is stored as uint16 raw bits)
  int num_layers = 0;
  int num_kv_heads = 0;
  int num_query_heads = 0;
  int head_dim = 0;
  std::int64_t hidden_size = 0;
  std::string rope = "post";
  std::optional<RotaryParams> rotary;  // written as /model rope_theta, rope_scaling, rope_scaling_factor, rope_pairing
  std::map<std::string, std::string> provenance;  // optional root string attrs (model_revision, prompt, notes, ...)
};

struct TraceWriterOptions {
  std::int64_t chunk_tokens = 256;  // K/V chunk [1, chunk_tokens, head_dim]: one HDF5 read unit along tokens
  int deflate_level = 0;            // 0: raw chunks (fastest reads); 1..9: shuffle + deflate
};

class TraceWriter {
 public:
  // Creates PATH.partial and writes the root attributes and /model. ConfigError for inconsistent metadata,
  // IoError when the file cannot be created.
  TraceWriter(const std::string& path, const TraceMetadata& metadata, const TraceWriterOptions& options = {});
  ~TraceWriter();  // removes PATH.partial unless finish() succeeded
  TraceWriter(const TraceWriter&) = delete;
  TraceWriter& operator=(const TraceWriter&) = delete;

  // Writes /tokens/* (T = tokens.size() entries each) and, when tokens.hidden > 0, /embeddings [T, hidden]
  // (fp32 for float32 traces, fp16 otherwise). `ids` is /tokens/ids: empty (not written) or T entries.
  void write_tokens(const TraceTokens& tokens, const std::vector<std::int32_t>& ids = {});
  // Writes /queries/positions: Q token indices (0..T-1) whose query states each layer records.
  void write_query_positions(const std::vector<std::int32_t>& positions);
  // Writes /layers/NNN/key and /value, each [kv_heads, T, head_dim], and /query [query_heads, Q, head_dim] when
  // `query` is given. Views may be fp32, fp16 or bf16 on the CPU; they are converted to the trace dtype
  // (round to nearest even) unless they already have it, in which case the bits are stored unchanged.
  void write_layer(int layer, const TensorView& key, const TensorView& value, const TensorView* query = nullptr);
  // The same from fp32 vectors of [kv_heads, T, head_dim] (and [query_heads, Q, head_dim]).
  void write_layer(int layer, const std::vector<float>& key, const std::vector<float>& value,
                   const std::vector<float>* query = nullptr);
  // Checks that tokens and every layer were written, closes the file and renames PATH.partial to PATH.
  void finish();

  const std::string& path() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// New tokens produced by decoding, to append to every per-token dataset and every layer.
struct DecodeSteps {
  TraceTokens tokens;                      // n tokens; embeddings required iff the trace has /embeddings
  std::vector<std::int32_t> ids;           // n entries, required iff the trace has /tokens/ids
  std::vector<std::vector<float>> key;     // per layer, [kv_heads, n, head_dim] fp32
  std::vector<std::vector<float>> value;   // per layer, [kv_heads, n, head_dim] fp32
};

// Appends `steps` to the finished trace at `path` (the token axis of every per-token dataset and of each layer's
// key/value grows by n). Everything is checked first; the work happens on a copy PATH.partial that replaces PATH
// only when complete, so an error leaves PATH as it was. /queries is left unchanged.
void append_decode_steps(const std::string& path, const DecodeSteps& steps);

}  // namespace vidkv
