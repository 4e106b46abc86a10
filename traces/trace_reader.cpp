// TraceReader: opens a schema-v1 trace, validates it and streams one layer at a time (see trace_reader.h).
#include "vidkv/traces/trace_reader.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>

#include <sys/stat.h>

#include "vidkv/core/error.h"
#include "vidkv/core/name_list.h"
#include "vidkv/traces/hdf5_util.h"
#include "vidkv/traces/trace_isolation.h"
#include "vidkv/traces/trace_read_policy.h"
#include "vidkv/traces/trace_schema.h"

namespace vidkv {

namespace ts = trace_schema;

namespace {

// Elements converted per HDF5 read: bounds the scratch buffer (512 KB of 16-bit values) independently of T.
constexpr std::int64_t kReadBlockElements = std::int64_t{1} << 18;

DType parse_trace_dtype(const std::string& text, const std::string& where) {
  if (text == "float16") return DType::f16;
  if (text == "bfloat16") return DType::bf16;
  if (text == "float32") return DType::f32;
  VIDKV_THROW(IoError, where, ": attribute 'dtype' is '", text, "', expected float16, bfloat16 or float32");
}

const char* trace_dtype_text(DType t) { return t == DType::f16 ? "float16" : t == DType::bf16 ? "bfloat16" : "float32"; }

// The stored element type that `dtype` requires for key/value/query datasets.
h5::StoredType expected_storage(DType t) {
  return t == DType::f16 ? h5::StoredType::f16 : t == DType::bf16 ? h5::StoredType::u16 : h5::StoredType::f32;
}

// Whether a dataset stored as `stored` holds elements of trace dtype `t`. bf16 raw bits may also come as int16
// (torch's `.view(torch.int16)`, since numpy has no bfloat16); the bits are the same.
bool storage_matches(h5::StoredType stored, DType t) {
  return stored == expected_storage(t) || (t == DType::bf16 && stored == h5::StoredType::i16);
}

// Axis names and where each expected extent comes from, for messages.
const std::vector<std::string> kKvAxes = {"kv_head", "token", "dim"};
const std::vector<std::string> kKvSources = {"/model num_kv_heads", trace_schema::kTokensModality, "/model head_dim"};
const std::vector<std::string> kQueryAxes = {"query_head", "query", "dim"};
const std::vector<std::string> kQuerySources = {"/model num_query_heads", trace_schema::kQueryPositions, "/model head_dim"};
const std::vector<std::string> kEmbeddingAxes = {"token", "hidden"};
const std::vector<std::string> kEmbeddingSources = {trace_schema::kTokensModality, "/model hidden_size"};

std::string non_finite_text(float v) { return std::isnan(v) ? "nan" : (v > 0 ? "inf" : "-inf"); }

const std::set<std::string>& required_root_attrs() {
  static const std::set<std::string> names = {ts::kAttrSchema,    ts::kAttrSchemaVersion, ts::kAttrProducer,
                                               ts::kAttrCreatedAt, ts::kAttrSource,        ts::kAttrModelId,
                                               ts::kAttrModelFamily, ts::kAttrDtype};
  return names;
}

herr_t collect_attr_name(hid_t, const char* name, const H5A_info_t*, void* client) {
  static_cast<std::vector<std::string>*>(client)->push_back(name);
  return 0;
}

}  // namespace

struct TraceReader::Impl {
  std::string path;
  h5::Handle file;
  TraceInfo info;
  TraceReadPolicy policy;
  std::uint64_t file_bytes = 0;

  h5::Where at(const std::string& object) const { return h5::Where{path, object}; }

  void open();
  void open_file();
  void check_structure() const;
  // open_dataset + check_dataset_storage (external storage, filters, declared vs stored bytes).
  h5::Handle open_checked(const std::string& name) const;
  bool exists(const std::string& name) const { return h5::link_exists(file.get(), name, path, policy.allow_external_data); }
  // IoError when reading `bytes` (as fp32) would pass the memory budget.
  void check_budget(double bytes, const std::string& what) const;
  void read_root_attrs();
  void read_model();
  std::int64_t checked_length(const std::string& name, h5::StoredType type, int rank, std::int64_t inner) const;

