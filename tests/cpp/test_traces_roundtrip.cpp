// Trace write -> read round trips (fp32, fp16, bf16), the stored HDF5 layout, atomic writes, and appending
// decode steps.
#include <algorithm>
#include <filesystem>
#include <fstream>

#include "catch.h"
#include "trace_test_support.h"
#include "vidkv/core/error.h"
#include "vidkv/traces/trace_reader.h"
#include "vidkv/traces/trace_validation.h"
#include "vidkv/traces/trace_writer.h"

using namespace vidkv;
using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

void check_tokens(const TraceReader& r) {
  const TraceTokens want = SmallTrace::tokens();
  const TraceTokens got = r.tokens();
  CHECK(got.modality == want.modality);
  CHECK(got.position == want.position);
  CHECK(got.frame == want.frame);
  CHECK(got.patch_row == want.patch_row);
  CHECK(got.patch_col == want.patch_col);
  CHECK(got.hidden == SmallTrace::kHidden);
  // Embeddings are multiples of 1/4 in [-0.5, 1]: exact in fp16 and fp32.
  CHECK(got.embeddings == want.embeddings);
  CHECK(r.token_ids() == SmallTrace::ids());
  CHECK(r.query_positions() == std::vector<std::int32_t>{6, 7});
}

}  // namespace

TEST_CASE("fp32 trace round trip is bit-exact", "[traces][roundtrip]") {
  TempDir dir;
  const std::string path = dir.file("small32.h5");
  SmallTrace::write(path, DType::f32);
  TraceReader r(path);
  const TraceInfo& in = r.info();
  CHECK(in.schema_version == 1);
  CHECK(in.producer == "vidkv tests");
  CHECK(in.created_at == "2026-01-02T03:04:05Z");
  CHECK(in.source == "model");
  CHECK(in.model_id == "test/small");
  CHECK(in.model_family == "test");
  CHECK(in.dtype == DType::f32);
  CHECK(in.num_layers == 2);
  CHECK(in.num_kv_heads == 2);
  CHECK(in.num_query_heads == 4);
  CHECK(in.head_dim == 4);
  CHECK(in.hidden_size == 6);
  CHECK(in.rope == "post");
  CHECK(in.tokens == 8);
  CHECK(in.queries == 2);
  CHECK(in.has_embeddings);
  CHECK(in.has_token_ids);
  CHECK(in.provenance.at("prompt") == "what happens in the video?");
  CHECK(in.provenance.at("model_revision") == "abc123");
  check_tokens(r);
  for (int l = 0; l < SmallTrace::kLayers; ++l) {
    const LayerData d = r.read_layer(l);
    CHECK(d.heads == 2);
    CHECK(d.tokens == 8);
    CHECK(d.dim == 4);
    CHECK(d.key == SmallTrace::layer_key(l));
    CHECK(d.value == SmallTrace::layer_value(l));
    REQUIRE(d.queries);
    CHECK(d.queries->heads == 4);
    CHECK(d.queries->count == 2);
    CHECK(d.queries->dim == 4);
    CHECK(d.queries->data == SmallTrace::layer_query(l));
    CHECK(d.queries->token_index == std::vector<std::int32_t>{6, 7});
  }
}

