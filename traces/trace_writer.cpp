// TraceWriter (atomic create via PATH.partial + rename) and append_decode_steps (see trace_writer.h).
#include "vidkv/traces/trace_writer.h"

#include <algorithm>
#include <ctime>
#include <filesystem>

#include "vidkv/core/error.h"
#include "vidkv/traces/hdf5_util.h"
#include "vidkv/traces/partial_files.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_schema.h"

namespace vidkv {

namespace ts = trace_schema;
namespace fs = std::filesystem;

namespace {

// Per-token 1-D datasets are chunked by this many tokens (16 KB of int32).
constexpr hsize_t kTokenChunk = 4096;
// Embedding chunks hold about this many elements (256 KB of fp16), whole rows each.
constexpr hsize_t kEmbeddingChunkElements = 131072;

const char* trace_dtype_text(DType t) { return t == DType::f16 ? "float16" : t == DType::bf16 ? "bfloat16" : "float32"; }

std::string utc_now_iso8601() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[32];
  std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return text;
}

// Values of `src` (any dtype) as `dst_type` elements: the raw bytes when the types agree, else converted.
std::vector<std::uint8_t> to_storage(const void* src, DType src_type, std::size_t n, DType dst_type) {
  std::vector<std::uint8_t> out(n * static_cast<std::size_t>(dtype_size(dst_type)));
  if (src_type == dst_type) {
    std::copy_n(static_cast<const std::uint8_t*>(src), out.size(), out.data());
  } else {
    for (std::size_t i = 0; i < n; ++i) store_from_float(out.data(), dst_type, i, load_as_float(src, src_type, i));
  }
  return out;
}

// Finds the first non-finite element of a float buffer; -1 when all are finite.
std::int64_t first_non_finite(const void* data, DType t, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    const float v = load_as_float(data, t, i);
    if ((float_bits(v) & 0x7f800000u) == 0x7f800000u) return static_cast<std::int64_t>(i);
  }
  return -1;
}

void check_metadata(const TraceMetadata& m, const std::string& path) {
  auto positive = [&](std::int64_t v, const char* name) {
    if (v <= 0) VIDKV_THROW(ConfigError, path, ": trace metadata ", name, " must be positive, got ", v);
  };
  positive(m.num_layers, "num_layers");
  positive(m.num_kv_heads, "num_kv_heads");
  positive(m.num_query_heads, "num_query_heads");
  positive(m.head_dim, "head_dim");
  positive(m.hidden_size, "hidden_size");
  if (m.num_query_heads % m.num_kv_heads != 0)
    VIDKV_THROW(ConfigError, path, ": num_query_heads ", m.num_query_heads, " is not a multiple of num_kv_heads ",
                m.num_kv_heads);
  if (m.source != "model" && m.source != "synthetic")
    VIDKV_THROW(ConfigError, path, ": source must be 'model' or 'synthetic', got '", m.source, "'");
  if (m.rope != "post" && m.rope != "pre") VIDKV_THROW(ConfigError, path, ": rope must be 'post' or 'pre', got '", m.rope, "'");
  for (const auto& [name, value] : m.provenance) {
    (void)value;
    if (name == ts::kAttrSchema || name == ts::kAttrSchemaVersion || name == ts::kAttrProducer ||
        name == ts::kAttrCreatedAt || name == ts::kAttrSource || name == ts::kAttrModelId ||
        name == ts::kAttrModelFamily || name == ts::kAttrDtype)
      VIDKV_THROW(ConfigError, path, ": provenance attribute '", name, "' clashes with a required root attribute");
  }
}

