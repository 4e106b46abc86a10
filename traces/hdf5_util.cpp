// RAII handles and typed helpers over the HDF5 C API (see hdf5_util.h; private to traces/).
// Written against HDF5 1.10 and valid on 1.12/1.14 (H5Treclaim replaces H5Dvlen_reclaim there).
#include "vidkv/traces/hdf5_util.h"

#include <cstdio>
#include <functional>
#include <numeric>

#include "vidkv/core/error.h"
#include "vidkv/traces/trace_isolation.h"
#include "vidkv/traces/trace_read_policy.h"

namespace vidkv::h5 {

void silence_hdf5_errors() { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); }

namespace {

herr_t take_first_message(unsigned n, const H5E_error2_t* err, void* client) {
  auto* out = static_cast<std::string*>(client);
  if (n == 0 && err && err->desc) *out = err->desc;
  return 0;
}

}  // namespace

std::string last_hdf5_error() {
  std::string message;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, take_first_message, &message);
  H5Eclear2(H5E_DEFAULT);
  return message;
}

namespace {

std::string with_hdf5_reason(const std::string& text) {
  const std::string reason = last_hdf5_error();
  return reason.empty() ? text : text + " (HDF5: " + reason + ")";
}

}  // namespace

Handle& Handle::operator=(Handle&& o) noexcept {
  if (this != &o) {
    reset();
    id_ = o.id_;
    closer_ = o.closer_;
    o.id_ = H5I_INVALID_HID;
  }
  return *this;
}

void Handle::reset() {
  if (id_ >= 0 && closer_) closer_(id_);
  id_ = H5I_INVALID_HID;
}

bool link_exists(hid_t loc, const std::string& path, const std::string& file, bool allow_external) {
  // H5Lexists needs every intermediate group to exist, so walk the path one component at a time, refusing to
  // follow a link out of the file (H5Lexists on a deeper path would open the other file).
  std::string prefix;
  std::size_t pos = !path.empty() && path[0] == '/' ? 1 : 0;
  while (pos <= path.size()) {
    const std::size_t next = path.find('/', pos);
    const std::string part = path.substr(pos, next == std::string::npos ? std::string::npos : next - pos);
    prefix += "/" + part;
    if (H5Lexists(loc, prefix.c_str(), H5P_DEFAULT) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    H5L_info_t link{};
    if (H5Lget_info(loc, prefix.c_str(), &link, H5P_DEFAULT) < 0) {
      H5Eclear2(H5E_DEFAULT);
      return false;
    }
    if (link.type != H5L_TYPE_HARD && link.type != H5L_TYPE_SOFT && !allow_external)
      VIDKV_THROW(IoError, file, ": ", prefix, ": is ", link.type == H5L_TYPE_EXTERNAL ? "an external link (to another file)" : "a user-defined link",
                  "; refused, since a trace must hold its own data (--allow-external-data follows it)");
    if (next == std::string::npos) break;
    pos = next + 1;
  }
  return true;
}

Handle open_group(hid_t file, const Where& where) {
  trace_isolation::report_progress(where.file, where.object);
  if (!link_exists(file, where.object, where.file, trace_read_policy().allow_external_data)) VIDKV_THROW(IoError, where.str(), ": missing group");
  hid_t id = H5Gopen2(file, where.object.c_str(), H5P_DEFAULT);
  if (id < 0) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot open group"));
  return Handle(id, H5Gclose);
}

Handle open_dataset(hid_t file, const Where& where) {
  trace_isolation::report_progress(where.file, where.object);
  if (!link_exists(file, where.object, where.file, trace_read_policy().allow_external_data)) VIDKV_THROW(IoError, where.str(), ": missing dataset");
  hid_t id = H5Dopen2(file, where.object.c_str(), H5P_DEFAULT);
  if (id < 0) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot open dataset"));
  return Handle(id, H5Dclose);
}

bool has_attr(hid_t obj, const std::string& name) {
  const htri_t r = H5Aexists(obj, name.c_str());
  if (r < 0) H5Eclear2(H5E_DEFAULT);
  return r > 0;
}

namespace {

Handle open_attr(hid_t obj, const std::string& name, const Where& where) {
  trace_isolation::report_progress(where.file, where.object + " attribute '" + name + "'");
  if (!has_attr(obj, name)) VIDKV_THROW(IoError, where.str(), ": missing attribute '", name, "'");
  hid_t id = H5Aopen(obj, name.c_str(), H5P_DEFAULT);
  if (id < 0) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot open attribute '" + name + "'"));
  return Handle(id, H5Aclose);
}

hssize_t attr_points(hid_t attr) {
  Handle space(H5Aget_space(attr), H5Sclose);
  return H5Sget_simple_extent_npoints(space.get());
}

}  // namespace

std::string read_string_attr(hid_t obj, const std::string& name, const Where& where) {
  Handle attr = open_attr(obj, name, where);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_STRING)
    VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' must be a string");
  if (attr_points(attr.get()) != 1)
    VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' must be a single string, not an array");
  Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_cset(mem.get(), H5Tget_cset(type.get()));
  if (H5Tis_variable_str(type.get()) > 0) {
    H5Tset_size(mem.get(), H5T_VARIABLE);
    char* text = nullptr;
    if (H5Aread(attr.get(), mem.get(), &text) < 0)
      VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read attribute '" + name + "'"));
    std::string value = text ? text : "";
    Handle space(H5Aget_space(attr.get()), H5Sclose);
#if H5_VERSION_GE(1, 12, 0)
    H5Treclaim(mem.get(), space.get(), H5P_DEFAULT, &text);
#else
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, &text);
#endif
    return value;
  }
  const std::size_t size = H5Tget_size(type.get());
  // A text attribute longer than this is a corrupt size field, not text (the buffer would be allocated first).
  constexpr std::size_t kMaxStringAttrBytes = std::size_t{1} << 20;
  if (size == 0 || size > kMaxStringAttrBytes)
    VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' declares a string of ", size,
                " bytes (expected 1 to 1 MiB; the file is corrupt)");
  std::string buffer(size + 1, '\0');
  H5Tset_size(mem.get(), size + 1);
  H5Tset_strpad(mem.get(), H5T_STR_NULLTERM);
  if (H5Aread(attr.get(), mem.get(), buffer.data()) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read attribute '" + name + "'"));
  buffer.resize(std::char_traits<char>::length(buffer.c_str()));
  // Fixed-length strings written space-padded keep their padding out of the value.
  while (!buffer.empty() && buffer.back() == ' ' && H5Tget_strpad(type.get()) == H5T_STR_SPACEPAD) buffer.pop_back();
  return buffer;
}