TEST_CASE("fp16 trace round trip is bit-exact and rounds fp32 input to nearest even", "[traces][roundtrip]") {
  TempDir dir;
  const std::string path = dir.file("small16.h5");
  SmallTrace::write(path, DType::f16);
  TraceReader r(path);
  CHECK(r.info().dtype == DType::f16);
  check_tokens(r);
  const LayerData d = r.read_layer(1);
  // Keys are multiples of 1/16 below 2: exact in fp16, so they come back unchanged.
  CHECK(d.key == SmallTrace::layer_key(1));
  // Hand-worked: V[1][0][0][0] = -K/2 + 1/3 with K = 2 * 1 * (0 - 3.5) / 8 + 0 = -0.875, so V = 0.4375 + 1/3
  // = 0.770833...; fp16 has spacing 2^-11 in [0.5, 1): 0.770833 * 2048 = 1578.67 -> 1579 / 2048 = 0.77099609375.
  CHECK(d.value[0] == 0.77099609375f);
  for (std::size_t i = 0; i < d.value.size(); ++i) REQUIRE(d.value[i] == round_to_dtype(SmallTrace::layer_value(1)[i], DType::f16));

  // Writing 16-bit views stores the given bits unchanged: every fp16 bit pattern of a finite value survives.
  const std::string raw = dir.file("raw16.h5");
  const std::size_t n = SmallTrace::kKvHeads * SmallTrace::kTokens * SmallTrace::kDim;  // 64 values per tensor
  std::vector<std::uint16_t> kbits(n), vbits(n);
  for (std::size_t i = 0; i < n; ++i) {
    kbits[i] = static_cast<std::uint16_t>(0x0001 + i * 0x01ef);  // spans subnormals to 0x7a..: all finite
    vbits[i] = static_cast<std::uint16_t>(0x8000 | kbits[i]);     // the negatives
  }
  {
    TraceWriter w(raw, SmallTrace::metadata(DType::f16));
    w.write_tokens(SmallTrace::tokens());
    const std::vector<std::int64_t> shape = {SmallTrace::kKvHeads, SmallTrace::kTokens, SmallTrace::kDim};
    for (int l = 0; l < SmallTrace::kLayers; ++l)
      w.write_layer(l, TensorView{kbits.data(), DType::f16, Device::cpu, shape}, TensorView{vbits.data(), DType::f16, Device::cpu, shape});
    w.finish();
  }
  TraceReader rr(raw);
  const LayerData back = rr.read_layer(0);
  CHECK_FALSE(back.queries);
  for (std::size_t i = 0; i < n; ++i) {
    REQUIRE(float_to_half_bits(back.key[i]) == kbits[i]);
    REQUIRE(float_to_half_bits(back.value[i]) == vbits[i]);
  }
}

TEST_CASE("bf16 traces are stored as uint16 raw bits with dtype attribute bfloat16", "[traces][roundtrip]") {
  TempDir dir;
  const std::string path = dir.file("small_bf16.h5");
  SmallTrace::write(path, DType::bf16);
  LayerData d;
  {
    TraceReader r(path);  // closed before the raw open below (see TraceReader: evict-on-close file access)
    CHECK(r.info().dtype == DType::bf16);
    d = r.read_layer(0);
  }
  // Hand-worked: K[0][0][0][0] = 1 * 1 * (0 - 3.5) / 8 = -0.4375, so V = 0.21875 + 1/3 = 0.552083...; bf16 has
  // spacing 2^-8 in [0.5, 1): 0.552083 * 256 = 141.33 -> 141 / 256 = 0.55078125.
  CHECK(d.value[0] == 0.55078125f);
  for (std::size_t i = 0; i < d.key.size(); ++i) REQUIRE(d.key[i] == round_to_dtype(SmallTrace::layer_key(0)[i], DType::bf16));

  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t ds = H5Dopen2(f, "/layers/000/key", H5P_DEFAULT);
  hid_t type = H5Dget_type(ds);
  CHECK(H5Tget_class(type) == H5T_INTEGER);
  CHECK(H5Tget_size(type) == 2);
  CHECK(H5Tget_sign(type) == H5T_SGN_NONE);
  H5Tclose(type);
  H5Dclose(ds);

  // The same bits stored as int16 (torch's .view(torch.int16)) read back identically, negative values included.
  std::vector<std::int16_t> bits;
  for (float v : d.key) bits.push_back(static_cast<std::int16_t>(float_to_bf16_bits(v)));
  CHECK(*std::min_element(bits.begin(), bits.end()) < 0);  // K has negative entries: sign bit set
  H5Fclose(f);
  {
    test::EditTrace edit(path);
    edit.replace("/layers/000/key", H5T_STD_I16LE, {2, 8, 4});
    hid_t kds = H5Dopen2(edit.file(), "/layers/000/key", H5P_DEFAULT);
    REQUIRE(H5Dwrite(kds, H5T_NATIVE_INT16, H5S_ALL, H5S_ALL, H5P_DEFAULT, bits.data()) >= 0);
    H5Dclose(kds);
  }
  CHECK(TraceReader(path).read_layer(0).key == d.key);
}