void check_token_arrays(const TraceTokens& t, const std::vector<std::int32_t>& ids, const std::string& where) {
  const std::size_t n = t.modality.size();
  auto same = [&](std::size_t m, const char* name) {
    if (m != n) VIDKV_THROW(ShapeError, where, ": ", name, " has ", m, " entries but modality has ", n);
  };
  same(t.position.size(), "position");
  same(t.frame.size(), "frame");
  same(t.patch_row.size(), "patch_row");
  same(t.patch_col.size(), "patch_col");
  if (!ids.empty()) same(ids.size(), "ids");
  if (t.hidden > 0 && t.embeddings.size() != n * static_cast<std::size_t>(t.hidden))
    VIDKV_THROW(ShapeError, where, ": embeddings have ", t.embeddings.size(), " values, expected tokens x hidden = ", n,
                " x ", t.hidden);
}

// Writes the per-token arrays of `t` at token offset `offset` of existing datasets sized offset + n.
struct TokenDatasets {
  h5::Handle modality, position, frame, patch, ids, embeddings;
};

void write_token_rows(TokenDatasets& ds, const TraceTokens& t, const std::vector<std::int32_t>& ids, hsize_t offset,
                      DType embedding_type, const std::string& path) {
  const hsize_t n = static_cast<hsize_t>(t.modality.size());
  std::vector<std::uint8_t> modality(n);
  for (hsize_t i = 0; i < n; ++i) modality[i] = static_cast<std::uint8_t>(t.modality[i]);
  h5::write_hyperslab(ds.modality.get(), H5T_NATIVE_UINT8, {offset}, {n}, modality.data(), {path, ts::kTokensModality});
  h5::write_hyperslab(ds.position.get(), H5T_NATIVE_INT32, {offset}, {n}, t.position.data(), {path, ts::kTokensPosition});
  h5::write_hyperslab(ds.frame.get(), H5T_NATIVE_INT32, {offset}, {n}, t.frame.data(), {path, ts::kTokensFrame});
  std::vector<std::int16_t> patch(2 * n);
  for (hsize_t i = 0; i < n; ++i) {
    patch[2 * i] = t.patch_row[i];
    patch[2 * i + 1] = t.patch_col[i];
  }
  h5::write_hyperslab(ds.patch.get(), H5T_NATIVE_INT16, {offset, 0}, {n, 2}, patch.data(), {path, ts::kTokensPatch});
  if (ds.ids.valid())
    h5::write_hyperslab(ds.ids.get(), H5T_NATIVE_INT32, {offset}, {n}, ids.data(), {path, ts::kTokensIds});
  if (ds.embeddings.valid()) {
    const auto hidden = static_cast<hsize_t>(t.hidden);
    const auto bytes = to_storage(t.embeddings.data(), DType::f32, t.embeddings.size(), embedding_type);
    h5::Handle mem = h5::storage_type(embedding_type);
    h5::write_hyperslab(ds.embeddings.get(), mem.get(), {offset, 0}, {n, hidden}, bytes.data(), {path, ts::kEmbeddings});
  }
}

// Removes a file when destroyed unless released.
class RemoveOnFailure {
 public:
  explicit RemoveOnFailure(std::string path) : path_(std::move(path)) {}
  ~RemoveOnFailure() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove(path_, ec);
    }
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

void rename_into_place(const std::string& partial, const std::string& path) {
  std::error_code ec;
  fs::rename(partial, path, ec);
  if (ec) VIDKV_THROW(IoError, path, ": cannot rename ", partial, " into place: ", ec.message());
}

}  // namespace

struct TraceWriter::Impl {
  std::string path;
  std::string partial;
  TraceMetadata meta;
  TraceWriterOptions options;
  h5::Handle file;
  std::int64_t tokens = -1;  // T once write_tokens ran
  std::int64_t queries = 0;  // Q once write_query_positions ran
  std::vector<bool> layer_written;
  bool finished = false;

  h5::Where at(const std::string& object) const { return h5::Where{partial, object}; }
};

