// backend: cuda for trace replay; the contract and the pipeline are in cuda_replay.h.
#include "vidkv/experiments/src/cuda_replay.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <future>
#include <optional>
#include <utility>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/metric_kernels.h"

#ifdef VIDKV_WITH_CUDA
#include <cuda_runtime.h>

#include "vidkv/experiments/src/cuda_attention.h"
#include "vidkv/experiments/src/cuda_metrics.h"
#include "vidkv/experiments/src/cuda_rotary.h"
#endif

namespace vidkv {

const char* const kCudaMetricsDevice =
    "reconstruction errors (key_*, value_*) and attention metrics (attn_*) on cuda, in double (cuda_metrics.h, "
    "cuda_attention.h: deterministic reductions, equal to backend cpu within 1e-9 relative); for rope: pre traces, "
    "keys and queries rotated on cuda first (cuda_rotary.h, bit-identical to the cpu's apply_rotary); bits from the "
    "stored layouts on the host; decode-step metrics (decode_*) on the host, by a replay through the codec's cpu "
    "tiers (decode_step_metrics.h, the same values as backend cpu)";

std::string cuda_backend_unavailable() {
#ifndef VIDKV_WITH_CUDA
  return "this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON where nvcc is installed)";
#else
  std::string why;
  if (cuda_device_count(&why) > 0) return "";
  return "no CUDA device is visible (" + why + ")";
#endif
}

std::string cuda_quantizer_unsupported(const Quantizer& q, const BlockShape& shape) {
  std::string why;
  if (q.supports(Device::cuda, shape, &why)) return "";
  return why.empty() ? q.plugin_name() + " cannot run on cuda for " + shape.str() : why;
}

std::unique_ptr<CudaLayerReplay> make_cuda_layer_replay(const ExperimentPlan& plan, const RunPlan& run, const KvCodec& codec,
                                                        const TraceInfo& info, std::function<LayerData(int)> read,
                                                        const std::int32_t* rotary_positions) {
  if (plan.backend != Device::cuda) return nullptr;
  const BlockShape shape{info.num_kv_heads, info.tokens, info.head_dim};
  for (const Quantizer* q : {&codec.key(), &codec.value()}) {
    const std::string why = cuda_quantizer_unsupported(*q, shape);
    VIDKV_REQUIRE(why.empty(), NotSupportedError, "backend cuda: ", why);
  }
  const bool attention = std::any_of(plan.metrics.begin(), plan.metrics.end(),
                                     [](const std::string& m) { return m.rfind("attn_", 0) == 0; });
  VIDKV_ASSERT(!rotary_positions || info.rotary, "rotary positions without rotary parameters");
  return std::make_unique<CudaLayerReplay>(codec, run.lifecycle, shape, info.num_layers, std::move(read), attention, info.dtype,
                                           rotary_positions ? &*info.rotary : nullptr, rotary_positions);
}

#ifndef VIDKV_WITH_CUDA

struct CudaLayerReplay::Impl {};
CudaLayerReplay::CudaLayerReplay(const KvCodec&, const LifecycleParams&, const BlockShape&, int, std::function<LayerData(int)>,
                                 bool, DType, const RotaryParams*, const std::int32_t*) {
  VIDKV_THROW(NotSupportedError, "backend cuda: ", cuda_backend_unavailable());
}
CudaLayerReplay::~CudaLayerReplay() = default;
LayerData CudaLayerReplay::take(int) { VIDKV_THROW(NotSupportedError, "backend cuda: ", cuda_backend_unavailable()); }
std::vector<MetricValues> CudaLayerReplay::replay(const LayerData&, const TokenContext&, ReplayedLayer&) {
  VIDKV_THROW(NotSupportedError, "backend cuda: ", cuda_backend_unavailable());
}

#else

namespace {

struct Stream {
  cudaStream_t s = nullptr;
  Stream() { cuda_check(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "replay: cudaStreamCreate"); }
  ~Stream() {
    if (s) cudaStreamDestroy(s);
  }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
};

struct Event {
  cudaEvent_t e = nullptr;
  Event() { cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "replay: cudaEventCreate"); }
  ~Event() {
    if (e) cudaEventDestroy(e);
  }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

}  // namespace

struct CudaLayerReplay::Impl {
  const KvCodec& codec;
  LifecycleParams lifecycle;
  BlockShape shape;
  int layers;
  std::function<LayerData(int)> read;
  bool attention;
  DType data_dtype;   // the trace's
  std::size_t bytes;  // one side (K or V) of a layer in fp32
  Stream compute, copy;
  // Double-buffered uploads: slot l % 2 holds layer l.
  std::unique_ptr<PinnedBuffer> pinned[2][2];  // [slot][key, value]
  DeviceBuffer input[2][2];
  Event uploaded[2];
  DeviceBuffer key_hat, value_hat, sums;
  // rope: pre: the RoPE and its cos / sin table of every token ([tokens, channels / 2, 2] doubles, rotary_cos_sin).
  std::optional<RotaryParams> rotary;
  DeviceBuffer cos_sin;
  std::future<LayerData> next;
  int next_layer = 0;
  int current = -1;

