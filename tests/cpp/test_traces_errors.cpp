// Bad traces: each defect must throw the right vidkv error, with a message naming the file and the dataset.
#include <filesystem>
#include <fstream>

#include "catch.h"
#include "trace_test_support.h"
#include "vidkv/core/error.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"

using namespace vidkv;
using vidkv::test::EditTrace;
using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

// Runs validate_trace(path) and returns the message of the ErrorType it must throw (fails the test otherwise).
template <class ErrorType>
std::string validation_error(const std::string& path) {
  try {
    validate_trace(path);
  } catch (const ErrorType& e) {
    return e.what();
  } catch (const Error& e) {
    FAIL("wrong error type for " << path << ": " << e.what());
  }
  FAIL("validate_trace accepted " << path);
  return "";
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

std::string valid_copy(const TempDir& dir, const std::string& name) {
  const std::string path = dir.file(name);
  SmallTrace::write(path, DType::f16);
  return path;
}

}  // namespace

TEST_CASE("the small trace is valid (the baseline every defect below departs from)", "[traces][errors]") {
  TempDir dir;
  const auto report = validate_trace(valid_copy(dir, "ok.h5"));
  CHECK(report.layers_checked == 2);
  CHECK(report.modality_count == std::array<std::int64_t, 4>{2, 4, 2, 0});
  CHECK(report.frames == 2);
  CHECK(report.grid_rows == 1);
  CHECK(report.grid_cols == 2);
  CHECK(report.layer_queries);
  // 2 layers x (K 64 + V 64 + query 4 x 2 x 4 = 32) + embeddings 8 x 6 = 320 + 48 = 368 values.
  CHECK(report.values_checked == 368);
  CHECK(contains(report.summary(), "ok: "));
}

TEST_CASE("missing file is an IoError naming the file", "[traces][errors]") {
  TempDir dir;
  const std::string path = dir.file("absent.h5");
  const auto msg = validation_error<IoError>(path);
  CHECK(contains(msg, path));
  CHECK(contains(msg, "no such file"));
}

TEST_CASE("a file that is not HDF5 is an IoError naming the file", "[traces][errors]") {
  TempDir dir;
  const std::string path = dir.file("text.h5");
  std::ofstream(path) << "layer,key\n0,1.0\n";
  const auto msg = validation_error<IoError>(path);
  CHECK(contains(msg, path));
  CHECK(contains(msg, "not an HDF5 file"));
}

TEST_CASE("a truncated trace is an IoError naming the file", "[traces][errors]") {
  TempDir dir;
  const std::string good = valid_copy(dir, "good.h5");
  const std::string cut = dir.file("cut.h5");
  std::filesystem::copy_file(good, cut);
  std::filesystem::resize_file(cut, std::filesystem::file_size(good) / 2);
  const auto msg = validation_error<IoError>(cut);
  CHECK(contains(msg, cut));
  CHECK(contains(msg, "truncated"));
}

TEST_CASE("a missing dataset is an IoError naming file and dataset", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "missing.h5");
  EditTrace(path).remove("/layers/001/value");
  const auto msg = validation_error<IoError>(path);
  CHECK(contains(msg, path + ": /layers/001/value: missing dataset"));

  const std::string path2 = valid_copy(dir, "missing_tokens.h5");
  EditTrace(path2).remove("/tokens/patch");
  CHECK(contains(validation_error<IoError>(path2), path2 + ": /tokens/patch: missing dataset"));
}

TEST_CASE("a dataset of the wrong rank is a ShapeError naming file and dataset", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "rank.h5");
  {
    EditTrace edit(path);
    hid_t half = H5Tcopy(H5T_IEEE_F32LE);  // a binary16 file type, as TraceWriter stores fp16
    H5Tset_fields(half, 15, 10, 5, 0, 10);
    H5Tset_size(half, 2);
    H5Tset_ebias(half, 15);
    H5Tset_precision(half, 16);
    edit.replace("/layers/000/key", half, {8, 4});  // [T, head_dim]: the head axis is missing
    H5Tclose(half);
  }
  const auto msg = validation_error<ShapeError>(path);
  CHECK(contains(msg, path + ": /layers/000/key: expected rank 3"));
  CHECK(contains(msg, "got rank 2"));
}

TEST_CASE("a dataset of the wrong dtype is a ShapeError naming file, dataset and both types", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "dtype.h5");
  EditTrace(path).replace("/layers/001/key", H5T_IEEE_F64LE, {2, 8, 4});
  const auto msg = validation_error<ShapeError>(path);
  CHECK(contains(msg, path + ": /layers/001/key: stored as float64"));
  CHECK(contains(msg, "float16"));

  const std::string path2 = valid_copy(dir, "dtype_tokens.h5");
  EditTrace(path2).replace("/tokens/position", H5T_STD_I64LE, {8});
  const auto msg2 = validation_error<ShapeError>(path2);
  CHECK(contains(msg2, path2 + ": /tokens/position: expected int32 elements, got int64"));
}

