// `rope: pre` traces (issue 14 item 2): replay applies the rotary embedding /model states (core/rotary.h) from
// /tokens/position before the attention metrics, and refuses attention metrics when the trace states none; backend:
// cuda rotates on the device (issue 11 item 3: experiments/src/cuda_rotary.h) with the same bits and metrics.
#include <cmath>
#include <complex>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "backend_rows_compare.h"
#include "catch.h"
#include "cuda_test_support.h"
#include "test_registry.h"
#include "trace_test_support.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/core/rotary.h"
#include "vidkv/experiments/src/experiment_plan.h"
#include "vidkv/experiments/src/experiment_runner.h"
#include "vidkv/traces/synthetic_trace.h"
#include "vidkv/traces/trace_reader.h"
#ifdef VIDKV_WITH_CUDA
#include "vidkv/experiments/src/cuda_rotary.h"
#endif

using namespace vidkv;
using vidkv::test::SmallTrace;
using vidkv::test::TempDir;

namespace {

const std::string kVidkv = std::string(VIDKV_BINARY_DIR) + "/bin/vidkv";

// Positions that are not the token indices (so a replay that used indices would differ): 3 i + 1.
std::int32_t position_of(int i) { return 3 * i + 1; }

// The test's own RoPE (rotate_half pairing, theta 100), written with complex numbers: the pair (x_i, x_{i+D/2}) is
// the complex number x_i + j x_{i+D/2}, multiplied by exp(j p theta^(-2i/D)).
std::vector<float> rotated(const std::vector<float>& x, int rows, int dim, const std::vector<std::int32_t>& pos) {
  std::vector<float> out = x;
  for (std::size_t r = 0; r < x.size() / static_cast<std::size_t>(dim); ++r)
    for (int i = 0; i < dim / 2; ++i) {
      const double angle = pos[r % static_cast<std::size_t>(rows)] * std::pow(100.0, -2.0 * i / dim);
      const std::complex<double> z = std::complex<double>(x[r * dim + i], x[r * dim + i + dim / 2]) * std::polar(1.0, angle);
      out[r * dim + i] = static_cast<float>(z.real());
      out[r * dim + i + dim / 2] = static_cast<float>(z.imag());
    }
  return out;
}

enum class Stored { pre_with_theta, pre_without_theta, post_rotated, post_unrotated };

// SmallTrace (2 layers, 2 KV heads, 4 query heads, 8 tokens, head_dim 4, queries at tokens 6 and 7) in fp32, with
// positions 3 i + 1, its keys and queries stored as `how` says.
void write_trace(const std::string& path, Stored how) {
  TraceMetadata m = SmallTrace::metadata(DType::f32);
  m.rope = how == Stored::pre_with_theta || how == Stored::pre_without_theta ? "pre" : "post";
  if (how == Stored::pre_with_theta) m.rotary = RotaryParams{100.0};
  TraceWriter w(path, m);
  TraceTokens t = SmallTrace::tokens();
  for (int i = 0; i < SmallTrace::kTokens; ++i) t.position[static_cast<std::size_t>(i)] = position_of(i);
  w.write_tokens(t, SmallTrace::ids());
  w.write_query_positions({6, 7});
  std::vector<std::int32_t> key_pos, query_pos = {position_of(6), position_of(7)};
  for (int i = 0; i < SmallTrace::kTokens; ++i) key_pos.push_back(position_of(i));
  for (int l = 0; l < SmallTrace::kLayers; ++l) {
    auto k = SmallTrace::layer_key(l), q = SmallTrace::layer_query(l);
    if (how == Stored::post_rotated) {
      k = rotated(k, SmallTrace::kTokens, SmallTrace::kDim, key_pos);
      q = rotated(q, SmallTrace::kQueries, SmallTrace::kDim, query_pos);
    }
    w.write_layer(l, k, SmallTrace::layer_value(l), &q);
  }
  w.finish();
}

// A SyntheticTrace (2 layers, 2 KV heads, 4 query heads, head_dim 64, 520 tokens of 4 frames, fp16, query states
// recorded) stored as a rope: pre trace with `rotary` and positions 3 i + 1.
void write_synthetic_pre(const std::string& path, const RotaryParams& rotary) {
  SyntheticTraceSpec spec;
  spec.layers = 2;
  spec.kv_heads = 2;
  spec.query_heads = 4;
  spec.tokens = 520;
  spec.head_dim = 64;
  spec.frames = 4;
  const SyntheticTrace trace(spec);
  const SyntheticTraceSpec& s = trace.spec();
  TraceMetadata m;
  m.source = "synthetic";
  m.model_id = m.model_family = "synthetic";
  m.dtype = s.dtype;
  m.num_layers = s.layers;
  m.num_kv_heads = s.kv_heads;
  m.num_query_heads = s.query_heads;
  m.head_dim = s.head_dim;
  m.hidden_size = s.hidden;
  m.rope = "pre";
  m.rotary = rotary;
  TraceWriter w(path, m);
  TraceTokens t = trace.tokens();
  for (std::size_t i = 0; i < t.position.size(); ++i) t.position[i] = position_of(static_cast<int>(i));
  w.write_tokens(t);
  w.write_query_positions(trace.query_positions());
  for (int l = 0; l < s.layers; ++l) {
    const LayerData d = trace.layer(l);
    w.write_layer(l, d.key, d.value, &d.queries->data);
  }
  w.finish();
}

struct Run {
  int status;
  std::string out;
};

// `backend`: the experiment's backend: line ("cpu" or "cuda").
Run vidkv_run(const TempDir& dir, const std::string& trace, const std::string& name, const std::string& backend = "cpu") {
  const std::string exp = dir.file(name + ".yaml"), out = dir.file(name);
  std::ofstream(exp) << "name: " << name << "\ntraces: [" << trace << "]\nmetrics: [all]\nbackend: " << backend << "\n"
                     << "codec:\n  key: {type: identity, dtype: fp32}\n"
                     << "  value: {type: uniform, bits: 2, group: 4, axis: token}\n"
                     << "lifecycle: {type: paper, group: 4}\n";
  const std::string log = dir.file(name + ".log");
  const int rc = std::system((kVidkv + " run " + exp + " --quiet --out " + out + " >" + log + " 2>&1").c_str());
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, text.str() + "|" + out};
}