  // Opens `name`, checks rank 3, extents [d0, t, d2] and element type, and reads it as fp32 into `out`,
  // rejecting NaN/Inf with the first bad index.
  // The checks of read_float_dataset before any value is read: rank, extents, element type, storage; the dataset.
  h5::Handle check_float_dataset(const std::string& name, const std::vector<std::int64_t>& expected,
                                 const std::vector<std::string>& axis_names, const std::vector<std::string>& axis_sources) const;
  void read_float_dataset(const std::string& name, const std::vector<std::int64_t>& expected,
                          const std::vector<std::string>& axis_names, const std::vector<std::string>& axis_sources,
                          std::vector<float>* out) const;
};

h5::Handle TraceReader::Impl::open_checked(const std::string& name) const {
  const auto where = at(name);
  h5::Handle ds = h5::open_dataset(file.get(), where);
  h5::check_dataset_storage(ds.get(), where, policy.allow_external_data, file_bytes);
  return ds;
}

void TraceReader::Impl::check_budget(double bytes, const std::string& what) const {
  if (bytes <= static_cast<double>(policy.memory_budget_bytes)) return;
  VIDKV_THROW(IoError, path, ": ", what, " needs ", bytes / (1 << 20), " MiB as fp32, more than the memory budget of ",
              static_cast<double>(policy.memory_budget_bytes) / (1 << 20),
              " MiB (set VIDKV_MEMORY_BUDGET_MB to raise it, if the machine has the memory)");
}

void TraceReader::Impl::open() {
  h5::silence_hdf5_errors();
  policy = trace_read_policy();
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) VIDKV_THROW(IoError, path, ": no such file");
  if (S_ISDIR(st.st_mode)) VIDKV_THROW(IoError, path, ": is a directory, not a trace file");
  if (!S_ISREG(st.st_mode))
    VIDKV_THROW(IoError, path, ": is a ", S_ISFIFO(st.st_mode) ? "FIFO (named pipe)" : S_ISSOCK(st.st_mode) ? "socket" : "device",
                ", not a regular file; refused (reading it could block forever or never end). Copy the trace to a file");
  file_bytes = static_cast<std::uint64_t>(st.st_size);
  // The file's structure is read first in a child process, so a crash or a loop inside HDF5 on a corrupt file
  // becomes an error naming the object (trace_isolation.h); once per file identity per process.
  if (!trace_isolation::already_checked(path, 1)) {
    trace_isolation::run_isolated(path, "reading its structure", [&] {
      Impl probe;
      probe.path = path;
      probe.policy = policy;
      probe.file_bytes = file_bytes;
      probe.open_file();
      probe.check_structure();
      TraceReader view(std::make_unique<Impl>(std::move(probe)));
      view.tokens(/*with_embeddings=*/false);
      view.token_ids();
      view.query_positions();
      return std::string();
    });
    trace_isolation::mark_checked(path, 1);
  }
  open_file();
}

