// `backend: cuda` for trace replay (experiments/README.md): validation of the backend, and the replay of a cell's
// layers on the GPU that experiment_runner.cpp calls instead of replay_layer + layer_metrics_all.
//
// Pipeline per cell (one CudaLayerReplay, layers taken in order): a host thread reads layer l + 1 from HDF5, copies
// it into a page-locked buffer and uploads it on a copy stream (two buffers, alternating) while layer l runs on the
// compute stream, which waits for the upload's event. The layer is replayed through the run's lifecycle with a
// LayerCache on the device (core/cache_lifecycle.h: packed blocks, residual and reconstruction in device memory).
// Metrics, all on the device: the reconstruction errors (key_/value_ rel_error, mse, snr_db, cosine; cuda_metrics.h)
// and, when the trace has query states and the plan asks for an attention metric, the attention metrics (attn_*;
// cuda_attention.h), in double with deterministic reductions, equal to the CPU's within 1e-9 relative; only the
// per-item sums come back to the host. provenance.json says this ("metrics_device").
// A `rope: pre` trace (keys and queries stored before the rotary embedding) whose metrics need positions gets the
// CPU's treatment (experiment_runner.cpp): after the replay, the exact and reconstructed keys and the queries are
// rotated on the device (cuda_rotary.h, bit-identical to apply_rotary, from a cos / sin table computed once per
// cell on the host and uploaded), and every metric of the layer, reconstruction errors included, is computed on
// the rotated tensors.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/kv_codec.h"
#include "vidkv/core/rotary.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/metrics.h"
#include "vidkv/traces/trace_reader.h"

namespace vidkv {

// Why `backend: cuda` cannot run at all here (a build without CUDA, no visible GPU), or "" when it can.
std::string cuda_backend_unavailable();
// Why `q` cannot run on cuda on blocks of `shape` (Quantizer::supports), or "".
std::string cuda_quantizer_unsupported(const Quantizer& q, const BlockShape& shape);

// Where each metric is computed under backend: cuda, as recorded in provenance.json.
extern const char* const kCudaMetricsDevice;

class CudaLayerReplay {
 public:
  // `read(layer)` reads one layer (the caller's HDF5 locking inside; called from a helper thread). `attention`:
  // whether attention metrics are wanted. `data_dtype`: the trace's dtype (what lifecycle residual_dtype data
  // stores, as on the cpu). `rotary`, `positions` ([tokens], host memory, read in the constructor only): for a
  // rope: pre trace, its RoPE and /tokens/position; keys and queries of every layer with recorded queries are then
  // rotated before the metrics (null: used as stored). Starts reading layer 0. Throws NotSupportedError in a build
  // without CUDA, ShapeError for an odd head_dim with `rotary`.
  CudaLayerReplay(const KvCodec& codec, const LifecycleParams& lifecycle, const BlockShape& shape, int layers,
                  std::function<LayerData(int)> read, bool attention, DType data_dtype,
                  const RotaryParams* rotary = nullptr, const std::int32_t* positions = nullptr);
  ~CudaLayerReplay();  // waits for a read in flight
  CudaLayerReplay(const CudaLayerReplay&) = delete;
  CudaLayerReplay& operator=(const CudaLayerReplay&) = delete;

  // Layer `layer` (0, 1, ... in order): waits for its read and starts reading the next one.
  LayerData take(int layer);
  // Replays the layer last taken on the GPU: the metrics of KV heads 0..H-1, then of the layer (as
  // layer_metrics_all), and the stored layouts in `out` (out.key / out.value stay empty: the reconstruction lives
  // on the device). Waits for the GPU before returning. With `rotary`, ShapeError when a query's token index is
  // outside [0, tokens).
  std::vector<MetricValues> replay(const LayerData& data, const TokenContext& ctx, ReplayedLayer& out);

 private:
  struct Impl;
  // The attn_* metrics of the layer in input slot `slot` into all[0..heads] (cuda_attention.h).
  void add_attention_metrics(const LayerQueries& q, int slot, std::vector<MetricValues>& all);
  std::unique_ptr<Impl> impl_;
};

// The runner's hook: null for backend: cpu; for backend: cuda a CudaLayerReplay of `run` over the trace `info`
// (attention metrics when the plan asks for one), after checking that the codec runs on cuda at the trace's KV
// shape (NotSupportedError naming the plugin otherwise). `rotary_positions`: the trace's /tokens/position when its
// keys and queries are rotated by info.rotary before the metrics (a rope: pre trace, as backend: cpu does), else null.
std::unique_ptr<CudaLayerReplay> make_cuda_layer_replay(const ExperimentPlan& plan, const RunPlan& run, const KvCodec& codec,
                                                        const TraceInfo& info, std::function<LayerData(int)> read,
                                                        const std::int32_t* rotary_positions = nullptr);

}  // namespace vidkv