// attn_out_rel_error of the per-trace aggregate row of results.csv.
double attention_error(const std::string& dir) {
  std::ifstream in(dir + "/results.csv");
  std::string header, line;
  std::getline(in, header);
  std::vector<std::string> cols;
  std::stringstream hs(header);
  for (std::string c; std::getline(hs, c, ',');) cols.push_back(c);
  while (std::getline(in, line)) {
    std::vector<std::string> cells;
    std::stringstream ls(line);
    for (std::string c; std::getline(ls, c, ',');) cells.push_back(c);
    auto at = [&](const std::string& name) {
      for (std::size_t i = 0; i < cols.size(); ++i)
        if (cols[i] == name) return cells[i];
      return std::string();
    };
    if (at("layer") == "-1" && at("kv_head") == "-1") return std::strtod(at("attn_out_rel_error").c_str(), nullptr);
  }
  return NAN;
}

}  // namespace

TEST_CASE("apply_rotary equals RoPE worked out by hand", "[rotary]") {
  // D = 4, theta = 100: inverse frequencies 100^0 = 1 and 100^(-1/2) = 0.1; x = [1, 2, 3, 4] at position 2:
  // angles 2 and 0.2 (cos 2 = -0.4161468365, sin 2 = 0.9092974268, cos 0.2 = 0.9800665778, sin 0.2 = 0.1986693308).
  // half pairs (0, 2), (1, 3): [1 cos2 - 3 sin2, 2 cos.2 - 4 sin.2, 3 cos2 + 1 sin2, 4 cos.2 + 2 sin.2]
  //                          = [-3.1440391, 1.1654558, -0.3391431, 4.3176050]
  // interleaved pairs (0, 1), (2, 3): [1 cos2 - 2 sin2, 2 cos2 + 1 sin2, 3 cos.2 - 4 sin.2, 4 cos.2 + 3 sin.2]
  //                          = [-2.2347417, 0.0770037, 2.1455224, 4.5162743]
  // linear scaling x 2 at position 4 is the default at position 2.
  const auto near = [](const std::vector<float>& a, const std::vector<double>& b) {
    for (std::size_t i = 0; i < b.size(); ++i)
      if (std::fabs(a[i] - b[i]) > 1e-6) return false;
    return true;
  };
  std::vector<float> x{1, 2, 3, 4};
  apply_rotary(x.data(), 4, 2, RotaryParams{100.0});
  CHECK(near(x, {-3.1440391, 1.1654558, -0.3391431, 4.3176050}));
  x = {1, 2, 3, 4};
  apply_rotary(x.data(), 4, 2, RotaryParams{100.0, RotaryScaling::none, 1.0, RotaryPairing::interleaved});
  CHECK(near(x, {-2.2347417, 0.0770037, 2.1455224, 4.5162743}));
  x = {1, 2, 3, 4};
  apply_rotary(x.data(), 4, 4, RotaryParams{100.0, RotaryScaling::linear, 2.0});
  CHECK(near(x, {-3.1440391, 1.1654558, -0.3391431, 4.3176050}));
}

