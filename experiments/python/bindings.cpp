// The `_vidkv` extension module behind `import vidkv` (experiments/python/vidkv/__init__.py wraps it).
//
// Configs are Python dicts with the same keys as YAML blocks; they become ConfigNodes located at "python", so
// errors read like YAML errors ("python: codec.bits: bits = 9 is out of range [1, 8] for uniform"). Arrays are
// float32 numpy arrays [tokens, channels] (one slab) or [heads, tokens, channels]; other float dtypes are converted.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cmath>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <type_traits>
#include <string>
#include <vector>

#include "vidkv/attention/decode_attention.h"
#include "vidkv/core/bits_accounting.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/experiments/src/cpu_bench.h"
#include "vidkv/experiments/src/cuda_bench.h"
#include "vidkv/experiments/src/cuda_replay.h"
#include "vidkv/experiments/src/column_key.h"
#include "vidkv/experiments/src/result_table.h"
#include "vidkv/experiments/python/python_quantizer.h"

namespace py = pybind11;
using namespace vidkv;

namespace {

// Runs f() with the GIL released (C++ work that may take long) and rethrows any exception only after the GIL is
// held again, so no exception unwinds through pybind11's GIL bookkeeping (pybind11 3 / Python 3.12 crashed when
// a plugin error did).
template <class F>
auto without_gil(F&& f) -> decltype(f()) {
  std::exception_ptr error;
  if constexpr (std::is_void_v<decltype(f())>) {
    {
      py::gil_scoped_release release;
      try {
        f();
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
  } else {
    std::optional<decltype(f())> result;
    {
      py::gil_scoped_release release;
      try {
        result.emplace(f());
      } catch (...) {
        error = std::current_exception();
      }
    }
    if (error) std::rethrow_exception(error);
    return std::move(*result);
  }
}

ConfigNode to_config(const py::handle& obj, const std::string& path) {
  const SourceLocation loc{"python", 0, 0};
  ConfigNode out;
  if (py::isinstance<py::dict>(obj)) {
    out = ConfigNode::map(loc);
    for (const auto& [k, v] : py::reinterpret_borrow<py::dict>(obj)) {
      const std::string key = py::str(k);
      out.set(key, to_config(v, path.empty() ? key : path + "." + key));
    }
  } else if (py::isinstance<py::list>(obj) || py::isinstance<py::tuple>(obj)) {
    out = ConfigNode::list(loc);
    for (const auto& v : obj) out.push_back(to_config(v, path));
  } else if (obj.is_none()) {
    out.set_location(loc);
  } else if (py::isinstance<py::bool_>(obj)) {
    out = ConfigNode::scalar(obj.cast<bool>() ? "true" : "false", loc);
  } else if (py::isinstance<py::float_>(obj)) {
    out = ConfigNode::scalar(format_number(obj.cast<double>()), loc);
  } else {
    out = ConfigNode::scalar(py::str(obj), loc);
  }
  return out;
}

struct SlabArray {
  py::array_t<float, py::array::c_style | py::array::forcecast> data;
  BlockShape shape;
  bool single_slab = false;
};

// `what` names the array in errors ("input", "layer 3 key states").
SlabArray as_block(const py::array& x, const std::string& what = "input") {
  SlabArray a{py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(x), {}, false};
  if (!a.data) throw ShapeError("expected a float array");
  if (a.data.ndim() == 2) {
    a.shape = BlockShape{1, a.data.shape(0), a.data.shape(1)};
    a.single_slab = true;
  } else if (a.data.ndim() == 3) {
    a.shape = BlockShape{a.data.shape(0), a.data.shape(1), a.data.shape(2)};
  } else {
    throw ShapeError("expected an array [tokens, channels] or [heads, tokens, channels], got rank " + std::to_string(a.data.ndim()));
  }
  const float* p = a.data.data();
  for (std::int64_t i = 0; i < a.shape.elements(); ++i)
    if (!std::isfinite(p[i])) {
      const std::int64_t c = i % a.shape.channels, t = i / a.shape.channels % a.shape.tokens;
      VIDKV_THROW(ValueError, what, " hold", what == "input" ? "s" : "", " a non-finite value (", p[i], ") at head ",
                  i / a.shape.slab_elements(), ", token ", t, ", channel ", c, " (flat index ", i, ")");
    }
  return a;
}

// Side data of roundtrip(): modality [T] uint8, embeddings [T, hidden], queries [query_heads, Q, dim] with
// query_positions [Q]. Owned here; the TokenContext points into it.
struct Side {
  TraceTokens tokens;
  LayerQueries queries;
  TokenContext ctx;
};

std::unique_ptr<Side> make_side(const BlockShape& shape, const py::kwargs& kw) {
  auto side = std::make_unique<Side>();
  side->tokens = TraceTokens::uniform(shape.tokens);
  for (const auto& [k, v] : kw) {
    const std::string key = py::str(k);
    if (key == "modality") {
      auto m = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>::ensure(v);
      if (!m || m.ndim() != 1 || m.shape(0) != shape.tokens)
        throw ShapeError("modality: expected [" + std::to_string(shape.tokens) + "] uint8 values 0..3");
      for (std::int64_t i = 0; i < shape.tokens; ++i) {
        if (m.data()[i] > 3) throw ShapeError("modality: value " + std::to_string(m.data()[i]) + " at token " + std::to_string(i) + " is not 0..3");
        side->tokens.modality[static_cast<std::size_t>(i)] = static_cast<Modality>(m.data()[i]);
      }
    } else if (key == "embeddings") {
      auto e = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(v);
      if (!e || e.ndim() != 2 || e.shape(0) != shape.tokens)
        throw ShapeError("embeddings: expected [" + std::to_string(shape.tokens) + ", hidden]");
      side->tokens.hidden = e.shape(1);
      side->tokens.embeddings.assign(e.data(), e.data() + e.size());
    } else if (key == "queries") {
      auto q = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(v);
      if (!q || q.ndim() != 3 || q.shape(2) != shape.channels)
        throw ShapeError("queries: expected [query_heads, Q, " + std::to_string(shape.channels) + "]");
      side->queries.heads = q.shape(0);
      side->queries.count = q.shape(1);
      side->queries.dim = q.shape(2);
      side->queries.data.assign(q.data(), q.data() + q.size());
    } else if (key == "query_positions") {
      side->queries.token_index = v.cast<std::vector<std::int32_t>>();
    } else if (key == "seed") {
      side->ctx.seed = v.cast<std::uint64_t>();
    } else if (key == "layer") {
      side->ctx.layer = v.cast<int>();
    } else {
      throw ConfigError("roundtrip(): unknown keyword '" + key + "' (valid: modality, embeddings, queries, query_positions, seed, layer)");
    }
  }
  if (side->queries.count > 0 && static_cast<std::int64_t>(side->queries.token_index.size()) != side->queries.count)
    throw ShapeError("queries: query_positions must give the token index of each of the " + std::to_string(side->queries.count) + " queries");
  side->ctx.tokens = &side->tokens;
  if (side->queries.count > 0) side->ctx.queries = &side->queries;
  return side;
}

struct PyLayout {
  std::size_t bytes = 0;
  std::int64_t elements = 0;
  double nominal_bits = 0, effective_bits = 0;
  std::vector<std::tuple<std::string, std::string, std::size_t>> sections;
};

PyLayout to_py(const PackedLayout& l) {
  PyLayout p{l.bytes(), l.elements(), l.nominal_bits(), l.effective_bits(), {}};
  for (const auto& s : l.sections()) p.sections.emplace_back(s.name, section_kind_name(s.kind), s.bytes);
  return p;
}

// core/bits_accounting.h over the key and value layouts of a cache (every layer, batch row, prompt): the bits
// columns of a result row, as a dict.
py::dict account_bits_py(const std::vector<PyLayout>& keys, const std::vector<PyLayout>& values, const std::string& dtype) {
  const DType input = parse_dtype(dtype, "account_bits(): dtype");
  StoredBits k, v;
  for (const auto& l : keys) k += StoredBits::of(static_cast<double>(l.bytes), static_cast<double>(l.elements), l.nominal_bits);
  for (const auto& l : values) v += StoredBits::of(static_cast<double>(l.bytes), static_cast<double>(l.elements), l.nominal_bits);
  const BitsAccount a = account_bits(k, v, input);
  py::dict d;
  d["key_nominal_bits"] = a.key_nominal_bits;
  d["value_nominal_bits"] = a.value_nominal_bits;
  d["key_effective_bits"] = a.key_effective_bits;
  d["value_effective_bits"] = a.value_effective_bits;
  d["nominal_bits"] = a.nominal_bits;
  d["effective_bits"] = a.effective_bits;
  d["compression_ratio"] = a.compression_ratio;
  return d;
}

// A shape (tokens, channels) or (heads, tokens, channels) of non-negative sizes as a BlockShape.
BlockShape block_shape(const std::vector<std::int64_t>& shape, const char* what) {
  if (shape.size() != 2 && shape.size() != 3)
    throw ShapeError(std::string(what) + ": expected a shape (tokens, channels) or (heads, tokens, channels), got " +
                     std::to_string(shape.size()) + " sizes");
  for (std::int64_t n : shape)
    if (n < 0) throw ShapeError(std::string(what) + ": a negative size (" + std::to_string(n) + ") in the shape");
  return shape.size() == 2 ? BlockShape{1, shape[0], shape[1]} : BlockShape{shape[0], shape[1], shape[2]};
}

class PyCodec {
 public:
  PyCodec(ConfigNode block, std::unique_ptr<Quantizer> q) : block_(std::move(block)), q_(std::move(q)) {}

  // encode / decode / roundtrip of a codec whose token protector takes visual candidates: without modality= every
  // token is context text, the protector finds no candidate and the result is silently the unprotected codec's.
  void require_modality(const py::kwargs& kw, const char* what) const {
    if (kw.contains("modality") || !protects_visual_tokens(block_)) return;
    throw ConfigError(std::string(what) + ": this codec's token protector takes its candidates from the visual tokens "
                      "(candidates: visual), but no modality= was given, so every token would count as context text "
                      "and none would be protected: pass modality= ([tokens] uint8: 0 context text, 1 visual, 2 query "
                      "text, 3 generated) and what the protector reads (embeddings= [tokens, hidden] for "
                      "semantic_embedding; queries= and query_positions= for semantic_attention)");
  }

  PyLayout layout(const std::vector<std::int64_t>& shape, const py::kwargs& kw) const {
    const BlockShape s = block_shape(shape, "layout()");
    auto side = make_side(s, kw);
    return to_py(q_->layout(s, side->ctx));
  }

  py::bytes encode(const py::array& x, const py::kwargs& kw) const {
    require_modality(kw, "encode()");
    SlabArray a = as_block(x);
    auto side = make_side(a.shape, kw);
    const auto bytes = run_encode(a, *side);
    return py::bytes(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }

  py::array_t<float> decode(const py::bytes& b, const std::vector<std::int64_t>& shape, const py::kwargs& kw) const {
    require_modality(kw, "decode()");
    const BlockShape s = block_shape(shape, "decode()");
    auto side = make_side(s, kw);
    const std::string data = b;
    const std::size_t want = q_->layout(s, side->ctx).bytes();
    if (data.size() != want) throw ShapeError("decode(): got " + std::to_string(data.size()) + " bytes, the layout needs " + std::to_string(want));
    py::array_t<float> out(std::vector<py::ssize_t>(shape.begin(), shape.end()));
    float* dst = out.mutable_data();
    without_gil([&] { q_->decode(reinterpret_cast<const std::uint8_t*>(data.data()), s, side->ctx, dst); });
    return out;
  }

  py::array_t<float> roundtrip(const py::array& x, const py::kwargs& kw) const {
    require_modality(kw, "roundtrip()");
    SlabArray a = as_block(x);
    auto side = make_side(a.shape, kw);
    const auto bytes = run_encode(a, *side);
    std::vector<py::ssize_t> dims;
    if (!a.single_slab) dims.push_back(a.shape.heads);
    dims.push_back(a.shape.tokens);
    dims.push_back(a.shape.channels);
    py::array_t<float> out(dims);
    float* dst = out.mutable_data();
    without_gil([&] { q_->decode(bytes.data(), a.shape, side->ctx, dst); });
    return out;
  }

  std::string config() const { return block_.dump(); }

 private:
  std::vector<std::uint8_t> run_encode(const SlabArray& a, Side& side) const {
    LayerKeys keys{a.data.data(), a.shape.heads, a.shape.tokens, a.shape.channels};
    side.ctx.keys = keys;  // semantic_attention on keys passed as x
    std::vector<std::uint8_t> bytes(q_->layout(a.shape, side.ctx).bytes());
    const float* src = a.data.data();
    without_gil([&] { q_->encode(src, a.shape, side.ctx, bytes.data()); });
    return bytes;
  }

  ConfigNode block_;
  std::unique_ptr<Quantizer> q_;
};

py::object to_python(const ConfigNode& n) {
  switch (n.kind()) {
    case ConfigNode::Kind::null: return py::none();
    case ConfigNode::Kind::scalar: return py::str(n.text());
    case ConfigNode::Kind::list: {
      py::list l;
      for (const auto& i : n.items()) l.append(to_python(i));
      return std::move(l);
    }
    case ConfigNode::Kind::map: {
      py::dict d;
      for (const auto& [k, v] : n.entries()) d[py::str(k)] = to_python(v);
      return std::move(d);
    }
  }
  return py::none();
}

// The registry of the Python module: the built-in plugins, grown by the plugins loaded into this process. Every
// codec, plan and cache built from Python is built through it.
PluginRegistry& module_registry() {
  static PluginRegistry registry = builtin_plugin_registry();
  return registry;
}

// The validated plan of an experiment file, as plain Python data (scalars stay YAML text): what `vidkv live`
// runs, validated by exactly the code that validates `vidkv run`.
py::dict plan_to_python(const std::string& file, const std::vector<std::string>& overrides) {
  const ExperimentPlan plan = plan_experiment(file, overrides, module_registry());
  py::dict out;
  out["name"] = plan.name;
  out["description"] = plan.description;
  out["source_file"] = plan.source_file;
  out["traces"] = plan.traces;
  out["model"] = to_python(plan.model);
  out["backend"] = device_name(plan.backend);
  out["seed"] = plan.seed;
  out["metrics"] = plan.metrics;
  out["output"] = plan.output_dir;
  out["resolved"] = to_python(plan.resolved);
  out["resolved_yaml"] = plan.resolved.dump_yaml();
  py::list runs;
  for (const auto& r : plan.runs) {
    py::dict d;
    d["name"] = r.name;
    d["codec"] = to_python(r.codec);
    d["lifecycle"] = to_python(r.lifecycle_node);
    py::list params;
    for (const auto& [k, v] : r.params) params.append(py::make_tuple(k, v));
    d["params"] = params;
    runs.append(d);
  }
  out["runs"] = runs;
  return out;
}

// A codec dict ({"preset": NAME} or {"key": ..., "value": ...}) resolved to its key and value blocks, located at
// "codec" in messages; `preset_lifecycle`, when given, receives the preset's lifecycle block (resolve_codec).
ConfigNode resolved_codec(const py::dict& codec, ConfigNode* preset_lifecycle = nullptr) {
  ConfigNode node = to_config(codec, "");
  node.set_path("codec");
  return resolve_codec(node, module_registry(), preset_lifecycle);
}

py::object make_codec(const py::dict& config) {
  ConfigNode node = to_config(config, "");
  node.set_path("codec");
  if (node.has("preset") || node.has("key") || node.has("value")) {
    ConfigNode resolved = resolve_codec(node, module_registry());
    py::dict sides;
    for (const char* side : {"key", "value"}) {
      if (const ConfigNode* b = resolved.find(side)) {
        auto codec = std::make_unique<PyCodec>(*b, module_registry().make_quantizer(*b));
        if (node.has("part")) return py::cast(std::move(codec));
        sides[side] = py::cast(std::move(codec));
      }
    }
    return std::move(sides);
  }
  return py::cast(std::make_unique<PyCodec>(node, module_registry().make_quantizer(node)));
}


// The cache of one layer under a codec and lifecycle, for the live Hugging Face hook (vidkv.hf). Owns its codec
// and token metadata; tokens appended after the prefill are marked "generated" unless modality is given.
// A torch tensor (anything with data_ptr(), dtype, shape, device and is_contiguous()) as a TensorView; no torch
// headers: the attributes are read through Python. `what` names the argument in errors.
TensorView torch_view(const py::object& t, const std::string& what) {
  if (!py::hasattr(t, "data_ptr") || !py::hasattr(t, "is_contiguous"))
    throw ShapeError(what + ": expected a torch tensor, got " + py::cast<std::string>(py::str(py::type::of(t))));
  if (!t.attr("is_contiguous")().cast<bool>()) throw ShapeError(what + ": the tensor must be contiguous (call .contiguous())");
  // The live cache calls this four times per layer and decode step: compare the dtype object with torch's (no
  // string formatting) and read `is_cuda` rather than the device's type name.
  // The dtype objects are kept for the life of the process (never released: no decref after interpreter shutdown).
  static const py::handle f32 = py::object(py::module_::import("torch").attr("float32")).release(),
                          f16 = py::object(py::module_::import("torch").attr("float16")).release(),
                          bf16 = py::object(py::module_::import("torch").attr("bfloat16")).release();
  const py::object dt = t.attr("dtype");
  TensorView v;
  if (dt.is(f16)) v.dtype = DType::f16;
  else if (dt.is(f32)) v.dtype = DType::f32;
  else if (dt.is(bf16)) v.dtype = DType::bf16;
  else throw ShapeError(what + ": dtype " + py::cast<std::string>(py::str(dt)) + " is not float32, float16 or bfloat16");
  v.device = t.attr("is_cuda").cast<bool>() ? Device::cuda : Device::cpu;
  for (const py::handle& d : t.attr("shape")) v.shape.push_back(d.cast<std::int64_t>());
  v.data = reinterpret_cast<void*>(t.attr("data_ptr")().cast<std::uintptr_t>());
  return v;
}

class PyLayerCache {
 public:
  // dtype: "fp16", "bf16" or "fp32", the dtype the model's K/V have (what lifecycle residual_dtype data stores).
  // device: "cpu" or "cuda:N" (the model's device); stream: the cudaStream_t (as an int) the cache enqueues on.
  PyLayerCache(const py::dict& codec, const py::dict& lifecycle, std::int64_t heads, std::int64_t channels, int layer,
               std::uint64_t seed, const std::string& dtype, const std::string& device, std::uintptr_t stream)
      : heads_(heads), channels_(channels), layer_(layer), seed_(seed), dtype_(dtype), device_(device),
        codec_dict_(py::dict(codec)), lifecycle_dict_(py::dict(lifecycle)) {
    const ConfigNode resolved = resolved_codec(codec);
    ConfigNode lc = to_config(lifecycle, "");
    lc.set_path("lifecycle");
    params_ = parse_params<LifecycleParams>(lc, {}, "lifecycle");
    codec_ = std::make_shared<KvCodec>(module_registry().make_quantizer(resolved.at("key")),
                                       module_registry().make_quantizer(resolved.at("value")));
    tokens_ = std::make_unique<TraceTokens>();
    const DType data_dtype = dtype == "fp16" ? DType::f16 : dtype == "bf16" ? DType::bf16 : DType::f32;
    if (dtype != "fp16" && dtype != "bf16" && dtype != "fp32")
      throw ConfigError("LayerCache: dtype '" + dtype + "' is not one of fp16, bf16, fp32");
    Execution ex = Execution::cpu();
    if (device.rfind("cuda", 0) == 0) {
      const std::string idx = device.size() > 5 && device[4] == ':' ? device.substr(5) : "0";
      if (device != "cuda" && (device.size() <= 5 || device[4] != ':' || idx.find_first_not_of("0123456789") != std::string::npos))
        throw ConfigError("LayerCache: device '" + device + "' is not cpu, cuda or cuda:N");
      device_index_ = std::stoi(idx);
      if (const std::string why = cuda_backend_unavailable(); !why.empty())
        throw NotSupportedError("LayerCache: device '" + device + "': " + why);
      ex = Execution::cuda(reinterpret_cast<void*>(stream));
    } else if (device != "cpu") {
      throw ConfigError("LayerCache: device '" + device + "' is not cpu, cuda or cuda:N");
    }
    // The live hook keeps no exact copy of quantized tokens (cache_lifecycle.h, ExactTokens::residual).
    with_device([&] {
      cache_ = std::make_unique<LayerCache>(*codec_, params_, heads, channels, context(), data_dtype, ex, ExactTokens::residual);
    });
  }

  // A copy sharing the (immutable) codec, with its own token metadata and storage (LayerCache's rebinding copy).
  PyLayerCache clone() const { return PyLayerCache(*this); }
  PyLayerCache(const PyLayerCache& o)
      : heads_(o.heads_), channels_(o.channels_), layer_(o.layer_), seed_(o.seed_), dtype_(o.dtype_), device_(o.device_),
        codec_dict_(o.codec_dict_), lifecycle_dict_(o.lifecycle_dict_), params_(o.params_), codec_(o.codec_),
        tokens_(std::make_unique<TraceTokens>(*o.tokens_)) {
    device_index_ = o.device_index_;
    with_device([&] { cache_ = std::make_unique<LayerCache>(*o.cache_, *codec_, context()); });
  }

  // Exact crop to n tokens (LayerCache::crop: n must lie in the full-precision residual of both sides).
  void crop(std::int64_t n) {
    cache_->crop(n);
    TraceTokens& t = *tokens_;
    const auto k = static_cast<std::size_t>(n);
    t.modality.resize(k), t.position.resize(k), t.frame.resize(k), t.patch_row.resize(k), t.patch_col.resize(k);
    if (t.hidden) t.embeddings.resize(k * static_cast<std::size_t>(t.hidden));
  }

  // Modality codes of the tokens held ([tokens] uint8) and their embeddings ([tokens, hidden] float32, or None).
  py::array_t<std::uint8_t> modality() const {
    py::array_t<std::uint8_t> out(static_cast<py::ssize_t>(tokens_->modality.size()));
    for (std::size_t i = 0; i < tokens_->modality.size(); ++i) out.mutable_data()[i] = static_cast<std::uint8_t>(tokens_->modality[i]);
    return out;
  }
  py::object embeddings() const {
    if (!tokens_->hidden) return py::none();
    py::array_t<float> out(std::vector<py::ssize_t>{tokens_->size(), static_cast<py::ssize_t>(tokens_->hidden)});
    std::copy(tokens_->embeddings.begin(), tokens_->embeddings.begin() + out.size(), out.mutable_data());
    return std::move(out);
  }

  // Pickle: the constructor's arguments, the token metadata and LayerCache::state() (packed bytes, the exact
  // residual rows, counters), as plain Python objects. kPickleVersion changes whenever the tuple or the packed bytes'
  // meaning does: 3 since uniform's layout fragment stores channel-axis metadata group-major (uniform_format version
  // 2), which a version-2 state's key blocks would be misread as (their byte counts are the same).
  static constexpr int kPickleVersion = 3;
  py::tuple getstate() const {
    LayerCache::State s;
    without_gil([&] { with_device([&] { s = cache_->state(); }); });
    auto blocks = [](const std::vector<LayerCache::State::BlockBytes>& bs) {
      py::list out;
      for (const auto& b : bs)
        out.append(py::make_tuple(b.begin, b.end, py::bytes(reinterpret_cast<const char*>(b.bytes.data()), b.bytes.size())));
      return out;
    };
    auto floats = [](const std::vector<float>& v) { return py::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(float)); };
    const TraceTokens& t = *tokens_;
    auto raw = [](const auto& v) {
      return py::bytes(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(typename std::decay_t<decltype(v)>::value_type));
    };
    py::tuple tokens = py::make_tuple(raw(t.modality), raw(t.position), raw(t.frame), raw(t.patch_row), raw(t.patch_col),
                                      t.hidden, raw(t.embeddings));
    py::tuple state = py::make_tuple(s.tokens, s.key_quantized, s.value_quantized, s.key_first, s.value_first,
                                     s.requantizations,
                                     blocks(s.key_blocks), blocks(s.value_blocks), floats(s.key_rows), floats(s.value_rows));
    return py::make_tuple(kPickleVersion, codec_dict_, lifecycle_dict_, heads_, channels_, layer_, seed_, dtype_, device_, tokens, state);
  }
  static PyLayerCache setstate(const py::tuple& p) {
    if (p.size() != 11 || p[0].cast<int>() != kPickleVersion)
      throw ValueError("LayerCache: unpickling a state of another version (this build reads version " +
                       std::to_string(kPickleVersion) + ", got " + (p.size() > 0 ? py::str(p[0]).cast<std::string>() : "none") +
                       "): pickle the cache again with this build");
    // Restored on the device it was saved from, enqueued on that device's default stream (0).
    PyLayerCache c(p[1].cast<py::dict>(), p[2].cast<py::dict>(), p[3].cast<std::int64_t>(), p[4].cast<std::int64_t>(),
                   p[5].cast<int>(), p[6].cast<std::uint64_t>(), p[7].cast<std::string>(), p[8].cast<std::string>(), 0);
    auto from_bytes = [](const py::handle& h, auto& v) {
      const std::string b = h.cast<std::string>();
      v.resize(b.size() / sizeof(typename std::decay_t<decltype(v)>::value_type));
      std::memcpy(v.data(), b.data(), v.size() * sizeof(typename std::decay_t<decltype(v)>::value_type));
    };
    const py::tuple tk = p[9].cast<py::tuple>();
    TraceTokens& t = *c.tokens_;
    from_bytes(tk[0], t.modality), from_bytes(tk[1], t.position), from_bytes(tk[2], t.frame), from_bytes(tk[3], t.patch_row),
        from_bytes(tk[4], t.patch_col);
    t.hidden = tk[5].cast<std::int64_t>();
    from_bytes(tk[6], t.embeddings);
    const py::tuple st = p[10].cast<py::tuple>();
    LayerCache::State s;
    s.tokens = st[0].cast<std::int64_t>(), s.key_quantized = st[1].cast<std::int64_t>();
    s.value_quantized = st[2].cast<std::int64_t>(), s.key_first = st[3].cast<std::int64_t>();
    s.value_first = st[4].cast<std::int64_t>(), s.requantizations = st[5].cast<int>();
    auto blocks = [&](const py::handle& h, std::vector<LayerCache::State::BlockBytes>& out) {
      for (const py::handle& b : h.cast<py::list>()) {
        const py::tuple bt = b.cast<py::tuple>();
        LayerCache::State::BlockBytes bb{bt[0].cast<std::int64_t>(), bt[1].cast<std::int64_t>(), {}};
        from_bytes(bt[2], bb.bytes);
        out.push_back(std::move(bb));
      }
    };
    blocks(st[6], s.key_blocks);
    blocks(st[7], s.value_blocks);
    from_bytes(st[8], s.key_rows);
    from_bytes(st[9], s.value_rows);
    c.with_device([&] { c.cache_->restore(s); });
    return c;
  }

  // key, value: [heads, t, channels]; modality: [t] (default: 3 = generated after the first call, 0 before);
  // embeddings: [t, hidden] (needed by semantic_embedding at the prefill).
  void append(const py::array& key, const py::array& value, const py::object& modality, const py::object& embeddings) {
    const std::string layer = "layer " + std::to_string(layer_);
    SlabArray k = as_block(key, layer + " key states"), v = as_block(value, layer + " value states");
    if (!(k.shape == v.shape) || k.shape.heads != heads_ || k.shape.channels != channels_)
      throw ShapeError("append(): key " + k.shape.str() + " and value " + v.shape.str() + " must both be [" +
                       std::to_string(heads_) + ", t, " + std::to_string(channels_) + "]");
    const std::int64_t t = k.shape.tokens;
    record_tokens(t, modality, embeddings);
    const float* kp = k.data.data();
    const float* vp = v.data.data();
    without_gil([&] { with_device([&] { cache_->append(kp, vp, t); }); });
  }

  // The same from torch tensors [heads, t, channels] (fp32, fp16, bf16, contiguous) on the cache's device: no host
  // copy on cuda; enqueued on the cache's stream.
  void append_tensors(const py::object& key, const py::object& value, const py::object& modality, const py::object& embeddings) {
    const std::string layer = "layer " + std::to_string(layer_);
    append_views(torch_view(key, layer + " key states"), torch_view(value, layer + " value states"), modality, embeddings);
  }
  // append_tensors on views already taken (k, v: [heads, t, channels] on the cache's device).
  void append_views(const TensorView& k, const TensorView& v, const py::object& modality, const py::object& embeddings) {
    check_row_views(k, v);
    const std::int64_t t = k.shape[1];
    record_tokens(t, modality, embeddings);
    try {
      without_gil([&] { with_device([&] { cache_->append(k, v, 0, t); }); });
    } catch (...) {
      trim_recorded();
      throw;
    }
  }
  // The token metadata cut back to the tokens the cache holds: after an append that threw (recorded first, since
  // the encodes read it), so that later tokens' positions and modality stay lined up with the cache's.
  void trim_recorded() {
    const auto n = static_cast<std::size_t>(cache_->tokens());
    if (static_cast<std::size_t>(tokens_->size()) <= n) return;
    tokens_->modality.resize(n);
    tokens_->position.resize(n);
    tokens_->frame.resize(n);
    tokens_->patch_row.resize(n);
    tokens_->patch_col.resize(n);
    if (tokens_->hidden) tokens_->embeddings.resize(n * static_cast<std::size_t>(tokens_->hidden));
  }
  // ShapeError unless k and v are both [heads, t, channels] of this cache, on its device.
  void check_row_views(const TensorView& k, const TensorView& v) const {
    if (k.rank() != 3 || k.shape != v.shape || k.shape[0] != heads_ || k.shape[2] != channels_)
      throw ShapeError("append_tensors(): key " + k.shape_str() + " and value " + v.shape_str() + " must both be [" +
                       std::to_string(heads_) + ", t, " + std::to_string(channels_) + "]");
    if (k.device != cache_->execution().device || v.device != cache_->execution().device)
      throw ShapeError("append_tensors(): key on " + device_name(k.device) + ", value on " + device_name(v.device) +
                       ", the cache on " + device_name(cache_->execution().device));
  }
  // The token metadata of `t` appended tokens without modality or embeddings (append_rows: the decode step's), as
  // append_views records them.
  void record_appended(std::int64_t t) { record_tokens(t, py::none(), py::none()); }
  LayerCache& mutable_cache() { return *cache_; }

  // Writes the cache as the model reads it into torch tensors [heads, tokens, channels] (fp32, fp16 or bf16) on
  // the cache's device, in place (on cuda: enqueued on the cache's stream, no host copy).
  void materialize_into(const py::object& key, const py::object& value) {
    const TensorView k = torch_view(key, "materialize_into() key"), v = torch_view(value, "materialize_into() value");
    without_gil([&] { with_device([&] { cache_->materialize(k, v); }); });
  }

  // Bytes held on the cache's device now: packed blocks and the exact residual window (with its slack).
  py::dict memory() const {
    const HeldBytes b = cache_->held_bytes();
    py::dict d;
    d["device"] = cache_->execution().on_cuda() ? "cuda:" + std::to_string(device_index_) : std::string("cpu");
    d["packed_bytes"] = b.packed;
    d["residual_bytes"] = b.exact;
    d["total_bytes"] = b.total();
    return d;
  }

  py::tuple materialize() const {
    std::vector<float> k, v;
    without_gil([&] { cache_->materialize(k, v); });
    const std::vector<py::ssize_t> dims = {heads_, cache_->tokens(), channels_};
    py::array_t<float> ka(dims), va(dims);
    std::copy(k.begin(), k.end(), ka.mutable_data());
    std::copy(v.begin(), v.end(), va.mutable_data());
    return py::make_tuple(ka, va);
  }

  std::int64_t tokens() const { return cache_->tokens(); }
  PyLayout key_layout() const { return to_py(cache_->key_layout()); }
  PyLayout value_layout() const { return to_py(cache_->value_layout()); }
  int requantizations() const { return cache_->requantizations(); }
  const LayerCache& cache() const { return *cache_; }
  std::int64_t key_quantized() const { return cache_->key_quantized(); }
  int device_index() const { return device_index_; }
  std::int64_t value_quantized() const { return cache_->value_quantized(); }
  // Runs `f` with the cache's CUDA device current (a no-op on cpu).
  template <class F>
  void with_device(F&& f) const {
    if (device_index_ < 0) return f();
    CudaDeviceGuard guard(device_index_);
    f();
  }

 private:
  TokenContext context() const {
    TokenContext ctx;
    ctx.layer = layer_;
    ctx.tokens = tokens_.get();
    ctx.seed = seed_;
    return ctx;
  }

  // Token metadata of `t` appended tokens: modality [t] (default 0 at the prefill, 3 after), embeddings [t, hidden].
  void record_tokens(std::int64_t t, const py::object& modality, const py::object& embeddings) {
    const auto base = static_cast<std::int32_t>(tokens_->size());
    std::vector<Modality> ms(static_cast<std::size_t>(t), cache_->tokens() == 0 ? Modality::system_text : Modality::generated);
    if (!modality.is_none()) {
      auto arr = py::array_t<std::uint8_t, py::array::c_style | py::array::forcecast>::ensure(modality);
      if (!arr || arr.size() != t) throw ShapeError("append(): modality needs one value per appended token");
      for (std::int64_t i = 0; i < t; ++i) {
        if (arr.data()[i] > 3) throw ShapeError("append(): modality values are 0..3, got " + std::to_string(arr.data()[i]));
        ms[static_cast<std::size_t>(i)] = static_cast<Modality>(arr.data()[i]);
      }
    }
    std::vector<float> emb;
    if (!embeddings.is_none()) {
      auto e = py::array_t<float, py::array::c_style | py::array::forcecast>::ensure(embeddings);
      if (!e || e.ndim() != 2 || e.shape(0) != t) throw ShapeError("append(): embeddings must be [t, hidden]");
      if (tokens_->hidden && tokens_->hidden != e.shape(1)) throw ShapeError("append(): embedding width changed");
      tokens_->hidden = e.shape(1);
      emb.assign(e.data(), e.data() + e.size());
    }
    // Checked first, recorded after: a refused call leaves the metadata as it was.
    for (std::int64_t i = 0; i < t; ++i) {
      tokens_->modality.push_back(ms[static_cast<std::size_t>(i)]);
      tokens_->position.push_back(base + static_cast<std::int32_t>(i));
      tokens_->frame.push_back(-1);
      tokens_->patch_row.push_back(-1);
      tokens_->patch_col.push_back(-1);
    }
    if (!emb.empty()) {
      tokens_->embeddings.resize(static_cast<std::size_t>(base) * static_cast<std::size_t>(tokens_->hidden), 0.0f);
      tokens_->embeddings.insert(tokens_->embeddings.end(), emb.begin(), emb.end());
    } else if (tokens_->hidden) {
      tokens_->embeddings.resize(tokens_->embeddings.size() + static_cast<std::size_t>(t * tokens_->hidden), 0.0f);
    }
  }

  int device_index_ = -1;  // the cuda device; -1 on cpu
  std::int64_t heads_, channels_;
  int layer_;
  std::uint64_t seed_;
  std::string dtype_, device_;
  py::dict codec_dict_, lifecycle_dict_;  // the constructor's arguments (pickle)
  LifecycleParams params_;
  std::shared_ptr<const KvCodec> codec_;  // immutable once built: shared by clones
  std::unique_ptr<TraceTokens> tokens_;
  std::unique_ptr<LayerCache> cache_;
};

// _vidkv.decode_attention(caches, query, out): decode attention straight from the packed caches of one layer
// (attention/decode_attention.h), one LayerCache per sequence (same device, codec and shape), query and out torch
// tensors [batch, q_heads, head_dim] (fp32 / fp16 / bf16, contiguous) on the caches' device. On cuda the kernels
// are enqueued on the first cache's stream (no synchronisation); on cpu the result is the reference.
// The LayerCaches of `caches` (one per sequence); ShapeError naming `what` for an empty list or a None entry.
std::vector<const LayerCache*> attention_caches(const std::vector<const PyLayerCache*>& caches, const char* what) {
  if (caches.empty()) throw ShapeError(std::string(what) + ": no caches (batch of 0 sequences)");
  std::vector<const LayerCache*> ptrs;
  for (const PyLayerCache* c : caches) {
    if (!c) throw ShapeError(std::string(what) + ": a cache is None");
    ptrs.push_back(&c->cache());
  }
  return ptrs;
}

void decode_attention_py(const std::vector<const PyLayerCache*>& caches, const py::object& query, const py::object& out,
                         std::int64_t query_tokens) {
  const std::vector<const LayerCache*> ptrs = attention_caches(caches, "decode_attention()");
  const TensorView q = torch_view(query, "decode_attention() query"), o = torch_view(out, "decode_attention() out");
  without_gil([&] { caches[0]->with_device([&] { decode_attention(ptrs, q, o, ptrs[0]->execution(), query_tokens); }); });
}

// _vidkv.append_rows(caches, key, value): key and value [batch, heads, t, channels] torch tensors (fp32, fp16, bf16,
// contiguous) on the caches' device; row b goes to caches[b] as caches[b].append_tensors(key[b], value[b]) would
// (default modality, no embeddings). One call for the whole batch: the live cache's decode step.
void append_rows(const std::vector<PyLayerCache*>& caches, const py::object& key, const py::object& value) {
  const TensorView k = torch_view(key, "append_rows() key states"), v = torch_view(value, "append_rows() value states");
  const auto batch = static_cast<std::int64_t>(caches.size());
  if (k.rank() != 4 || k.shape != v.shape || k.shape[0] != batch)
    throw ShapeError("append_rows(): key " + k.shape_str() + " and value " + v.shape_str() + " must both be [" +
                     std::to_string(batch) + " (one row per cache), heads, t, channels]");
  const std::size_t row = static_cast<std::size_t>(k.shape[1] * k.shape[2] * k.shape[3]);
  bool one_device = true;
  for (const PyLayerCache* c : caches) {  // before any row is appended
    if (!c) throw ShapeError("append_rows(): a cache is None");
    one_device = one_device && c->device_index() == caches[0]->device_index();
  }
  auto row_of = [&](const TensorView& x, std::int64_t b) {
    return TensorView{static_cast<char*>(x.data) + static_cast<std::size_t>(b) * row * static_cast<std::size_t>(dtype_size(x.dtype)),
                      x.dtype, x.device, {x.shape[1], x.shape[2], x.shape[3]}};
  };
  if (!one_device) {  // caches on several GPUs: one after the other, each with its device current
    for (std::int64_t b = 0; b < batch; ++b)
      caches[static_cast<std::size_t>(b)]->append_views(row_of(k, b), row_of(v, b), py::none(), py::none());
    return;
  }
  // One device: the rows' shapes checked and their tokens recorded (the GIL held), then every row appended with one
  // GIL release and one device switch (LayerCache::append_batch: on cuda the rows' copies in one launch).
  std::vector<LayerCache*> targets;
  std::vector<TensorView> keys, values;
  for (std::int64_t b = 0; b < batch; ++b) {
    PyLayerCache& c = *caches[static_cast<std::size_t>(b)];
    keys.push_back(row_of(k, b));
    values.push_back(row_of(v, b));
    c.check_row_views(keys.back(), values.back());
    targets.push_back(&c.mutable_cache());
  }
  for (std::int64_t b = 0; b < batch; ++b) caches[static_cast<std::size_t>(b)]->record_appended(k.shape[2]);
  try {
    without_gil([&] { caches[0]->with_device([&] { LayerCache::append_batch(targets, keys, values); }); });
  } catch (...) {
    for (PyLayerCache* c : caches) c->trim_recorded();  // rows appended before the failure keep theirs
    throw;
  }
}

// A [batch, 1, q_heads, D] or [batch, q_heads, 1, D] view (one query token per row, contiguous) as [batch, q_heads,
// D]: the same memory.
TensorView drop_unit_token_dim(TensorView v) {
  if (v.rank() == 4) {
    for (std::size_t d : {std::size_t{1}, std::size_t{2}})
      if (v.shape[d] == 1) {
        v.shape.erase(v.shape.begin() + static_cast<std::ptrdiff_t>(d));
        break;
      }
  }
  return v;
}

// _vidkv.DecodeAttention(): the decode attention of one layer kept across decode steps. run(caches, query, out) does
// what _vidkv.decode_attention does, but brings the last run's tables up to date (DecodeAttention::update: only the
// residual windows' tiles are rebuilt while the blocks stay the same) and keeps their device memory and the
// workspace, instead of building, uploading and allocating everything per call (the live cache calls it once per
// layer and decode step).
class PyDecodeAttention {
 public:
  void run(const std::vector<const PyLayerCache*>& caches, const py::object& query, const py::object& out,
           std::int64_t query_tokens) {
    const std::vector<const LayerCache*> ptrs = attention_caches(caches, "DecodeAttention.run()");
    // One query token: the module's [batch, q_heads, 1, D] / [batch, 1, q_heads, D] as [batch, q_heads, D]. Several:
    // [batch, query_tokens, q_heads, D] as given (DecodeAttention::run checks it).
    TensorView q = torch_view(query, "DecodeAttention.run() query"), o = torch_view(out, "DecodeAttention.run() out");
    if (query_tokens == 1) {
      q = drop_unit_token_dim(q);
      o = drop_unit_token_dim(o);
    }
    const Execution& ex = ptrs[0]->execution();
    // On cuda above 8 query heads per KV head, tables with a row per query head group (one run of the kernels;
    // run() checks the shapes, a malformed one gets its error there).
    const std::int64_t groups =
        DecodeAttention::table_head_groups(q, ptrs[0]->heads(), static_cast<std::int64_t>(ptrs.size()) * query_tokens);
    without_gil([&] {
      const std::lock_guard<std::mutex> lock(*mutex_);  // one run at a time per object (the GIL is released)
      caches[0]->with_device([&] {
        // Another device or stream than the kept tables': start afresh (their memory belongs to the old one).
        if (state_ && (state_device_ != ex.device || state_stream_ != ex.cuda_stream || state_index_ != caches[0]->device_index()))
          state_.reset();
        if (state_) {
          state_->update(ptrs, query_tokens, groups);
        } else {
          // No side stream: the live decode step is bound by the host, where its event calls cost more than the
          // overlap of the general kernel saves (DecodeAttention's side_stream).
          state_ = std::make_unique<DecodeAttention>(ptrs, ex, 0, DecodeAttention::FastKernel::tensor_cores, false, query_tokens,
                                                     groups);
          state_device_ = ex.device;
          state_stream_ = ex.cuda_stream;
          state_index_ = caches[0]->device_index();
        }
        state_->run(q, o);
      });
    });
  }
  // Tiles of the last run's tables (0 before the first run).
  std::int64_t tiles() const {
    const std::lock_guard<std::mutex> lock(*mutex_);  // run() may replace state_ with the GIL released
    return state_ ? state_->tiles() : 0;
  }
  // How the tables went up so far (DecodeAttention::uploads): {"whole": n, "patched": n, "unchanged": n}.
  py::dict uploads() const {
    DecodeAttention::Uploads u;
    {
      const std::lock_guard<std::mutex> lock(*mutex_);
      if (state_) u = state_->uploads();
    }
    py::dict d;
    d["whole"] = u.whole;
    d["patched"] = u.patched;
    d["unchanged"] = u.unchanged;
    return d;
  }

 private:
  std::unique_ptr<DecodeAttention> state_;
  std::unique_ptr<std::mutex> mutex_ = std::make_unique<std::mutex>();
  Device state_device_ = Device::cpu;
  void* state_stream_ = nullptr;
  int state_index_ = -1;
};

// _vidkv.decode_attention_supports(codec, head_dim): "" when decode attention reads both sides of the codec in
// place at this head_dim, else the reason (naming the plugin and option).
std::string decode_attention_supports_py(const py::dict& codec, std::int64_t head_dim) {
  const ConfigNode resolved = resolved_codec(codec);
  for (const char* side : {"key", "value"}) {
    std::string why;
    const KvSide kv = std::string(side) == "key" ? KvSide::key : KvSide::value;
    if (!decode_attention_supports(*module_registry().make_quantizer(resolved.at(side)), head_dim, kv, &why))
      return std::string(side) + ": " + why;
  }
  return "";
}

}  // namespace

// A list of dicts (column -> str, number or None) as result rows: str stays text, bool / int / float become numbers,
// None leaves the cell empty, anything else is written as its str().
std::vector<ResultRow> to_rows(const py::list& rows) {
  std::vector<ResultRow> out;
  for (const py::handle& item : rows) {
    ResultRow r;
    for (const auto& [k, v] : py::cast<py::dict>(item)) {
      if (v.is_none()) continue;
      if (py::isinstance<py::str>(v)) r.set(py::cast<std::string>(k), py::cast<std::string>(v));
      else if (py::isinstance<py::bool_>(v) || py::isinstance<py::int_>(v) || py::isinstance<py::float_>(v))
        r.set(py::cast<std::string>(k), v.cast<double>());
      else r.set(py::cast<std::string>(k), py::cast<std::string>(py::str(v)));
    }
    out.push_back(std::move(r));
  }
  return out;
}

PYBIND11_MODULE(_vidkv, m) {
  m.doc() = "VidKV: low-bit KV-cache quantization (C++ core). Use `import vidkv`.";
  // The base first: pybind11 tries translators newest first, so the derived errors must be registered after it.
  auto& error = py::register_exception<Error>(m, "Error", PyExc_RuntimeError);
  py::register_exception<ConfigError>(m, "ConfigError", error.ptr());
  py::register_exception<ShapeError>(m, "ShapeError", error.ptr());
  // Both vidkv.Error and Python's ValueError (PyErr_NewException takes a tuple of bases).
  py::register_exception<ValueError>(m, "ValueError", py::make_tuple(error, py::handle(PyExc_ValueError)).ptr());
  py::register_exception<IoError>(m, "IoError", error.ptr());
  py::register_exception<NotSupportedError>(m, "NotSupportedError", error.ptr());
  py::register_exception<CudaError>(m, "CudaError", error.ptr());

  m.def(
      "write_result_files",
      [](const std::string& dir, const py::list& rows, const std::vector<std::string>& columns, const py::list& summary,
         const std::vector<std::string>& summary_columns) {
        write_result_files(dir, to_rows(rows), columns, to_rows(summary), summary_columns);
      },
      py::arg("dir"), py::arg("rows"), py::arg("columns"), py::arg("summary"), py::arg("summary_columns"),
      "results.csv, results.jsonl and summary.md of a results folder, written by the same C++ writer as vidkv run "
      "(experiments/src/result_table.h); rows are dicts column -> str, number or None");
  m.attr("KEY_COLUMNS") = kKeyColumns;
  m.def(
      "summary_markdown",
      [](const py::list& summary, const std::vector<std::string>& columns) { return rows_to_markdown(to_rows(summary), columns); },
      py::arg("summary"), py::arg("columns"),
      "The summary table as vidkv run prints it and writes summary.md (experiments/src/result_table.h "
      "rows_to_markdown: numbers to 4 significant digits, '|' escaped); rows are dicts column -> str, number or None");
  m.def(
      "summary_column_key",
      [](const std::vector<std::string>& columns, bool live) {
        return summary_column_key(columns, live ? KeyFor::live : KeyFor::run);
      },
      py::arg("columns"), py::arg("live") = false,
      "The key vidkv run (live=False) or vidkv live (live=True: the heading pools over a run's prompts) prints under "
      "its table (experiments/src/column_key.h): a heading and one line per group of `columns` that has an entry "
      "(meaning and which way is better); '' when none has");

  py::class_<PyLayout>(m, "Layout", "Exact bytes of a packed block; effective_bits = 8 * bytes / elements.")
      .def_readonly("bytes", &PyLayout::bytes)
      .def_readonly("elements", &PyLayout::elements)
      .def_readonly("nominal_bits", &PyLayout::nominal_bits)
      .def_readonly("effective_bits", &PyLayout::effective_bits)
      .def_readonly("sections", &PyLayout::sections, "(name, kind, bytes) of every stored section")
      .def("__repr__", [](const PyLayout& l) {
        return "Layout(bytes=" + std::to_string(l.bytes) + ", nominal_bits=" + format_number(l.nominal_bits) +
               ", effective_bits=" + format_number(l.effective_bits) + ")";
      });

  m.def("account_bits", &account_bits_py, py::arg("key_layouts"), py::arg("value_layouts"), py::arg("dtype"),
        "Bits columns of a cache from the Layouts it stores (core/bits_accounting.h, the definition of vidkv run's "
        "columns): {key_/value_nominal_bits, key_/value_effective_bits, nominal_bits, effective_bits, "
        "compression_ratio}; effective = 8 * bytes / elements summed over the layouts, compression_ratio = bits of "
        "`dtype` (the K/V as the model holds them: 'fp16', 'bf16', 'fp32' or the torch names) / effective_bits. "
        "Raises vidkv.Error when either side holds no elements.");

  py::class_<PyCodec>(m, "Codec", "One quantizer pipeline (a YAML block), on float32 arrays [tokens, channels] or [heads, tokens, channels].")
      .def("layout", &PyCodec::layout, py::arg("shape"), "Exact layout for a shape; side data as keyword arguments (without modality= every token counts as context "
           "text: a token protector with visual candidates then protects none, and its bits are those of no "
           "protected token; encode / decode / roundtrip refuse that case).")
      .def("encode", &PyCodec::encode, py::arg("x"), "Packed bytes of x.")
      .def("decode", &PyCodec::decode, py::arg("data"), py::arg("shape"), "Array decoded from packed bytes.")
      .def("roundtrip", &PyCodec::roundtrip, py::arg("x"),
           "decode(encode(x)); keyword side data: modality=[T] uint8, embeddings=[T, hidden], queries=[Hq, Q, D] with "
           "query_positions=[Q], seed=int, layer=int")
      .def_property_readonly("config", &PyCodec::config);

  m.def("cuda_release_pool",
        [] {
          if (const std::string why = cuda_backend_unavailable(); !why.empty())
            throw NotSupportedError("cuda_release_pool(): " + why);
          return without_gil([] { return release_device_pool(); });
        },
        "Returns the memory freed VidKV device buffers left in CUDA's stream-ordered pool to the current device (after "
        "a device synchronize), so torch.cuda.mem_get_info shows what is held; returns the bytes still reserved. "
        "NotSupportedError, saying why, where no CUDA device is visible.");
  py::class_<PyLayerCache>(m, "LayerCache",
                           "One layer's KV cache under a codec and lifecycle (the live hook's building block).")
      .def(py::init<const py::dict&, const py::dict&, std::int64_t, std::int64_t, int, std::uint64_t, const std::string&,
                    const std::string&, std::uintptr_t>(),
           py::arg("codec"), py::arg("lifecycle"), py::arg("heads"), py::arg("channels"), py::arg("layer") = 0,
           py::arg("seed") = 0, py::arg("dtype") = "fp32", py::arg("device") = "cpu", py::arg("stream") = 0,
           "dtype: the model's K/V dtype (fp16, bf16, fp32), which lifecycle residual_dtype data (the default) keeps; "
           "device: cpu or cuda:N (packed blocks and the residual live there); stream: the cudaStream_t as an int "
           "(torch.cuda.current_stream(device).cuda_stream) every call enqueues on. Exact copies of quantized tokens "
           "are not kept (only the full-precision residual window).")
      .def("append", &PyLayerCache::append, py::arg("key"), py::arg("value"), py::arg("modality") = py::none(),
           py::arg("embeddings") = py::none(), "Appends [heads, t, channels] keys and values (numpy, host); the first call is the prefill.")
      .def("append_tensors", &PyLayerCache::append_tensors, py::arg("key"), py::arg("value"), py::arg("modality") = py::none(),
           py::arg("embeddings") = py::none(),
           "Appends torch tensors [heads, t, channels] (float32/float16/bfloat16, contiguous) on the cache's device.")
      .def("materialize", &PyLayerCache::materialize, "(key, value) as the model reads them: [heads, tokens, channels]")
      .def("materialize_into", &PyLayerCache::materialize_into, py::arg("key"), py::arg("value"),
           "Writes the cache as the model reads it into torch tensors [heads, tokens, channels] on the cache's device.")
      .def("memory", &PyLayerCache::memory,
           "{'device', 'packed_bytes', 'residual_bytes', 'total_bytes'}: bytes held now on the cache's device")
      .def_property_readonly("tokens", &PyLayerCache::tokens)
      .def_property_readonly("requantizations", &PyLayerCache::requantizations)
      .def("key_layout", &PyLayerCache::key_layout)
      .def("value_layout", &PyLayerCache::value_layout)
      .def_property_readonly("key_quantized", &PyLayerCache::key_quantized, "tokens [0, n) of the keys live in packed blocks")
      .def_property_readonly("value_quantized", &PyLayerCache::value_quantized, "tokens [0, n) of the values live in packed blocks")
      .def("clone", &PyLayerCache::clone, "An independent copy (same blocks, residual, counters, token metadata)")
      .def("__copy__", &PyLayerCache::clone)
      .def("__deepcopy__", [](const PyLayerCache& c, const py::dict&) { return c.clone(); }, py::arg("memo"))
      .def("crop", &PyLayerCache::crop, py::arg("tokens"),
           "Keeps the first `tokens` tokens; exact, and only allowed when they include every quantized token of both "
           "sides (vidkv.ValueError otherwise)")
      .def("modality", &PyLayerCache::modality, "[tokens] uint8 modality codes of the tokens held")
      .def("embeddings", &PyLayerCache::embeddings, "[tokens, hidden] float32 embeddings of the tokens held, or None")
      .def(py::pickle([](const PyLayerCache& c) { return c.getstate(); },
                       [](py::tuple t) { return PyLayerCache::setstate(t); }));
  m.def("decode_attention_supports", &decode_attention_supports_py, py::arg("codec"), py::arg("head_dim"),
        "'' when decode attention reads the codec's packed formats in place at this head_dim, else the reason");
  m.def("append_rows", &append_rows, py::arg("caches"), py::arg("key"), py::arg("value"),
        "appends row b of key / value [batch, heads, t, head_dim] (torch, contiguous, on the caches' device) to "
        "caches[b], as caches[b].append_tensors(key[b], value[b]) would");
  m.def("decode_attention", &decode_attention_py, py::arg("caches"), py::arg("query"), py::arg("out"), py::arg("query_tokens") = 1,
        "decode attention from the packed caches (one LayerCache per sequence) for query [batch, q_heads, head_dim] "
        "into out (same shape), on the caches' device (attention/decode_attention.h; docs/decode-attention.md); "
        "query_tokens n > 1 (at most 8): query and out [batch, n, q_heads, head_dim] (token-major: transpose the "
        "attention module's [batch, q_heads, n, head_dim] first), the last n tokens of each cache, attending causally");
  py::class_<PyDecodeAttention>(m, "DecodeAttention",
                                "One layer's decode attention kept across decode steps: run() as decode_attention, with "
                                "the tables updated instead of rebuilt and their device memory kept")
      .def(py::init<>())
      .def("run", &PyDecodeAttention::run, py::arg("caches"), py::arg("query"), py::arg("out"), py::arg("query_tokens") = 1,
           "decode attention from the packed caches (one LayerCache per sequence) for query [batch, q_heads, head_dim] "
           "into out (same shape), on the caches' device; the tables of the last run are updated, not rebuilt. query "
           "may be [batch, q_heads, 1, head_dim] and out [batch, 1, q_heads, head_dim] (one token, contiguous: the "
           "attention module's layouts). query_tokens n > 1 (at most 8): query and out [batch, n, q_heads, head_dim] "
           "(contiguous, token-major: the module's query [batch, q_heads, n, head_dim] must be transposed first, "
           "which the shape check cannot tell apart when n == q_heads), the last n tokens of each cache, each "
           "attending causally (token j of a cache of T tokens to its first T - n + 1 + j)")
      .def_property_readonly("tiles", &PyDecodeAttention::tiles, "tiles of the last run's tables (0 before any)")
      .def("uploads", &PyDecodeAttention::uploads,
           "how the tables went up to the device so far: {'whole': n (through pinned memory), 'patched': n (the "
           "changed entries as one kernel launch's parameters), 'unchanged': n}; zeros on cpu")
      // A copy (copy.deepcopy or pickle of a VidKVCache) starts empty: the tables are rebuilt at its first run.
      .def("__deepcopy__", [](const PyDecodeAttention&, const py::dict&) { return PyDecodeAttention(); }, py::arg("memo"))
      .def(py::pickle([](const PyDecodeAttention&) { return py::tuple(); }, [](const py::tuple&) { return PyDecodeAttention(); }));

  py::class_<CpuBenchResult>(m, "CpuBenchResult")
      .def_readonly("shape", &CpuBenchResult::shape)
      .def_readonly("threads", &CpuBenchResult::threads)
      .def_readonly("layers", &CpuBenchResult::layers)
      .def_readonly("layer_fp16_bytes", &CpuBenchResult::layer_fp16_bytes)
      .def_readonly("copy_gbps_one_thread", &CpuBenchResult::copy_gbps_one_thread)
      .def_readonly("copy_gbps_all_threads", &CpuBenchResult::copy_gbps_all_threads)
      .def_property_readonly("rows", [](const CpuBenchResult& r) {
        py::list out;
        for (const auto& row : r.rows) {
          py::dict d;
          d["preset"] = row.preset;
          d["encode_gbps"] = row.encode_gbps;
          d["decode_gbps"] = row.decode_gbps;
          d["encode_decode_gbps"] = row.encode_decode_gbps;
          d["encode_reconstruction_metrics_gbps"] = row.encode_reconstruction_metrics_gbps;
          d["encode_metrics_gbps"] = row.encode_metrics_gbps;
          d["encode_metrics_reference_gbps"] = row.encode_metrics_reference_gbps;
          out.append(d);
        }
        return out;
      })
      .def_property_readonly("fft_rows", [](const CpuBenchResult& r) {
        py::list out;
        for (const auto& f : r.fft_rows) {
          py::dict d;
          d["preset"] = f.preset;
          d["fft_tier"] = cpu_fft_tier_name(f.fft_tier);
          d["key_tier"] = f.key_tier;
          d["value_tier"] = f.value_tier;
          d["encode_gbps"] = f.encode_gbps;
          d["decode_gbps"] = f.decode_gbps;
          d["encode_decode_gbps"] = f.encode_decode_gbps;
          out.append(d);
        }
        return out;
      })
      .def("markdown", [](const CpuBenchResult& r, const std::vector<double>& torch_gbps) {
        return cpu_bench_markdown(r, torch_gbps);
      }, py::arg("torch_gbps") = std::vector<double>{});
  m.def("cpu_bench", [](const std::string& shape, int threads, int layers, int repeats, const std::vector<std::string>& presets,
                        const std::string& implementation, bool cpu_time, const std::vector<std::string>& fft_tiers) {
    CpuBenchOptions o;
    o.spec = bench_trace_spec(shape);
    o.threads = threads;
    o.layers = layers;
    o.repeats = repeats;
    o.presets = presets;
    o.implementation = parse_cpu_implementation(implementation);
    o.cpu_time = cpu_time;
    o.fft_tiers.clear();
    for (const auto& t : fft_tiers) o.fft_tiers.push_back(parse_cpu_fft_tier(t, "cpu_bench(): fft_tiers"));
    return without_gil([&] { return run_cpu_bench(o); });
  }, py::arg("shape") = "", py::arg("threads") = 1, py::arg("layers") = 0, py::arg("repeats") = 3,
        py::arg("presets") = std::vector<std::string>{"kivi-2", "vidkv-k1.5-v1.58"}, py::arg("implementation") = "optimized",
        py::arg("cpu_time") = false, py::arg("fft_tiers") = std::vector<std::string>{"avx512", "fftw-batched", "fftw"},
        "The C++ CPU replay bench of `vidkv bench` (experiments/src/cpu_bench.h); cpu_time: time by the process's CPU\n"
        "time instead of the wall clock (`--clock cpu`); fft_tiers: the channel FFT tiers timed against each other\n"
        "(`--fft-tiers`; [] for none).");
  py::class_<CudaBenchResult>(m, "CudaBenchResult")
      .def_readonly("device", &CudaBenchResult::device)
      .def_readonly("copy_gbps", &CudaBenchResult::copy_gbps)
      .def_readonly("layers", &CudaBenchResult::layers)
      .def_readonly("heads", &CudaBenchResult::heads)
      .def_readonly("head_dim", &CudaBenchResult::head_dim)
      .def_readonly("repeats", &CudaBenchResult::repeats)
      .def_property_readonly("rows", [](const CudaBenchResult& r) {
        py::list out;
        for (const auto& row : r.rows) {
          py::dict d;
          d["preset"] = row.preset;
          d["tokens"] = row.tokens;
          d["encode_gbps"] = row.encode_gbps;
          d["decode_gbps"] = row.decode_gbps;
          d["encode_decode_gbps"] = row.encode_decode_gbps;
          d["replay_gbps"] = row.replay_gbps;
          d["tiers"] = row.tiers;
          d["skipped"] = row.skipped;
          out.append(d);
        }
        return out;
      })
      .def("markdown", [](const CudaBenchResult& r, const std::vector<double>& torch_gbps) {
        return cuda_bench_markdown(r, torch_gbps);
      }, py::arg("torch_gbps") = std::vector<double>{});
  m.def("cuda_bench", [](const std::vector<std::int64_t>& tokens, int layers, int heads, int head_dim, int repeats,
                         const std::vector<std::string>& presets) {
    CudaBenchOptions o;
    o.tokens = tokens;
    o.layers = layers;
    o.heads = heads;
    o.head_dim = head_dim;
    o.repeats = repeats;
    o.presets = presets;
    return without_gil([&] { return run_cuda_bench(o); });
  }, py::arg("tokens") = std::vector<std::int64_t>{8192, 32768, 65536}, py::arg("layers") = 28, py::arg("heads") = 4,
        py::arg("head_dim") = 128, py::arg("repeats") = 10,
        py::arg("presets") = std::vector<std::string>{"kivi-2", "vidkv-k1.5-v1.58"},
        "The C++ CUDA bench of `vidkv bench --backend cuda` (experiments/src/cuda_bench.h).");
  m.def("synthetic_layer", [](const std::string& shape, int layer) {
    const SyntheticTrace trace(bench_trace_spec(shape));
    LayerData d = trace.layer(layer);
    auto array = [&](std::vector<float>& v) {
      py::array_t<float> a({d.heads, d.tokens, d.dim});
      std::copy(v.begin(), v.end(), a.mutable_data());
      return a;
    };
    return py::make_tuple(array(d.key), array(d.value));
  }, py::arg("shape"), py::arg("layer"),
        "Keys and values [heads, tokens, dim] float32 of one layer of the bench's synthetic trace.");
  m.def("codec", &make_codec, py::arg("config"),
        "Builds a codec from a dict with the keys of a YAML block: {'type': 'uniform', 'bits': 2, ...} gives one "
        "Codec; {'preset': NAME, 'part': 'key'|'value'} one side of a preset; {'preset': NAME} or {'key': ..., "
        "'value': ...} a dict {'key': Codec, 'value': Codec}.");
  // Python-defined plugins (python_quantizer.h): into this module's registry, or (from the vidkv executable, which
  // passes its registry as a capsule named "vidkv.PluginRegistry") into the registry of a `vidkv run`.
  m.def("register_plugin", [](const py::object& cls) {
    const std::string origin = "python:" + py::str(cls.attr("__module__")).cast<std::string>() + "." +
                               py::str(cls.attr("__qualname__")).cast<std::string>();
    register_python_quantizer(module_registry(), cls, origin);
  }, py::arg("cls"), "Registers a Python quantizer class (name, params, layout, encode, decode) for vidkv.codec and vidkv.plan.");
  m.def("load_plugins", [](const std::string& path) { return register_python_plugin_file(module_registry(), path); },
        py::arg("path"), "Imports a Python file and registers the classes of its VIDKV_PLUGINS list; returns their number.");
  m.def("_register_plugin_file_into", [](const py::capsule& registry, const std::string& path) {
    if (!registry.name() || std::string(registry.name()) != "vidkv.PluginRegistry")
      throw ConfigError("_register_plugin_file_into: expected a capsule named vidkv.PluginRegistry");
    return register_python_plugin_file(*static_cast<PluginRegistry*>(registry.get_pointer()), path);
  }, py::arg("registry"), py::arg("path"));
  m.def("plan", &plan_to_python, py::arg("file"), py::arg("overrides") = std::vector<std::string>{},
        "The validated plan of an experiment YAML file (runs with resolved codec and lifecycle blocks).");
  m.def("plugins", [] {
    std::vector<std::string> names;
    for (const auto& p : module_registry().list()) names.push_back(p.name);
    for (const auto& p : list_presets()) names.push_back(p.name);
    return names;
  }, "Names of every registered plugin and preset.");
  m.def("codec_lifecycle", [](const py::dict& codec) -> py::object {
    ConfigNode lifecycle;
    resolved_codec(codec, &lifecycle);
    return lifecycle.is_map() ? to_python(lifecycle) : py::object(py::none());
  }, py::arg("codec"),
        "The lifecycle block of the preset a codec dict names ({'preset': NAME, ...}), as an experiment YAML's run "
        "takes it when it sets none; None for a codec without a preset or a preset without one. ConfigError for an "
        "unknown preset.");
  m.def("presets", [] {
    std::vector<std::string> names;
    for (const auto& p : list_presets()) names.push_back(p.name);
    return names;
  }, "Names of every preset.");
  m.def("describe", [](const std::string& name) {
    const PluginInfo* info = nullptr;
    for (PluginFamily f : {PluginFamily::quantizer, PluginFamily::channel_selector, PluginFamily::token_protector})
      if (!info) info = module_registry().find(f, name);
    if (!info) throw ConfigError("unknown plugin '" + name + "'");
    py::list params;
    for (const auto& p : info->params) {
      py::dict d;
      d["name"] = p.name;
      d["type"] = param_type_name(p.type);
      d["default"] = p.default_text;
      d["min"] = p.min;
      d["max"] = p.max;
      d["choices"] = p.choices;
      d["unit"] = p.unit;
      d["description"] = p.description;
      params.append(d);
    }
    py::dict out;
    out["name"] = info->name;
    out["family"] = plugin_family_name(info->family);
    out["summary"] = info->summary;
    out["params"] = params;
    return out;
  }, py::arg("name"), "A plugin's family, summary and parameters.");
  m.def("run_experiment", [](const std::string& file, const std::vector<std::string>& overrides, const std::string& out_dir,
                             int jobs) {
    const ExperimentPlan plan = plan_experiment(file, overrides, module_registry());
    RunOptions options;
    options.out_dir = out_dir;
    options.overrides = overrides;
    options.jobs = jobs;
    options.progress = false;
    options.command_line = "_vidkv.run_experiment";
    py::gil_scoped_release release;
    return run_experiment(plan, options, module_registry()).dir;
  }, py::arg("file"), py::arg("overrides") = std::vector<std::string>{}, py::arg("out_dir") = std::string{},
     py::arg("jobs") = 1,
     "Runs a trace experiment like `vidkv run FILE --set ... --out OUT_DIR --jobs JOBS` (no progress bar) and returns "
     "the results folder.");
}