TEST_CASE("stored layout follows SCHEMA.md: half type, token-block chunks, unlimited token axis", "[traces][roundtrip]") {
  TempDir dir;
  const std::string path = dir.file("layout.h5");
  SmallTrace::write(path, DType::f16);
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t ds = H5Dopen2(f, "/layers/001/value", H5P_DEFAULT);
  hid_t type = H5Dget_type(ds);
  CHECK(H5Tget_class(type) == H5T_FLOAT);
  CHECK(H5Tget_size(type) == 2);
  std::size_t spos, epos, esize, mpos, msize;
  H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize);
  CHECK((spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10));
  hid_t space = H5Dget_space(ds);
  hsize_t dims[3], maxdims[3];
  REQUIRE(H5Sget_simple_extent_dims(space, dims, maxdims) == 3);
  CHECK((dims[0] == 2 && dims[1] == 8 && dims[2] == 4));
  CHECK((maxdims[0] == 2 && maxdims[1] == H5S_UNLIMITED && maxdims[2] == 4));
  hid_t plist = H5Dget_create_plist(ds);
  hsize_t chunk[3];
  REQUIRE(H5Pget_chunk(plist, 3, chunk) == 3);
  CHECK((chunk[0] == 1 && chunk[1] == 8 && chunk[2] == 4));  // min(256, T = 8) tokens per chunk
  H5Pclose(plist);
  H5Sclose(space);
  H5Tclose(type);
  H5Dclose(ds);
  hid_t mod = H5Dopen2(f, "/tokens/modality", H5P_DEFAULT);
  hid_t mtype = H5Dget_type(mod);
  CHECK(H5Tequal(mtype, H5T_STD_U8LE) > 0);
  H5Tclose(mtype);
  H5Dclose(mod);
  hid_t patch = H5Dopen2(f, "/tokens/patch", H5P_DEFAULT);
  hid_t ptype = H5Dget_type(patch);
  CHECK(H5Tequal(ptype, H5T_STD_I16LE) > 0);
  H5Tclose(ptype);
  H5Dclose(patch);
  H5Fclose(f);
}

TEST_CASE("writer leaves no file behind unless finish() succeeds", "[traces][writer]") {
  TempDir dir;
  const std::string path = dir.file("never.h5");
  {
    TraceWriter w(path, SmallTrace::metadata(DType::f16));
    w.write_tokens(SmallTrace::tokens());
    CHECK(std::filesystem::exists(path + ".partial"));
    CHECK_FALSE(std::filesystem::exists(path));
    w.write_layer(0, SmallTrace::layer_key(0), SmallTrace::layer_value(0));
    // Layer 1 is missing: finish() refuses, and the destructor removes the partial file.
    try {
      w.finish();
      FAIL("finish() accepted a trace with a missing layer");
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()).find("layer 1") != std::string::npos);
    }
  }
  CHECK_FALSE(std::filesystem::exists(path));
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));

  // A wrong-sized layer is a ShapeError naming the file and dataset, and nothing is left either.
  {
    TraceWriter w(path, SmallTrace::metadata(DType::f16));
    w.write_tokens(SmallTrace::tokens());
    std::vector<float> short_key(10, 0.0f);
    try {
      w.write_layer(0, short_key, SmallTrace::layer_value(0));
      FAIL("write_layer accepted 10 values for [2, 8, 4]");
    } catch (const ShapeError& e) {
      CHECK(std::string(e.what()).find(path) != std::string::npos);
      CHECK(std::string(e.what()).find("/layers/000/key") != std::string::npos);
    }
  }
  CHECK(std::filesystem::is_empty(dir.path()));
}