void TraceReader::Impl::open_file() {
  const htri_t is_hdf5 = H5Fis_hdf5(path.c_str());
  if (is_hdf5 <= 0) {
    h5::last_hdf5_error();
    VIDKV_THROW(IoError, path, ": not an HDF5 file (no HDF5 signature; expected a vidkv.trace file, see traces/SCHEMA.md)");
  }
  // Evict each object's metadata (object header, chunk-index B-tree nodes) when it is closed. Without this HDF5
  // keeps the B-tree nodes of every layer read so far: small on disk but ~18 KB each in memory, which grows
  // resident memory by ~0.25 MB per layer of a 8192-token trace (measured: +8 MB over 28 layers).
  h5::Handle access(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
#if H5_VERSION_GE(1, 10, 1)
  H5Pset_evict_on_close(access.get(), 1);
#endif
  hid_t id = H5Fopen(path.c_str(), H5F_ACC_RDONLY, access.get());
  if (id < 0) {
    const std::string reason = h5::last_hdf5_error();
    VIDKV_THROW(IoError, path, ": cannot open the HDF5 file, truncated or corrupt",
                reason.empty() ? "" : " (HDF5: " + reason + ")");
  }
  file = h5::Handle(id, H5Fclose);
  info.path = path;
  read_root_attrs();
  read_model();

  // T comes from /tokens/modality; every other per-token dataset and each layer must agree with it.
  const auto where = at(ts::kTokensModality);
  h5::Handle modality = open_checked(ts::kTokensModality);
  const auto dims = h5::dataset_extent(modality.get(), where);
  if (dims.size() != 1) VIDKV_THROW(ShapeError, where.str(), ": expected rank 1 [T], got rank ", dims.size());
  info.tokens = static_cast<std::int64_t>(dims[0]);
  if (info.tokens == 0) VIDKV_THROW(IoError, where.str(), ": the trace has no tokens");

  if (exists(ts::kQueryPositions)) {
    const auto qw = at(ts::kQueryPositions);
    h5::Handle q = open_checked(ts::kQueryPositions);
    const auto qd = h5::dataset_extent(q.get(), qw);
    if (qd.size() != 1) VIDKV_THROW(ShapeError, qw.str(), ": expected rank 1 [Q], got rank ", qd.size());
    info.queries = static_cast<std::int64_t>(qd[0]);
  }
  info.has_embeddings = exists(ts::kEmbeddings);
  info.has_token_ids = exists(ts::kTokensIds);

  // num_layers is a number in the file: it must match the layer groups the file holds, before any code loops
  // or allocates by it.
  const auto lw = at(ts::kLayersGroup);
  h5::Handle layers = h5::open_group(file.get(), lw);
  H5G_info_t group_info{};
  if (H5Gget_info(layers.get(), &group_info) < 0) VIDKV_THROW(IoError, lw.str(), ": cannot list its members (corrupt file?)");
  if (group_info.nlinks != static_cast<hsize_t>(info.num_layers)) {
    const std::string last = h5::layer_group_name(info.num_layers - 1);  // "/layers/NNN"
    VIDKV_THROW(IoError, lw.str(), ": holds ", group_info.nlinks, " members but /model num_layers says ", info.num_layers,
                " (expected groups 000..", last.substr(last.rfind('/') + 1), ")");
  }
}

// Everything but the bulk values: per-token datasets read, every layer's datasets opened and checked for storage,
// extents and the memory budget (what the child process of open() runs).
void TraceReader::Impl::check_structure() const {
  const double kv_bytes = 4.0 * info.num_kv_heads * static_cast<double>(info.tokens) * info.head_dim;
  const double q_bytes = 4.0 * info.num_query_heads * static_cast<double>(info.queries) * info.head_dim;
  for (int l = 0; l < info.num_layers; ++l) {
    const std::string group = h5::layer_group_name(l);
    const std::vector<std::int64_t> kv_shape = {info.num_kv_heads, info.tokens, info.head_dim};
    check_float_dataset(group + "/key", kv_shape, kKvAxes, kKvSources);
    check_float_dataset(group + "/value", kv_shape, kKvAxes, kKvSources);
    const bool query = exists(group + "/query");
    if (query)
      check_float_dataset(group + "/query", {info.num_query_heads, info.queries, info.head_dim}, kQueryAxes, kQuerySources);
    if (l == 0) check_budget(2 * kv_bytes + (query ? q_bytes : 0.0), "one layer (" + group + " key, value and query)");
  }
  if (info.has_embeddings) {
    check_float_dataset(ts::kEmbeddings, {info.tokens, info.hidden_size}, kEmbeddingAxes, kEmbeddingSources);
    check_budget(4.0 * static_cast<double>(info.tokens) * static_cast<double>(info.hidden_size), ts::kEmbeddings);
  }
}

void TraceReader::Impl::read_root_attrs() {
  const hid_t root = file.get();
  const auto where = at("/");
  const std::string schema = h5::read_string_attr(root, ts::kAttrSchema, where);
  if (schema != ts::kSchemaName)
    VIDKV_THROW(IoError, where.str(), ": attribute 'schema' is '", schema, "', expected '", ts::kSchemaName,
                "' (not a VidKV trace)");
  const std::int64_t version = h5::read_int_attr(root, ts::kAttrSchemaVersion, where);
  if (version != ts::kSchemaVersion)
    VIDKV_THROW(IoError, where.str(), ": unsupported schema_version ", version, " (this build reads version ",
                ts::kSchemaVersion, ")");
  info.schema_version = static_cast<int>(version);
  info.producer = h5::read_string_attr(root, ts::kAttrProducer, where);
  info.created_at = h5::read_string_attr(root, ts::kAttrCreatedAt, where);
  info.source = h5::read_string_attr(root, ts::kAttrSource, where);
  if (info.source != "model" && info.source != "synthetic")
    VIDKV_THROW(IoError, where.str(), ": attribute 'source' is '", info.source, "', expected 'model' or 'synthetic'");
  info.model_id = h5::read_string_attr(root, ts::kAttrModelId, where);
  info.model_family = h5::read_string_attr(root, ts::kAttrModelFamily, where);
  info.dtype = parse_trace_dtype(h5::read_string_attr(root, ts::kAttrDtype, where), where.str());

  // Every other root attribute is provenance (model_revision, model_file_sha256, prompt, frames_used, notes, ...).
  std::vector<std::string> names;
  hsize_t index = 0;
  H5Aiterate2(root, H5_INDEX_NAME, H5_ITER_INC, &index, collect_attr_name, &names);
  for (const auto& name : names) {
    if (required_root_attrs().count(name)) continue;
    h5::Handle attr(H5Aopen(root, name.c_str(), H5P_DEFAULT), H5Aclose);
    h5::Handle type(H5Aget_type(attr.get()), H5Tclose);
    const H5T_class_t cls = H5Tget_class(type.get());
    h5::Handle space(H5Aget_space(attr.get()), H5Sclose);
    const bool scalar = H5Sget_simple_extent_npoints(space.get()) == 1;
    if (cls == H5T_STRING && scalar) {
      info.provenance[name] = h5::read_string_attr(root, name, where);
    } else if (cls == H5T_INTEGER && scalar) {
      info.provenance[name] = std::to_string(h5::read_int_attr(root, name, where));
    } else if (cls == H5T_FLOAT && scalar) {
      double v = 0;
      H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v);
      info.provenance[name] = detail::concat(v);
    } else {
      info.provenance[name] = "(" + h5::describe_hdf5_type(attr.get()) + (scalar ? "" : " array") + ")";
    }
  }
}