TEST_CASE("rotary parameters round-trip through /model", "[rotary][traces]") {
  TempDir dir;
  write_trace(dir.file("pre.h5"), Stored::pre_with_theta);
  const TraceInfo info = TraceReader(dir.file("pre.h5")).info();
  REQUIRE(info.rotary);
  CHECK(info.rotary->theta == 100.0);
  CHECK(info.rotary->pairing == RotaryPairing::half);
  write_trace(dir.file("bare.h5"), Stored::pre_without_theta);
  CHECK_FALSE(TraceReader(dir.file("bare.h5")).info().rotary);
}

TEST_CASE("a rope: pre trace replays attention like the same trace stored post-RoPE, and without theta it is refused",
          "[rotary][experiments]") {
  // Keys exact (identity fp32), values 2-bit: attn_out_rel_error measures the value error weighted by the attention
  // probabilities, which depend on the rotation. The pre trace (rotated by replay) must match the trace stored
  // already rotated (by the test's own RoPE above) to rounding; the unrotated keys (what replay did before) differ.
  TempDir dir;
  for (const auto& [name, how] : {std::pair{"pre", Stored::pre_with_theta}, std::pair{"post", Stored::post_rotated},
                                  std::pair{"plain", Stored::post_unrotated}, std::pair{"bare", Stored::pre_without_theta}})
    write_trace(dir.file(std::string(name) + ".h5"), how);
  const Run pre = vidkv_run(dir, dir.file("pre.h5"), "pre");
  const Run post = vidkv_run(dir, dir.file("post.h5"), "post");
  const Run plain = vidkv_run(dir, dir.file("plain.h5"), "plain");
  REQUIRE(pre.status == 0);
  REQUIRE(post.status == 0);
  REQUIRE(plain.status == 0);
  const double e_pre = attention_error(dir.file("pre")), e_post = attention_error(dir.file("post"));
  const double e_plain = attention_error(dir.file("plain"));
  INFO("pre " << e_pre << ", post " << e_post << ", unrotated " << e_plain);
  CHECK(std::fabs(e_pre - e_post) <= 1e-5 * e_post);
  CHECK(std::fabs(e_plain - e_post) > 1e-3 * e_post);
  std::ifstream prov(dir.file("pre") + "/provenance.json");
  std::stringstream p;
  p << prov.rdbuf();
  CHECK(p.str().find("rotated from /tokens/position (theta 100, half pairing)") != std::string::npos);
  const Run bare = vidkv_run(dir, dir.file("bare.h5"), "bare");
  CHECK(bare.status == 1);
  CHECK(bare.out.find("rope_theta") != std::string::npos);
  CHECK(bare.out.find("attn_*") != std::string::npos);
}

