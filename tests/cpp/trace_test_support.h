// Helpers shared by the tests/cpp/test_traces_*.cpp files: a unique temporary directory removed at scope exit, a
// small hand-made trace, and direct HDF5 C API edits to corrupt a trace in one precise way.
#pragma once

#include <hdf5.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "vidkv/core/dtype.h"
#include "vidkv/core/token_context.h"
#include "vidkv/traces/trace_writer.h"

namespace vidkv::test {

// A fresh directory /tmp/vidkv-test-XXXXXX, removed with its contents when the object goes out of scope.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "vidkv-test-XXXXXX").string();
    if (!mkdtemp(pattern.data())) throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (std::filesystem::path(path_) / name).string(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// Shape of the small hand-made trace: 2 layers, 2 KV heads, 4 query heads, 8 tokens, head_dim 4, hidden 6,
// 2 recorded queries (token indices 6 and 7).
struct SmallTrace {
  static constexpr int kLayers = 2, kKvHeads = 2, kQueryHeads = 4, kTokens = 8, kDim = 4, kHidden = 6, kQueries = 2;

  // K[l][h][t][c] = (l + 1) * (h + 1) * (t - 3.5) / 8 + c / 4: small multiples of 1/16 and 1/4, exact in fp16.
  static float key(int l, int h, int t, int c) { return static_cast<float>((l + 1) * (h + 1) * (t - 3.5) / 8.0 + c / 4.0); }
  // V = -K / 2 + 1/3 (1/3 is not exact in fp16: it rounds to 0x3555 = 0.333251953125).
  static float value(int l, int h, int t, int c) { return -key(l, h, t, c) / 2 + 1.0f / 3.0f; }
  static float query(int l, int qh, int j, int c) { return static_cast<float>(l - qh + j * 0.5 + c * 0.125); }

  static std::vector<float> layer_key(int l) { return fill(l, kKvHeads, kTokens, key); }
  static std::vector<float> layer_value(int l) { return fill(l, kKvHeads, kTokens, value); }
  static std::vector<float> layer_query(int l) { return fill(l, kQueryHeads, kQueries, query); }

  // Tokens: 2 system, 4 visual (2 frames of 1x2 patches), 2 query text.
  static TraceTokens tokens() {
    TraceTokens t = TraceTokens::uniform(kTokens);
    for (int i = 2; i < 6; ++i) {
      t.modality[static_cast<std::size_t>(i)] = Modality::visual;
      t.frame[static_cast<std::size_t>(i)] = (i - 2) / 2;
      t.patch_row[static_cast<std::size_t>(i)] = 0;
      t.patch_col[static_cast<std::size_t>(i)] = static_cast<std::int16_t>((i - 2) % 2);
    }
    t.modality[6] = t.modality[7] = Modality::query_text;
    t.hidden = kHidden;
    for (int i = 0; i < kTokens * kHidden; ++i) t.embeddings.push_back(static_cast<float>(i % 7) * 0.25f - 0.5f);
    return t;
  }
  static std::vector<std::int32_t> ids() { return {101, 102, 900, 900, 900, 900, 7, 8}; }

  static TraceMetadata metadata(DType dtype) {
    TraceMetadata m;
    m.producer = "vidkv tests";
    m.created_at = "2026-01-02T03:04:05Z";
    m.source = "model";
    m.model_id = "test/small";
    m.model_family = "test";
    m.dtype = dtype;
    m.num_layers = kLayers;
    m.num_kv_heads = kKvHeads;
    m.num_query_heads = kQueryHeads;
    m.head_dim = kDim;
    m.hidden_size = kHidden;
    m.provenance["prompt"] = "what happens in the video?";
    m.provenance["model_revision"] = "abc123";
    return m;
  }

  // Writes the whole small trace to `path` with fp32 input data.
  static void write(const std::string& path, DType dtype = DType::f16) {
    TraceWriter w(path, metadata(dtype));
    w.write_tokens(tokens(), ids());
    w.write_query_positions({6, 7});
    for (int l = 0; l < kLayers; ++l) {
      const auto q = layer_query(l);
      w.write_layer(l, layer_key(l), layer_value(l), &q);
    }
    w.finish();
  }

 private:
  template <class F>
  static std::vector<float> fill(int l, int heads, int rows, F f) {
    std::vector<float> out;
    for (int h = 0; h < heads; ++h)
      for (int t = 0; t < rows; ++t)
        for (int c = 0; c < kDim; ++c) out.push_back(f(l, h, t, c));
    return out;
  }
};

// Opens a trace read-write for a test edit; closes on scope exit.
class EditTrace {
 public:
  explicit EditTrace(const std::string& path) : file_(H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT)) {
    if (file_ < 0) throw std::runtime_error("cannot open " + path + " for editing");
  }
  ~EditTrace() { H5Fclose(file_); }
  hid_t file() const { return file_; }

  void remove(const std::string& name) { check(H5Ldelete(file_, name.c_str(), H5P_DEFAULT)); }

  // Replaces dataset `name` by a contiguous dataset of `type` and `dims`, zero-filled.
  void replace(const std::string& name, hid_t type, const std::vector<hsize_t>& dims) {
    if (H5Lexists(file_, name.c_str(), H5P_DEFAULT) > 0) remove(name);
    hid_t space = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
    hid_t ds = H5Dcreate2(file_, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    check(ds);
    std::size_t n = H5Tget_size(type);
    for (auto d : dims) n *= d;
    std::vector<unsigned char> zeros(n, 0);
    check(H5Dwrite(ds, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, zeros.data()));
    H5Dclose(ds);
    H5Sclose(space);
  }

  // Writes one fp32 value, converted to the dataset's 16-bit half layout, at `index` of a rank-3 dataset.
  void set_half(const std::string& name, const std::vector<hsize_t>& index, float v) {
    hid_t ds = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    check(ds);
    hid_t file_type = H5Dget_type(ds);
    hid_t space = H5Dget_space(ds);
    const hsize_t one[3] = {1, 1, 1};
    check(H5Sselect_hyperslab(space, H5S_SELECT_SET, index.data(), nullptr, one, nullptr));
    hsize_t n = 1;
    hid_t mem = H5Screate_simple(1, &n, nullptr);
    const std::uint16_t bits = float_to_half_bits(v);
    check(H5Dwrite(ds, file_type, mem, space, H5P_DEFAULT, &bits));  // file type is the half type: no conversion
    H5Sclose(mem);
    H5Sclose(space);
    H5Tclose(file_type);
    H5Dclose(ds);
  }

  // Grows an extendible dataset (the token axis) without touching anything else.
  void set_extent(const std::string& name, const std::vector<hsize_t>& dims) {
    hid_t ds = H5Dopen2(file_, name.c_str(), H5P_DEFAULT);
    check(ds);
    check(H5Dset_extent(ds, dims.data()));
    H5Dclose(ds);
  }

  // Rewrites a root string attribute as a fixed-length, space-padded ASCII string (what some writers produce).
  void set_fixed_string_attr(const std::string& name, const std::string& value) {
    if (H5Aexists(file_, name.c_str()) > 0) check(H5Adelete(file_, name.c_str()));
    hid_t type = H5Tcopy(H5T_C_S1);
    H5Tset_size(type, value.size() + 3);
    H5Tset_strpad(type, H5T_STR_SPACEPAD);
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(file_, name.c_str(), type, space, H5P_DEFAULT, H5P_DEFAULT);
    std::string padded = value + "   ";
    check(H5Awrite(attr, type, padded.data()));
    H5Aclose(attr);
    H5Sclose(space);
    H5Tclose(type);
  }

  void set_int64_attr(const std::string& object, const std::string& name, std::int64_t value) {
    hid_t obj = H5Oopen(file_, object.c_str(), H5P_DEFAULT);
    if (H5Aexists(obj, name.c_str()) > 0) check(H5Adelete(obj, name.c_str()));
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = H5Acreate2(obj, name.c_str(), H5T_STD_I64LE, space, H5P_DEFAULT, H5P_DEFAULT);
    check(H5Awrite(attr, H5T_NATIVE_INT64, &value));
    H5Aclose(attr);
    H5Sclose(space);
    H5Oclose(obj);
  }

 private:
  static void check(hid_t r) {
    if (r < 0) throw std::runtime_error("HDF5 call failed in a test edit");
  }
  hid_t file_;
};

}  // namespace vidkv::test