void TraceReader::Impl::read_model() {
  const auto where = at(ts::kModelGroup);
  h5::Handle model = h5::open_group(file.get(), where);
  auto positive = [&](const char* name) {
    const std::int64_t v = h5::read_int_attr(model.get(), name, where);
    if (v <= 0 || v > (std::int64_t{1} << 31) - 1)
      VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' is ", v, ", expected a positive 32-bit integer");
    return v;
  };
  info.num_layers = static_cast<int>(positive(ts::kAttrNumLayers));
  info.num_kv_heads = static_cast<int>(positive(ts::kAttrNumKvHeads));
  info.num_query_heads = static_cast<int>(positive(ts::kAttrNumQueryHeads));
  info.head_dim = static_cast<int>(positive(ts::kAttrHeadDim));
  info.hidden_size = positive(ts::kAttrHiddenSize);
  if (info.num_query_heads % info.num_kv_heads != 0)
    VIDKV_THROW(IoError, where.str(), ": num_query_heads ", info.num_query_heads, " is not a multiple of num_kv_heads ",
                info.num_kv_heads);
  info.rope = h5::read_string_attr(model.get(), ts::kAttrRope, where);
  if (info.rope != "post" && info.rope != "pre")
    VIDKV_THROW(IoError, where.str(), ": attribute 'rope' is '", info.rope, "', expected 'post' or 'pre'");
  // Optional rotary parameters: rope_theta states them; the others refine it and need it.
  const bool theta = h5::has_attr(model.get(), ts::kAttrRopeTheta);
  for (const char* name : {ts::kAttrRopeScaling, ts::kAttrRopeScalingFactor, ts::kAttrRopePairing})
    if (!theta && h5::has_attr(model.get(), name))
      VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' needs 'rope_theta' beside it (traces/SCHEMA.md)");
  if (!theta) return;
  RotaryParams r;
  r.theta = h5::read_double_attr(model.get(), ts::kAttrRopeTheta, where);
  if (!(r.theta > 1.0) || !std::isfinite(r.theta))
    VIDKV_THROW(IoError, where.str(), ": attribute 'rope_theta' is ", r.theta, ", expected a finite number > 1");
  if (h5::has_attr(model.get(), ts::kAttrRopeScaling)) {
    const std::string scaling = h5::read_string_attr(model.get(), ts::kAttrRopeScaling, where);
    if (scaling == "linear") r.scaling = RotaryScaling::linear;
    else if (scaling != "none")
      VIDKV_THROW(IoError, where.str(), ": attribute 'rope_scaling' is '", scaling,
                  "'; supported: none, linear (other rope types are not implemented)");
  }
  if (h5::has_attr(model.get(), ts::kAttrRopeScalingFactor)) {
    r.factor = h5::read_double_attr(model.get(), ts::kAttrRopeScalingFactor, where);
    if (!(r.factor > 0.0) || !std::isfinite(r.factor))
      VIDKV_THROW(IoError, where.str(), ": attribute 'rope_scaling_factor' is ", r.factor, ", expected a finite number > 0");
  }
  if (h5::has_attr(model.get(), ts::kAttrRopePairing)) {
    const std::string pairing = h5::read_string_attr(model.get(), ts::kAttrRopePairing, where);
    if (pairing == "interleaved") r.pairing = RotaryPairing::interleaved;
    else if (pairing != "half")
      VIDKV_THROW(IoError, where.str(), ": attribute 'rope_pairing' is '", pairing, "', expected 'half' or 'interleaved'");
  }
  if (info.head_dim % 2 != 0)
    VIDKV_THROW(IoError, where.str(), ": rotary parameters with an odd head_dim ", info.head_dim);
  info.rotary = r;
}