  Impl(const KvCodec& c, const LifecycleParams& lc, const BlockShape& s, int n, std::function<LayerData(int)> r, bool attn,
       DType dt, const RotaryParams* rot, const std::int32_t* positions)
      : codec(c), lifecycle(lc), shape(s), layers(n), read(std::move(r)), attention(attn), data_dtype(dt),
        bytes(static_cast<std::size_t>(s.elements()) * sizeof(float)) {
    if (rot) {
      rotary = *rot;
      const std::vector<double> table = rotary_cos_sin(positions, shape.tokens, shape.channels, *rot);
      cos_sin = DeviceBuffer(table.size() * sizeof(double), compute.s);
      copy_to_device(cos_sin.data(), table.data(), cos_sin.bytes(), compute.s);
      synchronize(compute.s);  // `table` is freed on return
    }
    for (int slot = 0; slot < 2; ++slot)
      for (int side = 0; side < 2; ++side) {
        pinned[slot][side] = std::make_unique<PinnedBuffer>(bytes);
        input[slot][side] = DeviceBuffer(bytes, compute.s);
      }
    key_hat = DeviceBuffer(bytes, compute.s);
    value_hat = DeviceBuffer(bytes, compute.s);
    sums = DeviceBuffer(static_cast<std::size_t>(8 * shape.heads) * sizeof(double), compute.s);
    synchronize(compute.s);  // the buffers are used on the copy stream too
    prefetch(0);
  }

  ~Impl() {
    if (next.valid()) {
      try {
        next.get();
      } catch (...) {  // the error of a read nobody takes any more
      }
    }
    cudaStreamSynchronize(copy.s);
    cudaStreamSynchronize(compute.s);
  }