TEST_CASE("append_decode_steps grows every per-token dataset and layer", "[traces][append]") {
  TempDir dir;
  const std::string path = dir.file("decode.h5");
  SmallTrace::write(path, DType::f16);

  const int n = 3;
  DecodeSteps steps;
  steps.tokens = TraceTokens::uniform(n, Modality::generated);
  for (int i = 0; i < n; ++i) steps.tokens.position[static_cast<std::size_t>(i)] = 8 + i;
  steps.tokens.hidden = SmallTrace::kHidden;
  steps.tokens.embeddings.assign(n * SmallTrace::kHidden, 0.75f);
  steps.ids = {11, 12, 13};
  for (int l = 0; l < SmallTrace::kLayers; ++l) {
    std::vector<float> k, v;
    for (int h = 0; h < SmallTrace::kKvHeads; ++h)
      for (int t = 0; t < n; ++t)
        for (int c = 0; c < SmallTrace::kDim; ++c) {
          k.push_back(static_cast<float>(100 * l + 10 * h + t) + c * 0.5f);  // integers + halves: exact in fp16
          v.push_back(-static_cast<float>(t + c));
        }
    steps.key.push_back(k);
    steps.value.push_back(v);
  }
  append_decode_steps(path, steps);
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));

  TraceReader r(path);
  REQUIRE(r.info().tokens == 11);
  CHECK(r.info().queries == 2);
  const TraceTokens tok = r.tokens();
  CHECK(tok.modality[10] == Modality::generated);
  CHECK(tok.position[9] == 9);
  CHECK(tok.frame[8] == -1);
  CHECK(tok.patch_col[10] == -1);
  CHECK(tok.embeddings[8 * SmallTrace::kHidden + 5] == 0.75f);
  CHECK(tok.modality[3] == Modality::visual);  // old tokens untouched
  const auto ids = r.token_ids();
  CHECK(ids == std::vector<std::int32_t>{101, 102, 900, 900, 900, 900, 7, 8, 11, 12, 13});
  for (int l = 0; l < SmallTrace::kLayers; ++l) {
    const LayerData d = r.read_layer(l);
    const auto old_key = SmallTrace::layer_key(l);
    for (int h = 0; h < SmallTrace::kKvHeads; ++h) {
      for (int t = 0; t < 11; ++t) {
        for (int c = 0; c < SmallTrace::kDim; ++c) {
          const float got = d.key[static_cast<std::size_t>((h * 11 + t) * SmallTrace::kDim + c)];
          const float want = t < 8 ? old_key[static_cast<std::size_t>((h * 8 + t) * SmallTrace::kDim + c)]
                                   : static_cast<float>(100 * l + 10 * h + (t - 8)) + c * 0.5f;
          REQUIRE(got == want);
        }
      }
    }
    // value[h = 1, t = 10 (decode step 2), c = 3] = -(2 + 3) = -5
    CHECK(d.value[static_cast<std::size_t>((1 * 11 + 10) * SmallTrace::kDim + 3)] == -5.0f);
  }
  CHECK(validate_trace(path).info.tokens == 11);

  // A second append works on the grown trace (the token axis stays unlimited).
  append_decode_steps(path, steps);
  CHECK(TraceReader(path).info().tokens == 14);

  // Steps for the wrong number of layers: ShapeError, the trace is left as it was, no partial file.
  const auto size_before = std::filesystem::file_size(path);
  DecodeSteps bad = steps;
  bad.key.pop_back();
  CHECK_THROWS_AS(append_decode_steps(path, bad), ShapeError);
  CHECK(TraceReader(path).info().tokens == 14);
  CHECK(std::filesystem::file_size(path) == size_before);
  CHECK_FALSE(std::filesystem::exists(path + ".partial"));
  // Missing ids for a trace that has /tokens/ids.
  bad = steps;
  bad.ids.clear();
  CHECK_THROWS_AS(append_decode_steps(path, bad), ShapeError);
}

TEST_CASE("reader accepts fixed-length string attributes and int64 integer attributes", "[traces][reader]") {
  // h5py writes variable-length UTF-8 strings (what TraceWriter writes too); other writers use fixed-length
  // strings, and numpy integers may arrive as int64.
  TempDir dir;
  const std::string path = dir.file("fixed.h5");
  SmallTrace::write(path, DType::f32);
  {
    test::EditTrace edit(path);
    edit.set_fixed_string_attr("model_id", "Qwen/Qwen2.5-VL-7B-Instruct");
    edit.set_fixed_string_attr("dtype", "float32");
    edit.set_int64_attr("/", "schema_version", 1);
    edit.set_int64_attr("/model", "num_layers", 2);
    edit.set_int64_attr("/", "frames_used", 32);
  }
  TraceReader r(path);
  CHECK(r.info().model_id == "Qwen/Qwen2.5-VL-7B-Instruct");  // space padding stripped
  CHECK(r.info().dtype == DType::f32);
  CHECK(r.info().num_layers == 2);
  CHECK(r.info().provenance.at("frames_used") == "32");
  CHECK(r.read_layer(1).key == SmallTrace::layer_key(1));
}