// Opens a per-token dataset of rank 1 ([T]) or 2 ([T, inner]), checks its type, rank and extents; returns T.
std::int64_t TraceReader::Impl::checked_length(const std::string& name, h5::StoredType type, int rank,
                                               std::int64_t inner) const {
  const auto where = at(name);
  h5::Handle ds = h5::open_dataset(file.get(), where);
  const auto stored = h5::stored_type(ds.get(), where);
  if (stored != type)
    VIDKV_THROW(ShapeError, where.str(), ": expected ", h5::stored_type_name(type), " elements, got ",
                h5::describe_hdf5_type(ds.get()));
  const auto dims = h5::dataset_extent(ds.get(), where);
  if (static_cast<int>(dims.size()) != rank)
    VIDKV_THROW(ShapeError, where.str(), ": expected rank ", rank, ", got ", dims.size());
  if (rank == 2 && static_cast<std::int64_t>(dims[1]) != inner)
    VIDKV_THROW(ShapeError, where.str(), ": expected ", inner, " columns, got ", dims[1]);
  if (static_cast<std::int64_t>(dims[0]) != info.tokens)
    VIDKV_THROW(ShapeError, where.str(), ": has ", dims[0], " tokens but ", ts::kTokensModality, " has ", info.tokens);
  h5::check_dataset_storage(ds.get(), where, policy.allow_external_data, file_bytes);
  return info.tokens;
}