  // Reads layer l on a helper thread, stages it in the pinned buffers of its slot and uploads it on the copy
  // stream. The slot's previous layer (l - 2) is finished: replay() waits for the GPU before returning.
  void prefetch(int l) {
    next_layer = l;
    if (l >= layers) return;
    next = std::async(std::launch::async, [this, l] {
      use_process_cuda_device();  // this helper thread uploads to the device of the process (an MPI rank's)
      LayerData d = read(l);
      VIDKV_REQUIRE(static_cast<std::int64_t>(d.key.size()) == shape.elements() &&
                        static_cast<std::int64_t>(d.value.size()) == shape.elements(),
                    ShapeError, "layer ", l, ": key/value hold ", d.key.size(), "/", d.value.size(), " values, expected ",
                    shape.str());
      const int slot = l % 2;
      std::memcpy(pinned[slot][0]->data(), d.key.data(), bytes);
      std::memcpy(pinned[slot][1]->data(), d.value.data(), bytes);
      copy_to_device(input[slot][0].data(), pinned[slot][0]->data(), bytes, copy.s);
      copy_to_device(input[slot][1].data(), pinned[slot][1]->data(), bytes, copy.s);
      cuda_check(cudaEventRecord(uploaded[slot].e, copy.s), "replay: cudaEventRecord");
      return d;
    });
  }
};

CudaLayerReplay::CudaLayerReplay(const KvCodec& codec, const LifecycleParams& lifecycle, const BlockShape& shape, int layers,
                                 std::function<LayerData(int)> read, bool attention, DType data_dtype,
                                 const RotaryParams* rotary, const std::int32_t* positions) {
  const std::string why = cuda_backend_unavailable();
  VIDKV_REQUIRE(why.empty(), NotSupportedError, "backend cuda: ", why);
  VIDKV_ASSERT(!rotary || positions, "rotary parameters without positions");
  impl_ = std::make_unique<Impl>(codec, lifecycle, shape, layers, std::move(read), attention, data_dtype, rotary, positions);
}

CudaLayerReplay::~CudaLayerReplay() = default;

LayerData CudaLayerReplay::take(int layer) {
  Impl& m = *impl_;
  VIDKV_ASSERT(layer == m.next_layer && layer < m.layers, "layers are taken in order: expected ", m.next_layer, ", got ", layer);
  LayerData d = m.next.get();
  m.current = layer;
  m.prefetch(layer + 1);  // HDF5 read and upload of the next layer overlap this one's replay
  return d;
}

std::vector<MetricValues> CudaLayerReplay::replay(const LayerData& data, const TokenContext& ctx, ReplayedLayer& out) {
  Impl& m = *impl_;
  VIDKV_ASSERT(m.current >= 0, "replay before take");
  const int slot = m.current % 2;
  cudaStream_t s = m.compute.s;
  cuda_check(cudaStreamWaitEvent(s, m.uploaded[slot].e, 0), "replay: cudaStreamWaitEvent");
  const BlockShape& shape = m.shape;
  const std::vector<std::int64_t> dims{shape.heads, shape.tokens, shape.channels};
  auto view = [&](const DeviceBuffer& b) { return TensorView{b.data(), DType::f32, Device::cuda, dims}; };
  const ReplayedLayer r = replay_layer(m.codec, m.lifecycle, view(m.input[slot][0]), view(m.input[slot][1]), ctx,
                                       view(m.key_hat), view(m.value_hat), Execution::cuda(s), m.data_dtype);
  out.key_layout = r.key_layout;
  out.value_layout = r.value_layout;
  out.requantizations = r.requantizations;

  const LayerQueries* queries = data.queries && data.queries->count > 0 ? &*data.queries : nullptr;
  if (m.rotary && queries) {
    // rope: pre, as the cpu (experiment_runner.cpp): every metric of the layer on the rotated exact and reconstructed
    // keys. In place: this slot's input is read again only by this layer's attention metrics below.
    for (DeviceBuffer* k : {&m.input[slot][0], &m.key_hat})
      rotary_cuda::rotate_rows(k->as<float>(), shape.heads, shape.tokens, shape.channels, m.cos_sin.as<const double>(),
                               nullptr, m.rotary->pairing, s);
  }
  double* sums = m.sums.as<double>();
  metrics_cuda::error_sums(m.input[slot][0].as<const float>(), m.key_hat.as<const float>(), shape.heads, shape.slab_elements(),
                           sums, s);
  metrics_cuda::error_sums(m.input[slot][1].as<const float>(), m.value_hat.as<const float>(), shape.heads,
                           shape.slab_elements(), sums + 4 * shape.heads, s);
  std::vector<double> host(static_cast<std::size_t>(8 * shape.heads));
  copy_to_host(host.data(), sums, host.size() * sizeof(double), s);  // waits for the replay

  std::vector<MetricValues> all(static_cast<std::size_t>(shape.heads + 1));
  metric_kernels::ErrorSums layer_sums[2];
  for (std::int64_t h = 0; h <= shape.heads; ++h) {
    for (int side = 0; side < 2; ++side) {
      metric_kernels::ErrorSums e;
      if (h < shape.heads) {
        const double* p = host.data() + (side * shape.heads + h) * 4;
        e.ref2 = p[0];
        e.hat2 = p[1];
        e.diff2 = p[2];
        e.dot = p[3];
        e.n = shape.slab_elements();
        layer_sums[side].ref2 += e.ref2;  // the layer: heads in order
        layer_sums[side].hat2 += e.hat2;
        layer_sums[side].diff2 += e.diff2;
        layer_sums[side].dot += e.dot;
        layer_sums[side].n += e.n;
      } else {
        e = layer_sums[side];
      }
      metric_kernels::put_errors(all[static_cast<std::size_t>(h)], side == 0 ? "key" : "value", e);
    }
  }
  if (m.attention && queries) {
    const LayerTensors t{data.key.data(), data.value.data(), nullptr, nullptr, shape, queries};
    const LayerQueries* q = metric_kernels::usable_queries(t);  // ShapeError for a head_dim or GQA mismatch
    if (q) add_attention_metrics(*q, slot, all);
  }
  return all;
}

void CudaLayerReplay::add_attention_metrics(const LayerQueries& q, int slot, std::vector<MetricValues>& all) {
  Impl& m = *impl_;
  cudaStream_t s = m.compute.s;
  const BlockShape& shape = m.shape;
  DeviceBuffer queries(q.data.size() * sizeof(float), s), positions(q.token_index.size() * sizeof(std::int32_t), s);
  copy_to_device(queries.data(), q.data.data(), queries.bytes(), s);
  copy_to_device(positions.data(), q.token_index.data(), positions.bytes(), s);
  if (m.rotary) {  // each query to the position of its token (the keys are rotated in replay())
    for (const std::int32_t i : q.token_index)
      VIDKV_REQUIRE(i >= 0 && i < shape.tokens, ShapeError, "query token index ", i, " is outside 0..", shape.tokens - 1,
                    " (rotary embedding on cuda)");
    rotary_cuda::rotate_rows(queries.as<float>(), q.heads, q.count, q.dim, m.cos_sin.as<const double>(),
                             positions.as<const std::int32_t>(), m.rotary->pairing, s);
  }
  attention_cuda::Problem pr;
  pr.queries = queries.as<const float>();
  pr.positions = positions.as<const std::int32_t>();
  pr.q_heads = q.heads;
  pr.count = q.count;
  pr.key = m.input[slot][0].as<const float>();
  pr.key_hat = m.key_hat.as<const float>();
  pr.value = m.input[slot][1].as<const float>();
  pr.value_hat = m.value_hat.as<const float>();
  pr.kv_heads = shape.heads;
  pr.tokens = shape.tokens;
  pr.dim = shape.channels;
  const std::int64_t items = q.heads * q.count;
  DeviceBuffer scratch(attention_cuda::scratch_bytes(pr), s);
  DeviceBuffer sums(static_cast<std::size_t>(items * attention_cuda::kItemValues) * sizeof(double), s);
  attention_cuda::attention_sums(pr, scratch.as<double>(), sums.as<double>(), s);
  std::vector<double> host(static_cast<std::size_t>(items * attention_cuda::kItemValues));
  copy_to_host(host.data(), sums.data(), host.size() * sizeof(double), s);

  // Per KV head and for the layer: the items of its query heads, query heads ascending, then queries (the CPU's
  // order of visiting them), with the definitions of metrics.h.
  const std::int64_t group = q.heads / shape.heads;
  for (std::int64_t h = 0; h <= shape.heads; ++h) {
    const std::int64_t h0 = h < shape.heads ? h : 0, h1 = h < shape.heads ? h + 1 : shape.heads;
    double v[attention_cuda::kItemValues] = {0};
    for (std::int64_t qh = h0 * group; qh < h1 * group; ++qh)
      for (std::int64_t qi = 0; qi < q.count; ++qi) {
        const double* r = host.data() + (qh * q.count + qi) * attention_cuda::kItemValues;
        if (r[0] == 0) continue;
        for (int i = 0; i < attention_cuda::kItemValues; ++i) v[i] += r[i];
      }
    const double seen = v[0];
    if (seen == 0) continue;
    MetricValues& mv = all[static_cast<std::size_t>(h)];
    mv["attn_logit_rel_error"] = v[2] > 0 ? std::sqrt(v[1] / v[2]) : 0.0;
    mv["attn_kl"] = v[3] / seen;
    mv["attn_topk_overlap"] = v[4] / seen;
    mv["attn_out_rel_error"] = v[5] > 0 ? std::sqrt(v[6] / v[5]) : 0.0;
    mv["attn_out_rel_error_key_only"] = v[5] > 0 ? std::sqrt(v[7] / v[5]) : 0.0;
    mv["attn_out_rel_error_value_only"] = v[5] > 0 ? std::sqrt(v[8] / v[5]) : 0.0;
  }
}

#endif

}  // namespace vidkv