TEST_CASE("rotary_cos_sin's table rotates as apply_rotary does, bit for bit", "[rotary]") {
  // The host half of backend: cuda's rotation (the device applies the same table with the same rotate_pair, test
  // below): rotating each pair of a row by its table entry gives apply_rotary's bits, both pairings, both scalings.
  std::mt19937_64 rng(3);
  std::normal_distribution<float> normal;
  for (const RotaryParams& p : {RotaryParams{10000.0}, RotaryParams{500000.0, RotaryScaling::linear, 8.0, RotaryPairing::interleaved}}) {
    INFO(p.str());
    const std::int64_t rows = 50, dim = 128, half = dim / 2;
    std::vector<std::int32_t> positions(static_cast<std::size_t>(rows));
    for (auto& pos : positions) pos = static_cast<std::int32_t>(rng() % 100000);
    std::vector<float> x(static_cast<std::size_t>(rows * dim));
    for (auto& v : x) v = normal(rng);
    std::vector<float> want = x;
    apply_rotary_rows(want.data(), 1, rows, dim, positions.data(), p);
    const std::vector<double> table = rotary_cos_sin(positions.data(), rows, dim, p);
    REQUIRE(table.size() == static_cast<std::size_t>(rows * dim));
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t i = 0; i < half; ++i) {
        std::int64_t j0 = 0, j1 = 0;
        rotary_pair(p.pairing, i, half, j0, j1);
        const double* cs = table.data() + (r * half + i) * 2;
        rotate_pair(x.data() + r * dim, j0, j1, cs[0], cs[1]);
      }
    CHECK(std::memcmp(x.data(), want.data(), x.size() * sizeof(float)) == 0);
  }
  CHECK_THROWS_AS(rotary_cos_sin(nullptr, 0, 5, RotaryParams{}), ShapeError);
}

#ifdef VIDKV_WITH_CUDA
TEST_CASE("the rotary embedding on cuda is bit-identical to apply_rotary", "[rotary][cuda]") {
  // backend: cuda rotates rope: pre keys and queries on the device (experiments/src/cuda_rotary.h) from the host's
  // cos / sin table: every element must carry apply_rotary_rows's bits. Both pairings, both scalings, head dims 2 to
  // 128, positions up to 2^20 (angles far beyond 2 pi), values from 1e-3 to 1e4 in magnitude; keys (table row =
  // row) and queries (table row = the query's token index).
  VIDKV_REQUIRE_CUDA_DEVICE();
  struct Case {
    RotaryParams p;
    std::int64_t dim;
  };
  const std::vector<Case> cases = {{RotaryParams{10000.0}, 128},
                                   {RotaryParams{500000.0, RotaryScaling::linear, 8.0, RotaryPairing::interleaved}, 64},
                                   {RotaryParams{100.0, RotaryScaling::linear, 0.5, RotaryPairing::half}, 2},
                                   {RotaryParams{1e6, RotaryScaling::none, 1.0, RotaryPairing::interleaved}, 80}};
  std::mt19937_64 rng(7);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> decade(-3.0f, 4.0f);
  const std::int64_t heads = 3, tokens = 301, count = 7;
  for (const Case& c : cases) {
    INFO(c.p.str() << ", head_dim " << c.dim);
    std::vector<std::int32_t> positions(static_cast<std::size_t>(tokens)), token_index(static_cast<std::size_t>(count));
    for (auto& p : positions) p = static_cast<std::int32_t>(rng() % (1u << 20));
    for (auto& i : token_index) i = static_cast<std::int32_t>(rng() % static_cast<std::uint64_t>(tokens));
    std::vector<float> key(static_cast<std::size_t>(heads * tokens * c.dim)), query(static_cast<std::size_t>(heads * count * c.dim));
    for (auto* x : {&key, &query})
      for (auto& v : *x) v = normal(rng) * std::pow(10.0f, decade(rng));
    std::vector<float> want_key = key, want_query = query;
    apply_rotary_rows(want_key.data(), heads, tokens, c.dim, positions.data(), c.p);
    std::vector<std::int32_t> query_positions;
    for (const std::int32_t i : token_index) query_positions.push_back(positions[static_cast<std::size_t>(i)]);
    apply_rotary_rows(want_query.data(), heads, count, c.dim, query_positions.data(), c.p);
    REQUIRE(want_key != key);  // the rotation moved the values (so equal bits below are not a no-op)

    const std::vector<double> table = rotary_cos_sin(positions.data(), tokens, c.dim, c.p);
    DeviceBuffer d_table(table.size() * sizeof(double)), d_key(key.size() * sizeof(float)),
        d_query(query.size() * sizeof(float)), d_index(token_index.size() * sizeof(std::int32_t));
    copy_to_device(d_table.data(), table.data(), d_table.bytes());
    copy_to_device(d_key.data(), key.data(), d_key.bytes());
    copy_to_device(d_query.data(), query.data(), d_query.bytes());
    copy_to_device(d_index.data(), token_index.data(), d_index.bytes());
    rotary_cuda::rotate_rows(d_key.as<float>(), heads, tokens, c.dim, d_table.as<const double>(), nullptr, c.p.pairing, nullptr);
    rotary_cuda::rotate_rows(d_query.as<float>(), heads, count, c.dim, d_table.as<const double>(),
                             d_index.as<const std::int32_t>(), c.p.pairing, nullptr);
    std::vector<float> got_key(key.size()), got_query(query.size());
    copy_to_host(got_key.data(), d_key.data(), d_key.bytes());
    copy_to_host(got_query.data(), d_query.data(), d_query.bytes());
    const auto as_bytes = [](const std::vector<float>& v) {
      return std::vector<std::uint8_t>(reinterpret_cast<const std::uint8_t*>(v.data()),
                                       reinterpret_cast<const std::uint8_t*>(v.data() + v.size()));
    };
    CHECK(vidkv::test::first_difference(as_bytes(got_key), as_bytes(want_key)) == -1);
    CHECK(vidkv::test::first_difference(as_bytes(got_query), as_bytes(want_query)) == -1);
  }
}
#else
TEST_CASE("the rotary embedding on cuda is bit-identical to apply_rotary", "[rotary][cuda]") {
  VIDKV_SKIP("this build has no CUDA backend (configure with -DVIDKV_ENABLE_CUDA=ON where nvcc is installed)");
}
#endif