h5::Handle TraceReader::Impl::check_float_dataset(const std::string& name, const std::vector<std::int64_t>& expected,
                                                  const std::vector<std::string>& axis_names,
                                                  const std::vector<std::string>& axis_sources) const {
  const auto where = at(name);
  h5::Handle ds = h5::open_dataset(file.get(), where);
  const auto dims = h5::dataset_extent(ds.get(), where);
  const std::size_t rank = expected.size();
  if (dims.size() != rank)
    VIDKV_THROW(ShapeError, where.str(), ": expected rank ", rank, " [", join_names(axis_names), "], got rank ",
                dims.size());
  for (std::size_t a = 0; a < rank; ++a) {
    if (static_cast<std::int64_t>(dims[a]) != expected[a])
      VIDKV_THROW(ShapeError, where.str(), ": axis ", a, " (", axis_names[a], ") has ", dims[a], " entries but ",
                  axis_sources[a], " says ", expected[a]);
  }
  const auto stored = h5::stored_type(ds.get(), where);
  const bool embeddings = name == ts::kEmbeddings;
  const bool ok = embeddings ? (stored == h5::StoredType::f16 || stored == h5::StoredType::f32)
                             : storage_matches(stored, info.dtype);
  if (!ok) {
    if (embeddings)
      VIDKV_THROW(ShapeError, where.str(), ": expected float16 or float32 elements, got ", h5::describe_hdf5_type(ds.get()));
    VIDKV_THROW(ShapeError, where.str(), ": stored as ", h5::describe_hdf5_type(ds.get()), " but the root attribute dtype is '",
                trace_dtype_text(info.dtype), "' (expected ", h5::stored_type_name(expected_storage(info.dtype)), ")");
  }
  h5::check_dataset_storage(ds.get(), where, policy.allow_external_data, file_bytes);
  return ds;
}

void TraceReader::Impl::read_float_dataset(const std::string& name, const std::vector<std::int64_t>& expected,
                                           const std::vector<std::string>& axis_names,
                                           const std::vector<std::string>& axis_sources, std::vector<float>* out) const {
  const auto where = at(name);
  h5::Handle ds = check_float_dataset(name, expected, axis_names, axis_sources);
  const std::size_t rank = expected.size();
  const auto stored = h5::stored_type(ds.get(), where);

  // View the dataset as [outer, rows, inner] and read blocks of rows of one outer index at a time.
  const std::int64_t outer = rank == 3 ? expected[0] : 1;
  const std::int64_t rows = expected[rank - 2];
  const std::int64_t inner = expected[rank - 1];
  const std::int64_t block_rows = std::max<std::int64_t>(1, kReadBlockElements / std::max<std::int64_t>(1, inner));
  // With no output the values are only checked, one block at a time (constant memory).
  std::vector<float> block;
  if (out) {
    check_budget(4.0 * static_cast<double>(outer) * static_cast<double>(rows) * static_cast<double>(inner), name);
    out->assign(static_cast<std::size_t>(outer * rows * inner), 0.0f);
  } else {
    block.resize(static_cast<std::size_t>(std::min(block_rows, rows) * inner));
  }
  const DType elem = stored == h5::StoredType::f32 ? DType::f32 : stored == h5::StoredType::f16 ? DType::f16 : DType::bf16;
  // 16-bit elements are read with the dataset's own type in little-endian order: HDF5 then copies (or byte-swaps)
  // the bits instead of running a value conversion (slow for half floats, clipping for int16 -> uint16), and the
  // bits are converted to fp32 here.
  // (H5Dget_type may hand back a read-only type: the order is set on a copy.)
  h5::silence_hdf5_errors();  // HDF5's error printing is per thread: layers are read from worker threads too
  const h5::Handle file_type(H5Dget_type(ds.get()), H5Tclose);
  h5::Handle mem_type(H5Tcopy(elem == DType::f32 ? H5T_NATIVE_FLOAT : file_type.get()), H5Tclose);
  if (elem != DType::f32 && H5Tset_order(mem_type.get(), H5T_ORDER_LE) < 0)
    VIDKV_THROW(IoError, where.str(), ": cannot read its 16-bit elements in little-endian order");
  std::vector<std::uint16_t> scratch16;
  for (std::int64_t o = 0; o < outer; ++o) {
    for (std::int64_t r0 = 0; r0 < rows; r0 += block_rows) {
      const std::int64_t nr = std::min(block_rows, rows - r0);
      std::vector<hsize_t> start, count;
      if (rank == 3) {
        start = {static_cast<hsize_t>(o), static_cast<hsize_t>(r0), 0};
        count = {1, static_cast<hsize_t>(nr), static_cast<hsize_t>(inner)};
      } else {
        start = {static_cast<hsize_t>(r0), 0};
        count = {static_cast<hsize_t>(nr), static_cast<hsize_t>(inner)};
      }
      float* dst = out ? out->data() + (o * rows + r0) * inner : block.data();
      const std::size_t n = static_cast<std::size_t>(nr * inner);
      if (elem == DType::f32) {
        h5::read_hyperslab(ds.get(), mem_type.get(), start, count, dst, where);
      } else {
        scratch16.resize(n);
        h5::read_hyperslab(ds.get(), mem_type.get(), start, count, scratch16.data(), where);
        for (std::size_t i = 0; i < n; ++i)
          dst[i] = elem == DType::f16 ? half_bits_to_float(scratch16[i]) : bf16_bits_to_float(scratch16[i]);
      }
      for (std::size_t i = 0; i < n; ++i) {
        if ((float_bits(dst[i]) & 0x7f800000u) != 0x7f800000u) continue;
        const std::int64_t r = r0 + static_cast<std::int64_t>(i) / inner;
        const std::int64_t c = static_cast<std::int64_t>(i) % inner;
        if (rank == 3)
          VIDKV_THROW(IoError, where.str(), ": non-finite value ", non_finite_text(dst[i]), " at [", axis_names[0], " ", o,
                      ", ", axis_names[1], " ", r, ", ", axis_names[2], " ", c, "] (first bad index)");
        VIDKV_THROW(IoError, where.str(), ": non-finite value ", non_finite_text(dst[i]), " at [", axis_names[0], " ", r,
                    ", ", axis_names[1], " ", c, "] (first bad index)");
      }
    }
  }
}

