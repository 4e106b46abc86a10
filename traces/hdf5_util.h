// PRIVATE to traces/: thin RAII and typed helpers over the HDF5 C API, shared by trace_reader.cpp and
// trace_writer.cpp. Never include this from a public header or from another module: HDF5 types (hid_t) stay
// inside traces/*.cpp. Every helper that fails throws a vidkv::Error whose message starts "FILE: OBJECT: ".
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"

namespace vidkv::h5 {

// Turns off HDF5's automatic printing of its error stack (we report errors ourselves). Idempotent.
void silence_hdf5_errors();

// The most specific message on HDF5's current error stack ("truncated file: eof = ...") or "" when empty.
std::string last_hdf5_error();

// Owns one hid_t and closes it with the matching H5?close. Move-only.
class Handle {
 public:
  using Closer = herr_t (*)(hid_t);
  Handle() = default;
  Handle(hid_t id, Closer closer) : id_(id), closer_(closer) {}
  Handle(Handle&& o) noexcept : id_(o.id_), closer_(o.closer_) { o.id_ = H5I_INVALID_HID; }
  Handle& operator=(Handle&& o) noexcept;
  Handle(const Handle&) = delete;
  Handle& operator=(const Handle&) = delete;
  ~Handle() { reset(); }

  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }
  void reset();

 private:
  hid_t id_ = H5I_INVALID_HID;
  Closer closer_ = nullptr;
};

// Where an error happened: the file path and the HDF5 object path ("/layers/003/key").
struct Where {
  const std::string& file;
  std::string object;
  std::string str() const { return file + ": " + object; }
};

// Every intermediate group must exist too. An external link (to another file) or a user-defined link on the way
// is an IoError naming `file` and the link unless `allow_external` (TraceReadPolicy::allow_external_data).
bool link_exists(hid_t loc, const std::string& path, const std::string& file = "", bool allow_external = false);
Handle open_group(hid_t file, const Where& where);       // IoError "missing group" when absent
Handle open_dataset(hid_t file, const Where& where);     // IoError "missing dataset" when absent

// Attributes on `obj` (a file, group or dataset). `where.object` names the attribute for messages.
bool has_attr(hid_t obj, const std::string& name);
// Scalar string attribute, fixed- or variable-length, ASCII or UTF-8. IoError when missing or not a string.
std::string read_string_attr(hid_t obj, const std::string& name, const Where& where);
// Scalar (or one-element) integer attribute of any integer type. IoError when missing or not an integer.
std::int64_t read_int_attr(hid_t obj, const std::string& name, const Where& where);
// Scalar (or one-element) float or integer attribute, as double. IoError when missing or of another class.
double read_double_attr(hid_t obj, const std::string& name, const Where& where);
// Writes a scalar variable-length UTF-8 string attribute (what h5py writes for a Python str).
void write_string_attr(hid_t obj, const std::string& name, const std::string& value, const Where& where);
void write_int32_attr(hid_t obj, const std::string& name, std::int32_t value, const Where& where);
void write_double_attr(hid_t obj, const std::string& name, double value, const Where& where);  // float64

// Checks, before anything is allocated or read, that a dataset opened from an untrusted file keeps its data inside
// the file in a form this build decodes: no external-file storage or virtual layout unless `allow_external`; every
// filter available (an unknown one is named, with its HDF5 filter ID); the bytes it declares (extent x element
// size, overflow-checked) consistent with the bytes it stores -- all of them without filters, at most the deflate
// bound (1032:1) less with filters -- and the stored bytes within `file_bytes`. IoError naming the dataset.
void check_dataset_storage(hid_t dataset, const Where& where, bool allow_external, std::uint64_t file_bytes);

// Extents of a dataset.
std::vector<hsize_t> dataset_extent(hid_t dataset, const Where& where);

// The element kind of a stored dataset, as far as traces care.
enum class StoredType { f16, f32, u16, u8, i16, i32, other };
StoredType stored_type(hid_t dataset, const Where& where);
const char* stored_type_name(StoredType t);  // "float16", "float32", "uint16", ... "other"
std::string describe_hdf5_type(hid_t dataset);  // "float64", "int32", "string", ... for messages

// A memory type for IEEE binary16 little-endian (HDF5 1.10 has no predefined half type). Caller owns it.
Handle make_half_type();
// The file/memory type used to store `t` (f16 -> half, bf16 -> uint16 raw bits, f32 -> float32).
Handle storage_type(DType t);

// Reads a hyperslab [start, start + count) of `dataset` into `out` using memory type `mem_type`
// (`out` must hold product(count) elements of that type).
void read_hyperslab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start, const std::vector<hsize_t>& count,
                    void* out, const Where& where);
// Reads a whole dataset.
void read_all(hid_t dataset, hid_t mem_type, void* out, const Where& where);

// Creates a chunked dataset whose axis 0 (`token_axis`) is unlimited, with `extent` as its current shape.
// `deflate_level` 0 stores raw chunks; 1..9 adds shuffle + deflate when the library has it.
Handle create_extendible(hid_t loc, const std::string& name, hid_t file_type, const std::vector<hsize_t>& extent,
                         const std::vector<hsize_t>& chunk, int token_axis, int deflate_level, const Where& where);
// Writes the hyperslab [start, start + count) of `dataset` from `data` (memory type `mem_type`).
void write_hyperslab(hid_t dataset, hid_t mem_type, const std::vector<hsize_t>& start, const std::vector<hsize_t>& count,
                     const void* data, const Where& where);
// Grows `dataset` to `extent` (only the unlimited axis may grow).
void set_extent(hid_t dataset, const std::vector<hsize_t>& extent, const Where& where);

// "/layers/003"
std::string layer_group_name(int layer);

}  // namespace vidkv::h5