TEST_CASE("a rope: pre trace replayed with backend: cuda gives the backend: cpu metrics", "[rotary][cuda]") {
  // backend: cuda rotates keys (exact and reconstructed) and queries on the device as backend: cpu does on the host
  // (bit-identical rotations, test above), so every metric, attention included, agrees within the tolerance of
  // backend_rows_compare.h. Two synthetic rope: pre traces (GQA 2 KV x 4 query heads, head_dim 64, 520 tokens,
  // positions 3 i + 1): RoPE theta 10000 with half pairing, and theta 500000, linear x 4, interleaved pairing.
  // A device replay that skipped any rotation would differ: the attention metrics by far more than the envelope,
  // key_* by fp32 roundings (~1e-7 relative, above 1e-9).
  VIDKV_REQUIRE_CUDA_DEVICE();
  TempDir dir;
  const std::string half = dir.file("pre-half.h5"), interleaved = dir.file("pre-interleaved.h5");
  write_synthetic_pre(half, RotaryParams{10000.0});
  write_synthetic_pre(interleaved, RotaryParams{500000.0, RotaryScaling::linear, 4.0, RotaryPairing::interleaved});
  std::vector<std::vector<ResultRow>> rows;
  for (const char* backend : {"cpu", "cuda"}) {
    const std::string yaml = dir.file(std::string("pre-") + backend + ".yaml");
    std::ofstream(yaml) << "name: pre-" << backend << "\ntraces: [\"" << half << "\", \"" << interleaved
                        << "\"]\nbackend: " << backend << "\ncodec: {preset: kivi-2}\nmetrics: [all]\n";
    const ExperimentPlan plan = plan_experiment(yaml, {}, vidkv::test::builtin_registry());
    RunOptions options;
    options.out_dir = dir.file(std::string("pre-") + backend);
    options.progress = false;
    rows.push_back(run_experiment(plan, options, vidkv::test::builtin_registry()).rows);
    std::ifstream prov(options.out_dir + "/provenance.json");
    std::stringstream p;
    p << prov.rdbuf();
    INFO(backend << " provenance: " << p.str());
    CHECK(p.str().find("rotated from /tokens/position (theta 10000, half pairing)") != std::string::npos);
    CHECK(p.str().find("interleaved pairing") != std::string::npos);
  }
  CHECK(vidkv::test::check_backend_rows(rows[0], rows[1]) > 0);
}