TraceWriter::TraceWriter(const std::string& path, const TraceMetadata& metadata, const TraceWriterOptions& options)
    : impl_(std::make_unique<Impl>()) {
  Impl& im = *impl_;
  im.path = path;
  im.partial = path + ".partial";
  im.meta = metadata;
  im.options = options;
  if (im.meta.created_at.empty()) im.meta.created_at = utc_now_iso8601();
  check_metadata(im.meta, path);
  if (options.chunk_tokens <= 0) VIDKV_THROW(ConfigError, path, ": chunk_tokens must be positive");
  im.layer_written.assign(static_cast<std::size_t>(im.meta.num_layers), false);

  h5::silence_hdf5_errors();
  register_partial_file(im.partial);  // removed if the process is interrupted (partial_files.h)
  hid_t id = H5Fcreate(im.partial.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (id < 0) {
    const std::string reason = h5::last_hdf5_error();
    VIDKV_THROW(IoError, path, ": cannot create ", im.partial, " (does the directory exist and is it writable?)",
                reason.empty() ? "" : " (HDF5: " + reason + ")");
  }
  im.file = h5::Handle(id, H5Fclose);

  const auto root = im.at("/");
  const hid_t f = im.file.get();
  h5::write_string_attr(f, ts::kAttrSchema, ts::kSchemaName, root);
  h5::write_int32_attr(f, ts::kAttrSchemaVersion, ts::kSchemaVersion, root);
  h5::write_string_attr(f, ts::kAttrProducer, im.meta.producer, root);
  h5::write_string_attr(f, ts::kAttrCreatedAt, im.meta.created_at, root);
  h5::write_string_attr(f, ts::kAttrSource, im.meta.source, root);
  h5::write_string_attr(f, ts::kAttrModelId, im.meta.model_id, root);
  h5::write_string_attr(f, ts::kAttrModelFamily, im.meta.model_family, root);
  h5::write_string_attr(f, ts::kAttrDtype, trace_dtype_text(im.meta.dtype), root);
  for (const auto& [name, value] : im.meta.provenance) h5::write_string_attr(f, name, value, root);

  const auto mw = im.at(ts::kModelGroup);
  h5::Handle model(H5Gcreate2(f, ts::kModelGroup, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!model.valid()) VIDKV_THROW(IoError, mw.str(), ": cannot create group");
  h5::write_int32_attr(model.get(), ts::kAttrNumLayers, im.meta.num_layers, mw);
  h5::write_int32_attr(model.get(), ts::kAttrNumKvHeads, im.meta.num_kv_heads, mw);
  h5::write_int32_attr(model.get(), ts::kAttrNumQueryHeads, im.meta.num_query_heads, mw);
  h5::write_int32_attr(model.get(), ts::kAttrHeadDim, im.meta.head_dim, mw);
  h5::write_int32_attr(model.get(), ts::kAttrHiddenSize, static_cast<std::int32_t>(im.meta.hidden_size), mw);
  h5::write_string_attr(model.get(), ts::kAttrRope, im.meta.rope, mw);
  if (const auto& r = im.meta.rotary) {
    h5::write_double_attr(model.get(), ts::kAttrRopeTheta, r->theta, mw);
    h5::write_string_attr(model.get(), ts::kAttrRopeScaling, r->scaling == RotaryScaling::linear ? "linear" : "none", mw);
    h5::write_double_attr(model.get(), ts::kAttrRopeScalingFactor, r->factor, mw);
    h5::write_string_attr(model.get(), ts::kAttrRopePairing, r->pairing == RotaryPairing::half ? "half" : "interleaved", mw);
  }
  for (const char* g : {"/tokens", "/layers"}) {
    h5::Handle group(H5Gcreate2(f, g, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
    if (!group.valid()) VIDKV_THROW(IoError, im.at(g).str(), ": cannot create group");
  }
}

TraceWriter::~TraceWriter() {
  if (!impl_) return;
  unregister_partial_file(impl_->partial);
  if (impl_->finished) return;
  impl_->file.reset();
  std::error_code ec;
  fs::remove(impl_->partial, ec);
}

const std::string& TraceWriter::path() const { return impl_->path; }

void TraceWriter::write_tokens(const TraceTokens& tokens, const std::vector<std::int32_t>& ids) {
  Impl& im = *impl_;
  if (im.tokens >= 0) VIDKV_THROW(ConfigError, im.path, ": tokens were already written");
  check_token_arrays(tokens, ids, im.path + ": " + std::string("/tokens"));
  const auto n = static_cast<hsize_t>(tokens.size());
  if (n == 0) VIDKV_THROW(ShapeError, im.path, ": /tokens: a trace needs at least one token");
  if (tokens.hidden > 0 && tokens.hidden != im.meta.hidden_size)
    VIDKV_THROW(ShapeError, im.path, ": /embeddings: width ", tokens.hidden, " differs from hidden_size ", im.meta.hidden_size);
  const hid_t f = im.file.get();
  const hsize_t chunk = std::min(n, kTokenChunk);
  const int level = im.options.deflate_level;
  TokenDatasets ds;
  ds.modality = h5::create_extendible(f, ts::kTokensModality, H5T_STD_U8LE, {n}, {chunk}, 0, level, im.at(ts::kTokensModality));
  ds.position = h5::create_extendible(f, ts::kTokensPosition, H5T_STD_I32LE, {n}, {chunk}, 0, level, im.at(ts::kTokensPosition));
  ds.frame = h5::create_extendible(f, ts::kTokensFrame, H5T_STD_I32LE, {n}, {chunk}, 0, level, im.at(ts::kTokensFrame));
  ds.patch = h5::create_extendible(f, ts::kTokensPatch, H5T_STD_I16LE, {n, 2}, {chunk, 2}, 0, level, im.at(ts::kTokensPatch));
  if (!ids.empty())
    ds.ids = h5::create_extendible(f, ts::kTokensIds, H5T_STD_I32LE, {n}, {chunk}, 0, level, im.at(ts::kTokensIds));
  const DType embedding_type = im.meta.dtype == DType::f32 ? DType::f32 : DType::f16;
  if (tokens.hidden > 0) {
    const std::int64_t bad = first_non_finite(tokens.embeddings.data(), DType::f32, tokens.embeddings.size());
    if (bad >= 0)
      VIDKV_THROW(IoError, im.path, ": ", ts::kEmbeddings, ": non-finite value at [token ", bad / tokens.hidden, ", hidden ",
                  bad % tokens.hidden, "]");
    const auto hidden = static_cast<hsize_t>(tokens.hidden);
    const hsize_t rows = std::clamp<hsize_t>(kEmbeddingChunkElements / hidden, 1, n);
    h5::Handle type = h5::storage_type(embedding_type);
    ds.embeddings = h5::create_extendible(f, ts::kEmbeddings, type.get(), {n, hidden}, {rows, hidden}, 0, level,
                                          im.at(ts::kEmbeddings));
  }
  write_token_rows(ds, tokens, ids, 0, embedding_type, im.partial);
  im.tokens = static_cast<std::int64_t>(n);
}

void TraceWriter::write_query_positions(const std::vector<std::int32_t>& positions) {
  Impl& im = *impl_;
  if (im.tokens < 0) VIDKV_THROW(ConfigError, im.path, ": write_tokens must come before write_query_positions");
  if (im.queries > 0) VIDKV_THROW(ConfigError, im.path, ": query positions were already written");
  if (positions.empty()) VIDKV_THROW(ShapeError, im.path, ": ", ts::kQueryPositions, ": no positions given");
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] >= im.tokens)
      VIDKV_THROW(ShapeError, im.path, ": ", ts::kQueryPositions, ": entry ", i, " is token index ", positions[i],
                  ", outside 0..", im.tokens - 1);
  }
  const hid_t f = im.file.get();
  h5::Handle group(H5Gcreate2(f, "/queries", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!group.valid()) VIDKV_THROW(IoError, im.at("/queries").str(), ": cannot create group");
  const auto q = static_cast<hsize_t>(positions.size());
  h5::Handle ds = h5::create_extendible(f, ts::kQueryPositions, H5T_STD_I32LE, {q}, {std::min(q, kTokenChunk)}, 0,
                                        im.options.deflate_level, im.at(ts::kQueryPositions));
  h5::write_hyperslab(ds.get(), H5T_NATIVE_INT32, {0}, {q}, positions.data(), im.at(ts::kQueryPositions));
  im.queries = static_cast<std::int64_t>(q);
}

void TraceWriter::write_layer(int layer, const TensorView& key, const TensorView& value, const TensorView* query) {
  Impl& im = *impl_;
  const TraceMetadata& m = im.meta;
  if (im.tokens < 0) VIDKV_THROW(ConfigError, im.path, ": write_tokens must come before write_layer");
  if (layer < 0 || layer >= m.num_layers)
    VIDKV_THROW(ConfigError, im.path, ": layer ", layer, " outside 0..", m.num_layers - 1);
  if (im.layer_written[static_cast<std::size_t>(layer)])
    VIDKV_THROW(ConfigError, im.path, ": layer ", layer, " was already written");
  const std::string group = h5::layer_group_name(layer);
  key.require_shape({m.num_kv_heads, im.tokens, m.head_dim}, im.path + ": " + group + "/key");
  value.require_shape({m.num_kv_heads, im.tokens, m.head_dim}, im.path + ": " + group + "/value");
  if (query) {
    if (im.queries == 0)
      VIDKV_THROW(ConfigError, im.path, ": ", group, "/query: write_query_positions must come before query states");
    query->require_shape({m.num_query_heads, im.queries, m.head_dim}, im.path + ": " + group + "/query");
  }
  for (const auto& [name, view] : {std::pair<const char*, const TensorView*>{"key", &key}, {"value", &value}, {"query", query}}) {
    if (!view) continue;
    if (view->device != Device::cpu) VIDKV_THROW(NotSupportedError, im.path, ": ", group, "/", name, ": tensor is not on the CPU");
    const std::int64_t bad = first_non_finite(view->data, view->dtype, static_cast<std::size_t>(view->numel()));
    if (bad >= 0) {
      const std::int64_t rows = view->shape[1], dim = view->shape[2];
      VIDKV_THROW(IoError, im.path, ": ", group, "/", name, ": refusing to write non-finite value at [head ", bad / (rows * dim),
                  ", token ", (bad / dim) % rows, ", dim ", bad % dim, "]");
    }
  }

  const hid_t f = im.file.get();
  h5::Handle g(H5Gcreate2(f, group.c_str(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT), H5Gclose);
  if (!g.valid()) VIDKV_THROW(IoError, im.at(group).str(), ": cannot create group");
  h5::Handle type = h5::storage_type(m.dtype);
  auto write = [&](const char* name, const TensorView& view, std::int64_t rows) {
    const std::string object = group + "/" + name;
    const std::vector<hsize_t> extent = {static_cast<hsize_t>(view.shape[0]), static_cast<hsize_t>(rows),
                                         static_cast<hsize_t>(m.head_dim)};
    const hsize_t chunk_rows = static_cast<hsize_t>(std::min<std::int64_t>(im.options.chunk_tokens, rows));
    h5::Handle ds = h5::create_extendible(f, object, type.get(), extent, {1, chunk_rows, extent[2]}, 1,
                                          im.options.deflate_level, im.at(object));
    const auto bytes = to_storage(view.data, view.dtype, static_cast<std::size_t>(view.numel()), m.dtype);
    h5::write_hyperslab(ds.get(), type.get(), {0, 0, 0}, extent, bytes.data(), im.at(object));
  };
  write("key", key, im.tokens);
  write("value", value, im.tokens);
  if (query) write("query", *query, im.queries);
  im.layer_written[static_cast<std::size_t>(layer)] = true;
}

void TraceWriter::write_layer(int layer, const std::vector<float>& key, const std::vector<float>& value,
                              const std::vector<float>* query) {
  const Impl& im = *impl_;
  const std::int64_t kv = im.meta.num_kv_heads, d = im.meta.head_dim;
  const std::int64_t t = im.tokens < 0 ? 0 : im.tokens;
  auto view_of = [&](const std::vector<float>& v, std::int64_t heads, std::int64_t rows, const char* name) {
    if (static_cast<std::int64_t>(v.size()) != heads * rows * d)
      VIDKV_THROW(ShapeError, im.path, ": ", h5::layer_group_name(layer), "/", name, ": got ", v.size(), " values, expected ",
                  heads, " x ", rows, " x ", d, " = ", heads * rows * d);
    return TensorView{const_cast<float*>(v.data()), DType::f32, Device::cpu, {heads, rows, d}};
  };
  if (im.tokens < 0) VIDKV_THROW(ConfigError, im.path, ": write_tokens must come before write_layer");
  const TensorView k = view_of(key, kv, t, "key");
  const TensorView v = view_of(value, kv, t, "value");
  if (query) {
    const TensorView q = view_of(*query, im.meta.num_query_heads, im.queries, "query");
    write_layer(layer, k, v, &q);
  } else {
    write_layer(layer, k, v, nullptr);
  }
}

void TraceWriter::finish() {
  Impl& im = *impl_;
  if (im.finished) return;
  if (im.tokens < 0) VIDKV_THROW(ConfigError, im.path, ": finish() before write_tokens");
  for (std::size_t l = 0; l < im.layer_written.size(); ++l)
    if (!im.layer_written[l]) VIDKV_THROW(ConfigError, im.path, ": finish() before layer ", l, " was written");
  if (H5Fflush(im.file.get(), H5F_SCOPE_GLOBAL) < 0) VIDKV_THROW(IoError, im.partial, ": flush failed");
  im.file.reset();
  rename_into_place(im.partial, im.path);
  unregister_partial_file(im.partial);
  im.finished = true;
}

void append_decode_steps(const std::string& path, const DecodeSteps& steps) {
  TraceInfo info;
  hsize_t embedding_cols = 0;
  {
    TraceReader reader(path);  // validates the root attributes and /model
    info = reader.info();
  }
  const auto n = static_cast<hsize_t>(steps.tokens.size());
  const std::string where = path + ": append_decode_steps";
  if (n == 0) VIDKV_THROW(ShapeError, where, ": no tokens to append");
  check_token_arrays(steps.tokens, steps.ids, where);
  if (info.has_token_ids != !steps.ids.empty())
    VIDKV_THROW(ShapeError, where, ": the trace ", info.has_token_ids ? "has" : "has no", " /tokens/ids but ",
                steps.ids.size(), " ids were given");
  if (info.has_embeddings != (steps.tokens.hidden > 0))
    VIDKV_THROW(ShapeError, where, ": the trace ", info.has_embeddings ? "has" : "has no", " /embeddings but the steps ",
                steps.tokens.hidden > 0 ? "carry" : "do not carry", " embeddings");
  if (info.has_embeddings) {
    if (steps.tokens.hidden != info.hidden_size)
      VIDKV_THROW(ShapeError, where, ": embeddings have width ", steps.tokens.hidden, ", hidden_size is ", info.hidden_size);
    embedding_cols = static_cast<hsize_t>(info.hidden_size);
  }
  if (steps.key.size() != static_cast<std::size_t>(info.num_layers) || steps.value.size() != steps.key.size())
    VIDKV_THROW(ShapeError, where, ": need key and value for all ", info.num_layers, " layers, got ", steps.key.size(), " and ",
                steps.value.size());
  const std::size_t per_layer = static_cast<std::size_t>(info.num_kv_heads) * n * static_cast<std::size_t>(info.head_dim);
  for (int l = 0; l < info.num_layers; ++l) {
    for (const auto* v : {&steps.key[static_cast<std::size_t>(l)], &steps.value[static_cast<std::size_t>(l)]}) {
      const char* name = v == &steps.key[static_cast<std::size_t>(l)] ? "key" : "value";
      if (v->size() != per_layer)
        VIDKV_THROW(ShapeError, path, ": ", h5::layer_group_name(l), "/", name, ": ", v->size(), " values to append, expected ",
                    info.num_kv_heads, " x ", n, " x ", info.head_dim);
      if (first_non_finite(v->data(), DType::f32, v->size()) >= 0)
        VIDKV_THROW(IoError, path, ": ", h5::layer_group_name(l), "/", name, ": refusing to append non-finite values");
    }
  }

  const std::string partial = path + ".partial";
  std::error_code ec;
  fs::copy_file(path, partial, fs::copy_options::overwrite_existing, ec);
  if (ec) VIDKV_THROW(IoError, path, ": cannot copy to ", partial, ": ", ec.message());
  RemoveOnFailure cleanup(partial);
  register_partial_file(partial);
  struct Unregister {
    const std::string& p;
    ~Unregister() { unregister_partial_file(p); }
  } unregister{partial};
  {
    h5::silence_hdf5_errors();
    h5::Handle file(H5Fopen(partial.c_str(), H5F_ACC_RDWR, H5P_DEFAULT), H5Fclose);
    if (!file.valid()) VIDKV_THROW(IoError, partial, ": cannot open for appending (HDF5: ", h5::last_hdf5_error(), ")");
    const hid_t f = file.get();
    const auto t0 = static_cast<hsize_t>(info.tokens);
    auto grow = [&](const char* name, std::vector<hsize_t> extent) {
      h5::Where w{partial, name};
      h5::Handle ds = h5::open_dataset(f, w);
      h5::set_extent(ds.get(), extent, w);
      return ds;
    };
    TokenDatasets ds;
    ds.modality = grow(ts::kTokensModality, {t0 + n});
    ds.position = grow(ts::kTokensPosition, {t0 + n});
    ds.frame = grow(ts::kTokensFrame, {t0 + n});
    ds.patch = grow(ts::kTokensPatch, {t0 + n, 2});
    if (info.has_token_ids) ds.ids = grow(ts::kTokensIds, {t0 + n});
    DType embedding_type = DType::f16;
    if (info.has_embeddings) {
      ds.embeddings = grow(ts::kEmbeddings, {t0 + n, embedding_cols});
      embedding_type = h5::stored_type(ds.embeddings.get(), {partial, ts::kEmbeddings}) == h5::StoredType::f32 ? DType::f32
                                                                                                              : DType::f16;
    }
    write_token_rows(ds, steps.tokens, steps.ids, t0, embedding_type, partial);

    h5::Handle type = h5::storage_type(info.dtype);
    const auto kv = static_cast<hsize_t>(info.num_kv_heads), d = static_cast<hsize_t>(info.head_dim);
    for (int l = 0; l < info.num_layers; ++l) {
      const std::string group = h5::layer_group_name(l);
      for (const char* name : {"key", "value"}) {
        const std::string object = group + "/" + name;
        const auto& src = name[0] == 'k' ? steps.key[static_cast<std::size_t>(l)] : steps.value[static_cast<std::size_t>(l)];
        h5::Handle layer_ds = grow(object.c_str(), {kv, t0 + n, d});
        const auto bytes = to_storage(src.data(), DType::f32, src.size(), info.dtype);
        h5::write_hyperslab(layer_ds.get(), type.get(), {0, t0, 0}, {kv, n, d}, bytes.data(), {partial, object});
      }
    }
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) VIDKV_THROW(IoError, partial, ": flush failed");
  }
  rename_into_place(partial, path);
  cleanup.release();
}

}  // namespace vidkv