TEST_CASE("token metadata whose length disagrees with K/V is a ShapeError naming both datasets", "[traces][errors]") {
  TempDir dir;
  // K grows to 10 tokens while /tokens/* keep 8 (the datasets are extendible, so this is one call).
  const std::string path = valid_copy(dir, "kv_len.h5");
  EditTrace(path).set_extent("/layers/000/key", {2, 10, 4});
  const auto msg = validation_error<ShapeError>(path);
  CHECK(contains(msg, path + ": /layers/000/key"));
  CHECK(contains(msg, "has 10 entries but /tokens/modality says 8"));

  // One metadata array shorter than the others.
  const std::string path2 = valid_copy(dir, "frame_len.h5");
  EditTrace(path2).replace("/tokens/frame", H5T_STD_I32LE, {7});
  const auto msg2 = validation_error<ShapeError>(path2);
  CHECK(contains(msg2, path2 + ": /tokens/frame: has 7 tokens but /tokens/modality has 8"));

  // The streaming path checks too, not only validate_trace: opening checks every layer's extents (before any
  // layer is read), so the reader refuses the file.
  CHECK_THROWS_AS(TraceReader(path), ShapeError);
}

TEST_CASE("NaN in K is an IoError naming file, dataset and the first bad index", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "nan.h5");
  {
    EditTrace edit(path);
    edit.set_half("/layers/001/key", {1, 3, 2}, std::numeric_limits<float>::quiet_NaN());
    edit.set_half("/layers/001/key", {1, 6, 0}, std::numeric_limits<float>::quiet_NaN());  // later: not reported
  }
  const auto msg = validation_error<IoError>(path);
  CHECK(contains(msg, path + ": /layers/001/key: non-finite value nan at [kv_head 1, token 3, dim 2]"));
}

TEST_CASE("Inf in V is an IoError naming file, dataset and index", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "inf.h5");
  EditTrace(path).set_half("/layers/000/value", {0, 5, 1}, -std::numeric_limits<float>::infinity());
  const auto msg = validation_error<IoError>(path);
  CHECK(contains(msg, path + ": /layers/000/value: non-finite value -inf at [kv_head 0, token 5, dim 1]"));
  // The streaming reader finds it as well.
  CHECK_THROWS_AS(TraceReader(path).read_layer(0), IoError);
}

TEST_CASE("Inf in recorded queries is an IoError naming /layers/NNN/query", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "qinf.h5");
  EditTrace(path).set_half("/layers/001/query", {3, 1, 0}, std::numeric_limits<float>::infinity());
  CHECK(contains(validation_error<IoError>(path), path + ": /layers/001/query: non-finite value inf at [query_head 3, query 1, dim 0]"));
}

TEST_CASE("bad root attributes and /model are IoErrors naming the attribute", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "schema.h5");
  EditTrace(path).set_fixed_string_attr("schema", "something.else");
  CHECK(contains(validation_error<IoError>(path), path + ": /: attribute 'schema' is 'something.else'"));

  const std::string path2 = valid_copy(dir, "version.h5");
  EditTrace(path2).set_int64_attr("/", "schema_version", 2);
  CHECK(contains(validation_error<IoError>(path2), "unsupported schema_version 2"));

  const std::string path3 = valid_copy(dir, "noattr.h5");
  H5Adelete(EditTrace(path3).file(), "dtype");
  CHECK(contains(validation_error<IoError>(path3), path3 + ": /: missing attribute 'dtype'"));

  const std::string path4 = valid_copy(dir, "heads.h5");
  EditTrace(path4).set_int64_attr("/model", "num_kv_heads", 3);
  CHECK(contains(validation_error<IoError>(path4), path4 + ": /model: num_query_heads 4 is not a multiple of num_kv_heads 3"));

  // /model says 4 KV heads with 4 query heads: the layers' head axis (2) disagrees.
  const std::string path5 = valid_copy(dir, "heads2.h5");
  EditTrace(path5).set_int64_attr("/model", "num_kv_heads", 4);
  const auto msg5 = validation_error<ShapeError>(path5);
  CHECK(contains(msg5, path5 + ": /layers/000/key: axis 0 (kv_head) has 2 entries but /model num_kv_heads says 4"));
}

TEST_CASE("token metadata inconsistent with modality is an IoError naming the dataset and token", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "frame.h5");
  {
    // Token 0 is system text but gets frame 0 (the whole array is replaced by zeros).
    EditTrace(path).replace("/tokens/frame", H5T_STD_I32LE, {8});
  }
  CHECK(contains(validation_error<IoError>(path), path + ": /tokens/frame: token 0 (context text) has frame 0, expected -1"));

  const std::string path2 = valid_copy(dir, "modality.h5");
  {
    EditTrace edit(path2);
    std::vector<std::uint8_t> codes = {0, 0, 1, 1, 1, 1, 2, 7};
    hid_t ds = H5Dopen2(edit.file(), "/tokens/modality", H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, codes.data());
    H5Dclose(ds);
  }
  CHECK(contains(validation_error<IoError>(path2), path2 + ": /tokens/modality: token 7 has modality code 7"));
}

TEST_CASE("reading a layer outside the trace is a ConfigError naming the file", "[traces][errors]") {
  TempDir dir;
  const std::string path = valid_copy(dir, "layers.h5");
  TraceReader r(path);
  try {
    r.read_layer(2);
    FAIL("read_layer(2) of a 2-layer trace succeeded");
  } catch (const ConfigError& e) {
    CHECK(contains(e.what(), path + ": layer 2 does not exist"));
  }
}