TraceReader::TraceReader(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

TraceReader::TraceReader(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  impl_->open();
}

TraceReader::~TraceReader() = default;
TraceReader::TraceReader(TraceReader&&) noexcept = default;
TraceReader& TraceReader::operator=(TraceReader&&) noexcept = default;

const TraceInfo& TraceReader::info() const { return impl_->info; }

TraceTokens TraceReader::tokens(bool with_embeddings) const {
  const Impl& im = *impl_;
  const auto t = static_cast<std::size_t>(im.info.tokens);
  TraceTokens out;

  im.checked_length(ts::kTokensModality, h5::StoredType::u8, 1, 0);
  std::vector<std::uint8_t> modality(t);
  {
    const auto where = im.at(ts::kTokensModality);
    h5::Handle ds = im.open_checked(where.object);
    h5::read_all(ds.get(), H5T_NATIVE_UINT8, modality.data(), where);
    out.modality.resize(t);
    for (std::size_t i = 0; i < t; ++i) {
      if (modality[i] > 3)
        VIDKV_THROW(IoError, where.str(), ": token ", i, " has modality code ", int(modality[i]),
                    ", expected 0 system, 1 visual, 2 query or 3 generated");
      out.modality[i] = static_cast<Modality>(modality[i]);
    }
  }
  auto read_i32 = [&](const char* name, std::vector<std::int32_t>& dst) {
    im.checked_length(name, h5::StoredType::i32, 1, 0);
    const auto where = im.at(name);
    h5::Handle ds = im.open_checked(where.object);
    dst.resize(t);
    h5::read_all(ds.get(), H5T_NATIVE_INT32, dst.data(), where);
  };
  read_i32(ts::kTokensPosition, out.position);
  read_i32(ts::kTokensFrame, out.frame);
  {
    im.checked_length(ts::kTokensPatch, h5::StoredType::i16, 2, 2);
    const auto where = im.at(ts::kTokensPatch);
    h5::Handle ds = im.open_checked(where.object);
    std::vector<std::int16_t> patch(2 * t);
    h5::read_all(ds.get(), H5T_NATIVE_INT16, patch.data(), where);
    out.patch_row.resize(t);
    out.patch_col.resize(t);
    for (std::size_t i = 0; i < t; ++i) {
      out.patch_row[i] = patch[2 * i];
      out.patch_col[i] = patch[2 * i + 1];
    }
  }
  if (with_embeddings && im.info.has_embeddings) {
    im.read_float_dataset(ts::kEmbeddings, {im.info.tokens, im.info.hidden_size}, {"token", "hidden"},
                          {ts::kTokensModality, "/model hidden_size"}, &out.embeddings);
    out.hidden = im.info.hidden_size;
  }
  return out;
}

void TraceReader::check_embeddings() const {
  const Impl& im = *impl_;
  if (!im.info.has_embeddings) return;
  im.read_float_dataset(ts::kEmbeddings, {im.info.tokens, im.info.hidden_size}, {"token", "hidden"},
                        {ts::kTokensModality, "/model hidden_size"}, nullptr);
}

std::vector<std::int32_t> TraceReader::token_ids() const {
  const Impl& im = *impl_;
  if (!im.info.has_token_ids) return {};
  im.checked_length(ts::kTokensIds, h5::StoredType::i32, 1, 0);
  const auto where = im.at(ts::kTokensIds);
  h5::Handle ds = im.open_checked(where.object);
  std::vector<std::int32_t> ids(static_cast<std::size_t>(im.info.tokens));
  h5::read_all(ds.get(), H5T_NATIVE_INT32, ids.data(), where);
  return ids;
}

std::vector<std::int32_t> TraceReader::query_positions() const {
  const Impl& im = *impl_;
  if (!im.exists(ts::kQueryPositions)) return {};
  const auto where = im.at(ts::kQueryPositions);
  h5::Handle ds = im.open_checked(where.object);
  if (h5::stored_type(ds.get(), where) != h5::StoredType::i32)
    VIDKV_THROW(ShapeError, where.str(), ": expected int32 elements, got ", h5::describe_hdf5_type(ds.get()));
  std::vector<std::int32_t> positions(static_cast<std::size_t>(im.info.queries));
  if (!positions.empty()) h5::read_all(ds.get(), H5T_NATIVE_INT32, positions.data(), where);
  for (std::size_t i = 0; i < positions.size(); ++i) {
    if (positions[i] < 0 || positions[i] >= im.info.tokens)
      VIDKV_THROW(IoError, where.str(), ": entry ", i, " is token index ", positions[i], ", outside 0..", im.info.tokens - 1);
  }
  return positions;
}

LayerData TraceReader::read_layer(int layer, LayerParts parts) const {
  LayerData out;
  read_layer(layer, out, parts);
  return out;
}

bool TraceReader::has_layer_queries(int layer) const {
  const Impl& im = *impl_;
  if (layer < 0 || layer >= im.info.num_layers)
    VIDKV_THROW(ConfigError, im.path, ": layer ", layer, " does not exist (the trace has ", im.info.num_layers, " layers, 0..",
                im.info.num_layers - 1, ")");
  return im.exists(h5::layer_group_name(layer) + "/query");
}

void TraceReader::read_layer(int layer, LayerData& out, LayerParts parts) const {
  const Impl& im = *impl_;
  const TraceInfo& in = im.info;
  if (layer < 0 || layer >= in.num_layers)
    VIDKV_THROW(ConfigError, im.path, ": layer ", layer, " does not exist (the trace has ", in.num_layers, " layers, 0..",
                in.num_layers - 1, ")");
  const std::string group = h5::layer_group_name(layer);
  out.layer = layer;
  out.heads = in.num_kv_heads;
  out.tokens = in.tokens;
  out.dim = in.head_dim;
  const std::vector<std::int64_t> kv_shape = {in.num_kv_heads, in.tokens, in.head_dim};
  im.read_float_dataset(group + "/key", kv_shape, kKvAxes, kKvSources, &out.key);
  im.read_float_dataset(group + "/value", kv_shape, kKvAxes, kKvSources, &out.value);
  if (parts.queries && im.exists(group + "/query")) {
    if (in.queries == 0 && !im.exists(ts::kQueryPositions))
      VIDKV_THROW(IoError, im.path, ": ", group, "/query: recorded query states need ", ts::kQueryPositions,
                  ", which is missing");
    LayerQueries q = out.queries ? std::move(*out.queries) : LayerQueries{};  // reuse its buffer
    q.heads = in.num_query_heads;
    q.count = in.queries;
    q.dim = in.head_dim;
    im.read_float_dataset(group + "/query", {in.num_query_heads, in.queries, in.head_dim}, kQueryAxes, kQuerySources, &q.data);
    q.token_index = query_positions();
    out.queries = std::move(q);
  } else {
    out.queries.reset();
  }
}

}  // namespace vidkv