std::int64_t read_int_attr(hid_t obj, const std::string& name, const Where& where) {
  Handle attr = open_attr(obj, name, where);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) != H5T_INTEGER)
    VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' must be an integer, got ", describe_hdf5_type(attr.get()));
  if (attr_points(attr.get()) != 1) VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' must be a single integer");
  std::int64_t value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &value) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read attribute '" + name + "'"));
  return value;
}

double read_double_attr(hid_t obj, const std::string& name, const Where& where) {
  Handle attr = open_attr(obj, name, where);
  Handle type(H5Aget_type(attr.get()), H5Tclose);
  const H5T_class_t cls = H5Tget_class(type.get());
  if (cls != H5T_FLOAT && cls != H5T_INTEGER)
    VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' must be a number, got ", describe_hdf5_type(attr.get()));
  if (attr_points(attr.get()) != 1) VIDKV_THROW(IoError, where.str(), ": attribute '", name, "' must be a single number");
  double value = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &value) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read attribute '" + name + "'"));
  return value;
}

void write_double_attr(hid_t obj, const std::string& name, double value, const Where& where) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  if (has_attr(obj, name)) H5Adelete(obj, name.c_str());
  Handle attr(H5Acreate2(obj, name.c_str(), H5T_IEEE_F64LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot write attribute '" + name + "'"));
}

void write_string_attr(hid_t obj, const std::string& name, const std::string& value, const Where& where) {
  Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), H5T_VARIABLE);
  H5Tset_cset(type.get(), H5T_CSET_UTF8);
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  if (has_attr(obj, name)) H5Adelete(obj, name.c_str());
  Handle attr(H5Acreate2(obj, name.c_str(), type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  const char* text = value.c_str();
  if (!attr.valid() || H5Awrite(attr.get(), type.get(), &text) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot write attribute '" + name + "'"));
}

void write_int32_attr(hid_t obj, const std::string& name, std::int32_t value, const Where& where) {
  Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  if (has_attr(obj, name)) H5Adelete(obj, name.c_str());
  Handle attr(H5Acreate2(obj, name.c_str(), H5T_STD_I32LE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  if (!attr.valid() || H5Awrite(attr.get(), H5T_NATIVE_INT32, &value) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot write attribute '" + name + "'"));
}

namespace {

std::string filter_label(H5Z_filter_t id, const char* name) {
  std::string label = "filter " + std::to_string(id);
  if (name && *name) label += " ('" + std::string(name) + "')";
  return label;
}

}  // namespace

void check_dataset_storage(hid_t dataset, const Where& where, bool allow_external, std::uint64_t file_bytes) {
  Handle dcpl(H5Dget_create_plist(dataset), H5Pclose);
  if (!dcpl.valid()) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read its storage properties"));
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  const int external = H5Pget_external_count(dcpl.get());
  if (!allow_external && layout == H5D_VIRTUAL)
    VIDKV_THROW(IoError, where.str(), ": is a virtual dataset (its data is mapped from other files); refused, since a "
                "trace must hold its own data (--allow-external-data reads it)");
  if (!allow_external && external > 0)
    VIDKV_THROW(IoError, where.str(), ": keeps its data in ", external, " external file(s), not in the trace; refused "
                "(--allow-external-data reads it)");
  const int filters = H5Pget_nfilters(dcpl.get());
  for (int i = 0; i < filters; ++i) {
    unsigned flags = 0, config = 0;
    std::size_t nvalues = 0;
    char name[64] = {0};
    const H5Z_filter_t id = H5Pget_filter2(dcpl.get(), static_cast<unsigned>(i), &flags, &nvalues, nullptr, sizeof name,
                                           name, &config);
    if (id < 0) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read its filter pipeline"));
    if (H5Zfilter_avail(id) <= 0) {
      H5Eclear2(H5E_DEFAULT);
      VIDKV_THROW(IoError, where.str(), ": is compressed with HDF5 ", filter_label(id, name), ", which this build cannot "
                  "decode (built in: deflate, shuffle, fletcher32, scale-offset, n-bit); rewrite the trace with gzip/deflate, "
                  "or allow HDF5 filter plugins from HDF5_PLUGIN_PATH with --allow-filter-plugins");
    }
  }
  Handle type(H5Dget_type(dataset), H5Tclose);
  Handle space(H5Dget_space(dataset), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (!type.valid() || rank < 0 || rank > 32)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read its datatype or extent"));
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  std::uint64_t declared = H5Tget_size(type.get());
  std::string shape;
  for (hsize_t d : dims) {
    shape += (shape.empty() ? "" : " x ") + std::to_string(d);
    if (__builtin_mul_overflow(declared, static_cast<std::uint64_t>(d), &declared)) declared = UINT64_MAX;
  }
  if (declared == 0 || (external > 0 && allow_external) || (layout == H5D_VIRTUAL && allow_external)) return;
  const std::uint64_t stored = H5Dget_storage_size(dataset);
  // deflate's largest compression ratio is 1032:1 (RFC 1951: a 258-byte match costs at least 2 bits), so a
  // filtered dataset cannot declare more than that many bytes per stored byte (1100: room for chunk metadata).
  constexpr std::uint64_t kMaxFilterRatio = 1100;
  const bool too_few = filters > 0 ? declared / kMaxFilterRatio > stored : stored < declared;
  if (too_few)
    VIDKV_THROW(IoError, where.str(), ": declares ", shape, " elements (", declared, " bytes) but the file stores only ",
                stored, " bytes of it", filters > 0 ? " compressed (beyond the 1032:1 limit of deflate)" : "",
                "; the extent is corrupt or the data was never written");
  if (stored > file_bytes)
    VIDKV_THROW(IoError, where.str(), ": claims ", stored, " stored bytes, more than the whole file (", file_bytes,
                " bytes); the file is corrupt or truncated");
}

std::vector<hsize_t> dataset_extent(hid_t dataset, const Where& where) {
  Handle space(H5Dget_space(dataset), H5Sclose);
  const int rank = space.valid() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read the extent"));
  std::vector<hsize_t> dims(static_cast<std::size_t>(rank));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

namespace {

bool is_ieee_half(hid_t type) {
  if (H5Tget_class(type) != H5T_FLOAT || H5Tget_size(type) != 2) return false;
  std::size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
  H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize);
  return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && H5Tget_ebias(type) == 15;
}

}  // namespace

StoredType stored_type(hid_t dataset, const Where& where) {
  Handle type(H5Dget_type(dataset), H5Tclose);
  if (!type.valid()) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot read the datatype"));
  const H5T_class_t cls = H5Tget_class(type.get());
  const std::size_t size = H5Tget_size(type.get());
  if (cls == H5T_FLOAT) {
    if (is_ieee_half(type.get())) return StoredType::f16;
    if (size == 4 && H5Tget_precision(type.get()) == 32) return StoredType::f32;
    return StoredType::other;
  }
  if (cls == H5T_INTEGER) {
    const bool is_signed = H5Tget_sign(type.get()) == H5T_SGN_2;
    if (size == 1 && !is_signed) return StoredType::u8;
    if (size == 2 && !is_signed) return StoredType::u16;
    if (size == 2 && is_signed) return StoredType::i16;
    if (size == 4 && is_signed) return StoredType::i32;
  }
  return StoredType::other;
}

const char* stored_type_name(StoredType t) {
  switch (t) {
    case StoredType::f16: return "float16";
    case StoredType::f32: return "float32";
    case StoredType::u16: return "uint16";
    case StoredType::u8: return "uint8";
    case StoredType::i16: return "int16";
    case StoredType::i32: return "int32";
    case StoredType::other: return "other";
  }
  return "?";
}

std::string describe_hdf5_type(hid_t obj) {
  Handle type(H5Iget_type(obj) == H5I_ATTR ? H5Aget_type(obj) : H5Dget_type(obj), H5Tclose);
  if (!type.valid()) return "unknown";
  const std::size_t bits = H5Tget_size(type.get()) * 8;
  switch (H5Tget_class(type.get())) {
    case H5T_FLOAT: return "float" + std::to_string(bits);
    case H5T_INTEGER: return std::string(H5Tget_sign(type.get()) == H5T_SGN_2 ? "int" : "uint") + std::to_string(bits);
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    default: return "other";
  }
}

Handle make_half_type() {
  // binary16: sign bit 15, exponent bits 10..14 (bias 15), mantissa bits 0..9, little-endian.
  Handle t(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
  H5Tset_fields(t.get(), 15, 10, 5, 0, 10);
  H5Tset_size(t.get(), 2);
  H5Tset_ebias(t.get(), 15);
  H5Tset_precision(t.get(), 16);
  return t;
}

Handle storage_type(DType t) {
  if (t == DType::f16) return make_half_type();
  if (t == DType::bf16) return Handle(H5Tcopy(H5T_STD_U16LE), H5Tclose);
  return Handle(H5Tcopy(H5T_IEEE_F32LE), H5Tclose);
}

namespace {

hsize_t product(const std::vector<hsize_t>& v) { return std::accumulate(v.begin(), v.end(), hsize_t{1}, std::multiplies<>()); }

}  // namespace

void read_hyperslab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start, const std::vector<hsize_t>& count,
                    void* out, const Where& where) {
  trace_isolation::report_progress(where.file, where.object);
  Handle file_space(H5Dget_space(dataset), H5Sclose);
  if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot select a block"));
  // The memory space has the selection's own shape: with a flat 1-D memory space HDF5 maps every element to
  // its chunk one by one (10x slower reads).
  Handle mem_space(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  if (H5Dread(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": read failed (the file is corrupt or truncated)"));
}

void read_all(hid_t dataset, hid_t mem_type, void* out, const Where& where) {
  trace_isolation::report_progress(where.file, where.object);
  if (H5Dread(dataset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": read failed (the file is corrupt or truncated)"));
}

Handle create_extendible(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& extent,
                         const std::vector<hsize_t>& chunk, int token_axis, int deflate_level, const Where& where) {
  std::vector<hsize_t> max = extent;
  max[static_cast<std::size_t>(token_axis)] = H5S_UNLIMITED;
  Handle space(H5Screate_simple(static_cast<int>(extent.size()), extent.data(), max.data()), H5Sclose);
  Handle props(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(props.get(), static_cast<int>(chunk.size()), chunk.data());
  if (deflate_level > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
    H5Pset_shuffle(props.get());
    H5Pset_deflate(props.get(), static_cast<unsigned>(deflate_level));
  }
  hid_t id = H5Dcreate2(loc, name.c_str(), file_type, space.get(), H5P_DEFAULT, props.get(), H5P_DEFAULT);
  if (id < 0) VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot create dataset"));
  return Handle(id, H5Dclose);
}

void write_hyperslab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start, const std::vector<hsize_t>& count,
                     const void* data, const Where& where) {
  const hsize_t n = product(count);
  if (n == 0) return;
  Handle file_space(H5Dget_space(dataset), H5Sclose);
  if (H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, start.data(), nullptr, count.data(), nullptr) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot select a block"));
  Handle mem_space(H5Screate_simple(static_cast<int>(count.size()), count.data(), nullptr), H5Sclose);
  if (H5Dwrite(dataset, mem_type, mem_space.get(), file_space.get(), H5P_DEFAULT, data) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": write failed"));
}

void set_extent(hid_t dataset, const std::vector<hsize_t>& extent, const Where& where) {
  if (H5Dset_extent(dataset, extent.data()) < 0)
    VIDKV_THROW(IoError, with_hdf5_reason(where.str() + ": cannot extend (is the token axis unlimited?)"));
}

std::string layer_group_name(int layer) {
  char name[32];
  std::snprintf(name, sizeof name, "/layers/%03d", layer);
  return name;
}

}  // namespace vidkv::h5
