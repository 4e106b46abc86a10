// [cpu] tests of fused decode attention (attention/): the dense attend() on a hand-worked case, the query transform
// of FFT keys against the library inverse FFT, the in-place element reads against each plugin's decode, and the
// CPU emulation of the CUDA kernels (same tables, reads, tile / warp / split order) against the reference and
// dequantize-then-attend within the named tolerance (decode_attention_tolerance.h), for every codec it reads;
// codecs it cannot read are refused by name.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <iostream>
#include <random>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "decode_attention_test_support.h"
#include "vidkv/attention/decode_attention_format.h"
#include "vidkv/attention/decode_attention_staging.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/attention_bench.h"
#include "vidkv/plugins/quantizers/sign/sign_fft.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_tolerance.h"

using namespace vidkv;
using namespace vidkv::test;
namespace af = attention_format;

TEST_CASE("attend: softmax(q k^T / sqrt(D)) v on a hand-worked case", "[cpu][attention]") {
  // D = 4, q = (2, 0, 0, 0); k0 = 0, k1 = (1, 0, 0, 0): scores 0 and 2 / sqrt(4) = 1, so
  // p = (1 / (1 + e), e / (1 + e)) = (0.2689414214, 0.7310585786); v0 = (1, 0, 0, 0), v1 = (0, 2, 0, 0):
  // out = (0.2689414214, 1.4621171573, 0, 0).
  const std::vector<double> q{2, 0, 0, 0}, k{0, 0, 0, 0, 1, 0, 0, 0}, v{1, 0, 0, 0, 0, 2, 0, 0};
  const std::vector<double> o = attend(q.data(), 1, k.data(), v.data(), 2, 4);
  CHECK(o[0] == Approx(0.2689414214).epsilon(1e-9));
  CHECK(o[1] == Approx(1.4621171573).epsilon(1e-9));
  CHECK(o[2] == 0.0);
  CHECK(o[3] == 0.0);
}

TEST_CASE("the query transform of sign fft keys (real and complex) equals the dot with the inverse FFT", "[cpu][attention]") {
  // sum_c q_c x_c with x = fft_inverse_rows(kind, y) must equal sum_j w_j y_j, w = transform_entry(q) (linearity),
  // for m = n (real) or 2n (complex) stored components y. Also as the second child of a mixed part whose first child
  // (3 channels, no FFT) takes part indices 0..2 and channels 0..2.
  for (const SignFft kind : {SignFft::real, SignFft::complex})
    for (std::int64_t n : {64, 7, 16, 1, 6}) {
      INFO("n = " << n << ", complex " << (kind == SignFft::complex));
      const std::int64_t m = fft_components(kind, n);
      std::mt19937_64 rng(static_cast<std::uint64_t>(n));
      std::normal_distribution<float> g(0.0f, 1.0f);
      std::vector<float> q(static_cast<std::size_t>(n + 3)), y(static_cast<std::size_t>(m)), x(static_cast<std::size_t>(n));
      for (auto& e : q) e = g(rng);
      for (auto& e : y) e = g(rng);
      fft_inverse_rows(kind, y.data(), 1, n, x.data());
      af::ChildFormat fft;
      fft.codec = af::ChildCodec::sign;
      fft.fft_real = kind == SignFft::real;
      fft.fft_complex = kind == SignFft::complex;
      af::SideFormat plain;
      plain.first = fft;
      af::PartRef pp;
      pp.first_n = m;
      pp.first_channels = n;
      af::SideFormat mixed;  // channels 0..2 (part indices 0..2) without FFT, then the FFT child
      mixed.mixed = true;
      mixed.high = 3;
      mixed.second = fft;
      af::PartRef mp;
      mp.first_n = mp.first_channels = 3;
      mp.second_n = m;
      mp.second_channels = n;
      double direct = 0.0, via_plain = 0.0, via_mixed = 0.0, qsum = 0.0, ysum = 0.0, l2 = 0.0;
      for (std::int64_t c = 0; c < n; ++c) direct += static_cast<double>(q[static_cast<std::size_t>(c + 3)]) * x[static_cast<std::size_t>(c)];
      for (std::int64_t j = 0; j < m; ++j) {
        via_plain += static_cast<double>(af::transform_entry(plain, pp, q.data() + 3, j)) * y[static_cast<std::size_t>(j)];
        via_mixed += static_cast<double>(af::transform_entry(mixed, mp, q.data(), 3 + j)) * y[static_cast<std::size_t>(j)];
      }
      for (std::int64_t i = 0; i < 3; ++i) CHECK(af::transform_entry(mixed, mp, q.data(), i) == q[static_cast<std::size_t>(i)]);
      for (std::int64_t c = 0; c < n; ++c) qsum += std::fabs(q[static_cast<std::size_t>(c + 3)]);
      for (std::int64_t j = 0; j < m; ++j) {
        ysum += std::fabs(y[static_cast<std::size_t>(j)]);
        l2 += static_cast<double>(y[static_cast<std::size_t>(j)]) * y[static_cast<std::size_t>(j)];
      }
      // The bound of decode_attention_tolerance.h 4. (without the 1 / sqrt(D) of the score).
      const double bound = qsum * sign_fft_tolerance::inverse_bound(n, std::sqrt(l2)) +
                           static_cast<double>(n + 3 + m) * 0x1p-24 * (2.0 / static_cast<double>(n)) * qsum * ysum;
      CHECK(std::fabs(direct - via_plain) <= bound);
      CHECK(std::fabs(direct - via_mixed) <= bound);
    }
}

TEST_CASE("the complex-FFT inverse weights on a hand-worked case", "[cpu][attention]") {
  // n = 4, x_c = Re(sum_k Y_k i^(k c)) / 4. Channel c = 1: Y_0 -> 1/4 (component 0), Im Y_0 -> 0 (component 1),
  // Y_1 i -> Re: -Im Y_1 / 4 (component 3 weighs -1/4, component 2 weighs cos(pi/2)/4 = 0), Y_2 (-1) -> -1/4
  // (component 4), Y_3 (-i) -> +Im Y_3 / 4 (component 7 weighs +1/4).
  const float want[8] = {0.25f, 0.0f, 0.0f, -0.25f, -0.25f, 0.0f, 0.0f, 0.25f};
  for (std::int64_t j = 0; j < 8; ++j) CHECK(af::fft_complex_inverse_weight(4, j, 1) == Approx(want[j]).margin(1e-7));
}

TEST_CASE("the query transform from weight tables equals transform_entry bit for bit", "[cpu][attention]") {
  // transform_entry_tabulated (the transform kernel's and the emulation's function) walks the angle (k c) mod n by
  // adds instead of a product and a modulo and reads the weights from fft_weight_table_entry's tables; with the
  // same products and sums in the same order the floats must be identical: each child of a mixed key part (the
  // first from part index 0, the second from first_n, its channels from first_channels) with no FFT, a real or a
  // complex FFT, over n = 0 .. 128 channels of D = 128 (n = 1, 2: the special components only; odd n: no Nyquist
  // component; a child of 0 channels has no part index).
  std::mt19937 rng(7);
  std::normal_distribution<float> normal;
  enum Kind { none, real, complex };
  auto child = [](Kind k) {
    af::ChildFormat f;
    f.codec = k == none ? af::ChildCodec::uniform : af::ChildCodec::sign;
    f.fft_real = k == real;
    f.fft_complex = k == complex;
    return f;
  };
  constexpr std::int64_t D = 128;
  for (const Kind first_kind : {none, real, complex})
    for (const Kind second_kind : {none, real, complex})
      for (const std::int64_t high : {0, 1, 2, 3, 4, 5, 31, 64, 100, 127, 128}) {
        af::SideFormat f;
        f.mixed = true;
        f.high = high;
        f.first = child(first_kind);
        f.second = child(second_kind);
        af::PartRef part;
        part.first_channels = high;
        part.second_channels = D - high;
        part.first_n = af::child_components(f.first, high);
        part.second_n = af::child_components(f.second, D - high);
        std::vector<float> gathered(static_cast<std::size_t>(D)), first(static_cast<std::size_t>(2 * D)),
            second(static_cast<std::size_t>(2 * D));
        for (float& x : gathered) x = normal(rng);
        af::fft_weight_tables(f, part, first.data(), second.data(), 0, 1);
        REQUIRE(af::key_width(f, D) == part.first_n + part.second_n);
        for (std::int64_t i = 0; i < part.first_n + part.second_n; ++i) {
          INFO("children " << first_kind << " / " << second_kind << ", high " << high << ", part index " << i);
          const float want = af::transform_entry(f, part, gathered.data(), i);
          const float got = af::transform_entry_tabulated(f, part, gathered.data(), first.data(), second.data(), i);
          CHECK(std::memcmp(&want, &got, sizeof(float)) == 0);
        }
      }
}

TEST_CASE("in-place element reads equal each plugin's decode", "[cpu][attention]") {
  const LayerInput in = synthetic_input(2, 200, 48, 3);
  const int read = for_each_read_codec(in, 170, [&](const AttentionCodec& ac, const KvCodec& codec, const LayerCache& cache) {
    INFO(ac.name);
    const af::SideFormat kf = side_format(codec.key(), in.channels, KvSide::key), vf = side_format(codec.value(), in.channels, KvSide::value);
    const bool key_fft = af::child_fft(kf.first) || (kf.mixed && af::child_fft(kf.second));
    for (std::int64_t h = 0; h < in.heads; ++h) {
      std::vector<double> k, v;
      decoded_head(cache, h, k, v);
      for (int side = 0; side < 2; ++side) {
        const LayerCache::SideRef s = side == 0 ? cache.key_side() : cache.value_side();
        const af::SideFormat& f = side == 0 ? kf : vf;
        if (side == 0 && key_fft) continue;  // components, not channels: the transform test and the emulation cover them
        for (const auto& blk : s.blocks) {
          const std::int64_t n = blk.end - blk.begin;
          // mixed_token values: the protected tokens counted from the stored mask here (the kernels take the
          // quantizer's budget from the host tables; the emulation test covers that path).
          const std::int64_t kept = f.token_mixed ? af::mask_count(blk.bytes, 0, n) : 0;
          const af::PartRef part = af::part_of(f, blk.bytes, in.heads, n, in.channels, h, kept);
          for (std::int64_t t = 0; t < n; ++t)
            for (std::int64_t c = 0; c < in.channels; ++c) {
              const double want = (side == 0 ? k : v)[static_cast<std::size_t>((blk.begin + t) * in.channels + c)];
              const std::int64_t rank = f.token_mixed ? af::mask_count(blk.bytes, 0, t) : 0;
              REQUIRE(static_cast<double>(af::side_element(f, part, in.channels, t, c, rank)) == want);
            }
        }
      }
    }
  });
  CHECK(read >= 4);
}

// The fast kernel's staged runs (decode_attention_staging.h) hold the codes view_code reads, for every child of every
// codec read in place: row runs of channel-axis children at every start token and lengths 1..32 (bit offsets that
// are not byte or word aligned, base3 runs starting at each of a byte's 5 digits), token runs of token-axis children
// at every start channel and every count whose codes fit one word.
TEST_CASE("staged code runs equal the codes read one element at a time", "[cpu][attention]") {
  namespace as = attention_staging;
  const LayerInput in = synthetic_input(2, 200, 48, 3);
  std::uint16_t slots[ternary_format::kByteSlotEntries];  // the kernels' table of base3 digits (both ternary paths are checked)
  for (int b = 0; b < ternary_format::kByteSlotEntries; ++b) slots[b] = ternary_format::base3_byte_slots(static_cast<unsigned>(b));
  const std::uint16_t* const tables[] = {nullptr, slots};
  int children = 0;
  for_each_read_codec(in, 170, [&](const AttentionCodec& ac, const KvCodec& codec, const LayerCache& cache) {
    INFO(ac.name);
    for_each_child_view(codec, cache, in.channels, in.heads - 1, [&](const af::ChildView& v, std::int64_t width, std::int64_t n) {
      const unsigned b = as::staged_bits(v.f);
      if (b == 0) return;
      ++children;
      if (v.f.axis == group_format::GroupAxis::channel) {
        for (std::int64_t tr0 = 0; tr0 < n; tr0 += (tr0 < 40 ? 1 : 29))
          for (int len = 1; len <= 32 && tr0 + len <= n; len += (len < 6 ? 1 : 13))
            for (std::int64_t i = 0; i < width; i += 5) {
              for (const std::uint16_t* table : tables) {
                std::uint32_t w[as::kMaxRowWords] = {~0u, ~0u, ~0u, ~0u};
                as::row_run(v, tr0, len, i, w, table);
                for (int j = 0; j < len; ++j)
                  REQUIRE(as::run_code(w, b, static_cast<unsigned>(j)) == af::view_code(v, tr0 + j, i));
              }
            }
      } else {
        for (std::int64_t tr = 0; tr < n; tr += 7)
          for (std::int64_t c0 = 0; c0 < width; ++c0)
            for (int count = 1; count * static_cast<int>(b) <= 32 && c0 + count <= width; ++count) {
              for (const std::uint16_t* table : tables) {
                const std::uint32_t w = as::token_run(v, tr, c0, count, table);
                for (int i = 0; i < count; ++i)
                  REQUIRE(as::run_code(&w, b, static_cast<unsigned>(i)) == af::view_code(v, tr, c0 + i));
              }
            }
      }
    });
  });
  CHECK(children >= 6);
}

TEST_CASE("the kernels' emulation agrees with the reference and dequantize-then-attend for every codec it reads",
          "[cpu][attention]") {
  const std::int64_t qpk = 3;
  const LayerInput a = synthetic_input(2, 300, 64, 1), b = synthetic_input(2, 171, 64, 2);
  int supported = 0;
  for (const AttentionCodec& ac : attention_codecs()) {
    const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
    const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
    std::string why;
    if (!decode_attention_supports(codec.key(), a.channels, KvSide::key, &why) || !decode_attention_supports(codec.value(), a.channels, KvSide::value, &why)) {
      std::cout << "[attention] not read in place: " << ac.name << ": " << why << "\n";
      const BlockShape shape{b.heads, b.tokens, b.channels};
      if (!codec.key().supports(Device::cpu, shape) || !codec.value().supports(Device::cpu, shape)) continue;  // nor stored
      const auto cache = filled_cache(codec, ac.lifecycle, b, 171, Execution::cpu());
      REQUIRE_THROWS_AS(DecodeAttention({cache.get()}, Execution::cpu()), NotSupportedError);
      continue;
    }
    INFO(ac.name);
    const auto ca = filled_cache(codec, ac.lifecycle, a, 250, Execution::cpu());
    const auto cb = filled_cache(codec, ac.lifecycle, b, 160, Execution::cpu());
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    for (int splits : {1, 3}) {
      const DecodeAttention attn(caches, Execution::cpu(), splits);
      const std::vector<float> q = random_queries(2, 2 * qpk, 64, 1.5f, 7);
      std::vector<float> out(q.size(), 0.0f);
      attn.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, 2 * qpk, 64}},
                        TensorView{out.data(), DType::f32, Device::cpu, {2, 2 * qpk, 64}});
      const double worst = check_against_reference(caches, q, out, qpk);
      std::cout << "[attention] " << ac.name << ", " << splits << " splits: largest error / tolerance " << worst << "\n";
    }
    ++supported;
  }
  CHECK(supported >= 4);
}

TEST_CASE("the presets kivi-2 and vidkv-k1.5-v1.58 are read in place", "[cpu][attention]") {
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    const ConfigNode doc = load_preset(name, ConfigNode::scalar(name));
    std::string why;
    INFO(name);
    CHECK(decode_attention_supports(*test::builtin_registry().make_quantizer(doc.at("codec").at("key")), 128, KvSide::key, &why));
    CHECK(decode_attention_supports(*test::builtin_registry().make_quantizer(doc.at("codec").at("value")), 128, KvSide::value, &why));
  }
}

TEST_CASE("decode attention refuses bad queries, outputs and caches", "[cpu][attention]") {
  const LayerInput in = synthetic_input(2, 80, 32, 4);
  const PresetCodec preset = preset_codec("kivi-2");
  const KvCodec& codec = preset.codec;
  const LifecycleParams& lc = preset.lifecycle;
  const auto cache = filled_cache(codec, lc, in, 80, Execution::cpu());
  const DecodeAttention attn({cache.get()}, Execution::cpu());
  std::vector<float> q(2 * 9 * 32), out(q.size());
  auto view = [](std::vector<float>& x, std::vector<std::int64_t> shape) { return TensorView{x.data(), DType::f32, Device::cpu, shape}; };
  SECTION("query heads not a multiple of the KV heads") {
    CHECK_THROWS_AS(attn.run(view(q, {1, 3, 32}), view(out, {1, 3, 32})), ShapeError);
  }
  SECTION("no query heads") {
    CHECK_THROWS_AS(attn.run(view(q, {1, 0, 32}), view(out, {1, 0, 32})), ShapeError);
    CHECK_THROWS_AS(DecodeAttention::query_head_groups(0), ShapeError);
  }
  SECTION("wrong head_dim or batch") {
    CHECK_THROWS_AS(attn.run(view(q, {1, 2, 16}), view(out, {1, 2, 16})), ShapeError);
    CHECK_THROWS_AS(attn.run(view(q, {2, 2, 32}), view(out, {2, 2, 32})), ShapeError);
  }
  SECTION("out differs from queries") {
    CHECK_THROWS_AS(attn.run(view(q, {1, 2, 32}), view(out, {1, 4, 32})), ShapeError);
  }
  SECTION("query tokens: a count the tables were not built for, none, too many, more than a cache holds") {
    CHECK_THROWS_AS(attn.run(view(q, {1, 2, 2, 32}), view(out, {1, 2, 2, 32})), ShapeError);  // built for 1
    CHECK_NOTHROW(attn.run(view(q, {1, 1, 2, 32}), view(out, {1, 1, 2, 32})));                 // [batch, 1, q_heads, D]
    const DecodeAttention three({cache.get()}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, 3);
    CHECK_THROWS_AS(three.run(view(q, {1, 2, 32}), view(out, {1, 2, 32})), ShapeError);        // no token axis
    CHECK_THROWS_AS(three.run(view(q, {1, 2, 2, 32}), view(out, {1, 2, 2, 32})), ShapeError);
    CHECK_NOTHROW(three.run(view(q, {1, 3, 2, 32}), view(out, {1, 3, 2, 32})));
    // The one-shot form takes the count as given, not from the view's shape.
    CHECK_THROWS_AS(decode_attention({cache.get()}, view(q, {1, 3, 2, 32}), view(out, {1, 3, 2, 32}), Execution::cpu()), ShapeError);
    CHECK_NOTHROW(decode_attention({cache.get()}, view(q, {1, 3, 2, 32}), view(out, {1, 3, 2, 32}), Execution::cpu(), 3));
    CHECK_THROWS_AS(DecodeAttention({cache.get()}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, 0), ShapeError);
    CHECK_THROWS_AS(DecodeAttention({cache.get()}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true,
                                    DecodeAttention::kMaxQueryTokens + 1),
                    ShapeError);
    LayerCache short_cache(codec, lc, 2, 32, TokenContext{}, DType::f16);
    append_tokens(short_cache, in, 0, 2);
    CHECK_THROWS_AS(DecodeAttention({&short_cache}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, 3), ShapeError);
  }
  SECTION("an empty cache, or no cache") {
    const LayerCache empty(codec, lc, 2, 32, TokenContext{}, DType::f16);
    CHECK_THROWS_AS(DecodeAttention({&empty}, Execution::cpu()), ShapeError);
    CHECK_THROWS_AS(DecodeAttention({}, Execution::cpu()), ShapeError);
  }
  SECTION("caches of different shapes") {
    const LayerInput other = synthetic_input(1, 40, 32, 5);
    const auto c2 = filled_cache(codec, lc, other, 40, Execution::cpu());
    CHECK_THROWS_AS(DecodeAttention({cache.get(), c2.get()}, Execution::cpu()), ShapeError);
  }
}

TEST_CASE("the attention bench table: byte ratio, fraction of copy bandwidth and speed-up over fp16 SDPA", "[cpu][attention]") {
  // One row: batch 1, 1024 tokens, 4 KV heads x 128: fp16 bytes 2 * 4 * 1024 * 128 * 2 = 2.097152 MB; a cache of
  // 0.5 MB is 4.19x fewer bytes; 0.25 ms -> (0.5e6 + query bytes 0) / 0.25e-3 = 2000 GB/s = 50% of 4000 GB/s;
  // SDPA 0.5 ms -> 2.00x.
  AttentionBenchOptions o;
  o.batches = {1};
  o.tokens = {1024};
  AttentionBenchResult r;
  r.device = "test";
  r.copy_gbps = 4000;
  r.kv_heads = 4;
  r.query_heads_per_kv = 7;
  r.head_dim = 128;
  AttentionBenchRow row;
  row.preset = "kivi-2";
  row.batch = 1;
  row.tokens = 1024;
  row.ms = 0.25;
  row.cache_bytes = 0.5e6;
  row.gbps = 2000;
  row.splits = 3;
  r.rows.push_back(row);
  const std::string with = attention_bench_markdown(r, o, {{0.5, "gqa cudnn"}});
  CHECK(with.find("| kivi-2 | 1 | 1024 | 0.2500 | 3 | 0.5 | 2.1 | 4.19x | 2000 | 50.0% | 0.5000 (gqa cudnn) | 2.00x | cuda cores | |") !=
        std::string::npos);
  // The legend says how the fraction of copy bandwidth can pass 100% (the copy's bytes counted once).
  CHECK(with.find("counts each byte copied once") != std::string::npos);
  CHECK(with.find("can pass 100%") != std::string::npos);
  r.rows[0].tensor_cores = true;  // the fast kernel's time beside the tensor-core kernel's
  r.rows[0].cuda_core_ms = 0.75;
  CHECK(attention_bench_markdown(r, o, {{0.5, ""}}).find("| 0.5000 | 2.00x | tensor cores | 0.7500 |") != std::string::npos);
  const std::string without = attention_bench_markdown(r, o, {});
  CHECK(without.find("not measured") != std::string::npos);
  r.rows[0].tensor_cores = false;  // no fast tile at all (fft: complex keys, mixed_token values)
  r.rows[0].general_only = true;
  CHECK(attention_bench_markdown(r, o, {{0.5, ""}}).find("| 2.00x | none (general kernel only) | |") != std::string::npos);
}

TEST_CASE("the attention bench reads bench_attention.py's JSON line and says why it has no PyTorch column", "[cpu][attention]") {
  std::string why;
  // Two shapes; the second without a variant name (older output): ms kept, variant empty.
  const auto t = parse_torch_sdpa_json("torch 2.11\n{\"torch_ms\": [0.25, 1.5], \"torch_variant\": [\"gqa cudnn\"]}\n", &why);
  REQUIRE(t.size() == 2);
  CHECK(t[0].ms == 0.25);
  CHECK(t[0].variant == "gqa cudnn");
  CHECK(t[1].ms == 1.5);
  CHECK(t[1].variant.empty());
  // One per failure kind, each with its reason.
  CHECK(parse_torch_sdpa_json("", &why).empty());
  CHECK(why == "no output");
  CHECK(parse_torch_sdpa_json("{\"error\": \"no torch: No module named 'torch'\"}", &why).empty());
  CHECK(why == "no torch: No module named 'torch'");
  CHECK(parse_torch_sdpa_json("Traceback (most recent call last): ...", &why).empty());
  CHECK(why.find("not a JSON object") != std::string::npos);
  CHECK(parse_torch_sdpa_json("{\"device\": \"H200\"}", &why).empty());
  CHECK(why == "no \"torch_ms\" array");
  CHECK(parse_torch_sdpa_json("{\"torch_ms\": [0.5, null]}", &why).empty());
  CHECK(why.find("\"torch_ms\"[1] is not a number") != std::string::npos);
}

TEST_CASE("the kernels' emulation handles head_dim 40 (a channel tail per lane) and 8 query heads per KV head", "[cpu][attention]") {
  const LayerInput a = synthetic_input(1, 200, 40, 8), b = synthetic_input(1, 37, 40, 9);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const KvCodec& codec = preset.codec;
    const LifecycleParams& lc = preset.lifecycle;
    const auto ca = filled_cache(codec, lc, a, 190, Execution::cpu());
    const auto cb = filled_cache(codec, lc, b, 37, Execution::cpu());
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    const DecodeAttention attn(caches, Execution::cpu(), 2);
    const std::vector<float> q = random_queries(2, 8, 40, 2.0f, 3);
    std::vector<float> out(q.size(), 0.0f);
    attn.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, 8, 40}},
                      TensorView{out.data(), DType::f32, Device::cpu, {2, 8, 40}});
    check_against_reference(caches, q, out, 8);
  }
}

TEST_CASE("query heads per KV head in groups of at most 8, as even as possible, in head order", "[cpu][attention]") {
  using G = DecodeAttention::QueryHeadGroup;
  const auto groups = [](std::int64_t qpk) {
    std::vector<std::pair<std::int64_t, std::int64_t>> v;
    for (const G& g : DecodeAttention::query_head_groups(qpk)) v.emplace_back(g.first, g.count);
    return v;
  };
  using V = std::vector<std::pair<std::int64_t, std::int64_t>>;
  CHECK(groups(1) == V{{0, 1}});
  CHECK(groups(7) == V{{0, 7}});
  CHECK(groups(8) == V{{0, 8}});
  CHECK(groups(9) == V{{0, 5}, {5, 4}});             // ceil(9 / 8) = 2 groups: 9 = 5 + 4
  CHECK(groups(12) == V{{0, 6}, {6, 6}});
  CHECK(groups(16) == V{{0, 8}, {8, 8}});
  CHECK(groups(20) == V{{0, 7}, {7, 7}, {14, 6}});  // 3 groups: 20 = 7 + 7 + 6
  for (std::int64_t qpk = 1; qpk <= 64; ++qpk) {     // property: a partition of the heads, none above 8, sizes within 1
    INFO(qpk);
    const auto g = DecodeAttention::query_head_groups(qpk);
    CHECK(static_cast<std::int64_t>(g.size()) == (qpk + 7) / 8);
    std::int64_t next = 0, lo = qpk, hi = 0;
    for (const G& x : g) {
      CHECK(x.first == next);
      next += x.count;
      lo = std::min(lo, x.count);
      hi = std::max(hi, x.count);
    }
    CHECK(next == qpk);
    CHECK(hi <= DecodeAttention::kMaxQueryHeadsPerKv);
    CHECK(hi - lo <= 1);
  }
}

TEST_CASE("more than 8 query heads per KV head: the kernels' emulation runs them in groups and agrees with the reference",
          "[cpu][attention]") {
  // Batch 2 of different lengths, 2 KV heads, 9, 12, 16 and 20 query heads per KV head (groups 5 + 4, 6 + 6, 8 + 8,
  // 7 + 7 + 6), one
  // and three query tokens per sequence, fp16 queries for one case, tables of one row per query row (a run per group)
  // and of one per query head group (one run; 9's second group's padding head zero): the groups' queries gathered,
  // run, and the outputs put back in place, so a head in the wrong group or row would miss the reference by far more
  // than tolerance.
  const LayerInput a = synthetic_input(2, 300, 64, 31), b = synthetic_input(2, 77, 64, 32);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const auto ca = filled_cache(preset.codec, preset.lifecycle, a, 290, Execution::cpu());
    const auto cb = filled_cache(preset.codec, preset.lifecycle, b, 77, Execution::cpu());
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    for (const std::int64_t qpk : {9, 12, 16, 20})
      for (const bool rows : {false, true})
      for (const std::int64_t n : {1, 3}) {
        const std::int64_t groups = rows ? static_cast<std::int64_t>(DecodeAttention::query_head_groups(qpk).size()) : 1;
        INFO(name << ", " << qpk << " query heads per KV head, " << n << " query tokens, tables of " << groups
                  << " query head groups");
        const DecodeAttention attn(caches, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, n, groups);
        CHECK(attn.head_groups() == groups);
        CHECK(attn.table_rows() == 2 * n * groups);
        if (rows) {  // each group's row reads the cache: cache_bytes counts G reads
          const DecodeAttention single(caches, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, n);
          CHECK(attn.cache_bytes() == static_cast<std::size_t>(groups) * single.cache_bytes());
        }
        const std::vector<std::int64_t> shape = n == 1 ? std::vector<std::int64_t>{2, 2 * qpk, 64} : std::vector<std::int64_t>{2, n, 2 * qpk, 64};
        std::vector<float> q = random_queries(2 * n, 2 * qpk, 64, 2.0f, 40 + static_cast<std::uint64_t>(qpk));
        std::vector<float> out(q.size(), std::nanf(""));
        attn.run_emulated(TensorView{q.data(), DType::f32, Device::cpu, shape}, TensorView{out.data(), DType::f32, Device::cpu, shape});
        check_against_reference(caches, q, out, qpk, decode_attention_tolerance::Arithmetic::cuda_cores, n);
        // The cpu run (the reference, every head at once, no groups) within the same tolerance.
        std::vector<float> ref(q.size(), std::nanf(""));
        attn.run(TensorView{q.data(), DType::f32, Device::cpu, shape}, TensorView{ref.data(), DType::f32, Device::cpu, shape});
        check_against_reference(caches, q, ref, qpk, decode_attention_tolerance::Arithmetic::cuda_cores, n);
        if (qpk == 12 && n == 1) {  // fp16 queries: 2-byte rows through the staging
          std::vector<std::uint8_t> qh(q.size() * 2);
          for (std::size_t i = 0; i < q.size(); ++i) {
            store_from_float(qh.data(), DType::f16, i, q[i]);
            q[i] = load_as_float(qh.data(), DType::f16, i);
          }
          std::fill(out.begin(), out.end(), std::nanf(""));
          attn.run_emulated(TensorView{qh.data(), DType::f16, Device::cpu, shape}, TensorView{out.data(), DType::f32, Device::cpu, shape});
          check_against_reference(caches, q, out, qpk, decode_attention_tolerance::Arithmetic::cuda_cores, n);
        }
      }
  }
}

TEST_CASE("tables of several query head groups refuse queries of another number of groups", "[cpu][attention]") {
  // Tables of 2 groups per query row (qpk 9 to 16) take neither 7 query heads per KV head (1 group) nor 20 (3 groups),
  // on the emulation and on the cpu run alike; 0 groups is refused when building.
  const LayerInput a = synthetic_input(2, 100, 64, 33);
  const PresetCodec preset = preset_codec("kivi-2", CpuImplementation::reference);
  const auto c = filled_cache(preset.codec, preset.lifecycle, a, 100, Execution::cpu());
  const std::vector<const LayerCache*> caches{c.get()};
  const DecodeAttention attn(caches, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, 1, 2);
  for (const std::int64_t qpk : {7, 20}) {
    INFO(qpk);
    std::vector<float> q = random_queries(1, 2 * qpk, 64, 1.0f, 5), out(q.size());
    const TensorView qv{q.data(), DType::f32, Device::cpu, {1, 2 * qpk, 64}}, ov{out.data(), DType::f32, Device::cpu, {1, 2 * qpk, 64}};
    CHECK_THROWS_AS(attn.run_emulated(qv, ov), ShapeError);
    CHECK_THROWS_AS(attn.run(qv, ov), ShapeError);
  }
  std::vector<float> q = random_queries(1, 2 * 16, 64, 1.0f, 5), out(q.size());
  CHECK_NOTHROW(attn.run_emulated(TensorView{q.data(), DType::f32, Device::cpu, {1, 32, 64}},
                                  TensorView{out.data(), DType::f32, Device::cpu, {1, 32, 64}}));
  CHECK_THROWS_AS(DecodeAttention(caches, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, 1, 0), ShapeError);
}

TEST_CASE("every packed tile of kivi-2 and vidkv-k1.5-v1.58 takes the fast path, residual tiles the general one", "[cpu][attention]") {
  // 300 tokens, prefill 250 then 50 decode steps. Residual tokens: kivi-2 keys 300 - 256 = 44 (tokens 256..299),
  // values the last 128 (172..299); vidkv-k1.5-v1.58 (paper, G = 32, R = 128): prefill quantizes 224, the residual
  // then holds 26 + 50 = 76 < 128 tokens (224..299). General tiles: those touching a residual.
  const LayerInput in = synthetic_input(2, 300, 64, 1);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name);
    const KvCodec& codec = preset.codec;
    const LifecycleParams& lc = preset.lifecycle;
    const auto cache = filled_cache(codec, lc, in, 250, Execution::cpu());
    const DecodeAttention attn({cache.get()}, Execution::cpu());
    const std::int64_t first_residual = std::min(cache->key_side().quantized, cache->value_side().quantized);
    CHECK(first_residual == (std::string(name) == "kivi-2" ? 172 : 224));
    // Tiles before the first residual token (a tile lies in one key block and one value block). kivi-2: the prefill
    // quantizes values [0, 122) as one block (4 tiles: 32, 32, 32, 26, all in key block [0, 128)), then each decode
    // step one value token (tokens 122..171), merged into blocks of up to 32 tokens (cache_lifecycle.h): [122, 154),
    // which key blocks [0, 128) and [128, 256) split into 2 tiles (6 + 26 tokens), and [154, 172), which the key
    // groups of 32 tokens from 128 split at 160 (6 + 12): 4 + 2 + 2 = 8. vidkv-k1.5-v1.58: one prefill block
    // [0, 224): 7 tiles of 32.
    CHECK(attn.fast_tiles() == (std::string(name) == "kivi-2" ? 8 : 7));
    CHECK(attn.tiles() > attn.fast_tiles());
  }
}

TEST_CASE("the kernels' emulation reads the live hook's caches, which keep only the residual window exact", "[cpu][attention]") {
  const LayerInput a = synthetic_input(2, 260, 64, 21), b = synthetic_input(2, 99, 64, 22);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58", "fp16"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const KvCodec& codec = preset.codec;
    const LifecycleParams& lc = preset.lifecycle;
    const auto ca = filled_cache(codec, lc, a, 200, Execution::cpu(), ExactTokens::residual);
    const auto cb = filled_cache(codec, lc, b, 70, Execution::cpu(), ExactTokens::residual);
    REQUIRE(ca->key_side().first > 0);  // the store really starts past token 0
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    const DecodeAttention attn(caches, Execution::cpu(), 2);
    const std::vector<float> q = random_queries(2, 14, 64, 1.5f, 4);
    std::vector<float> out(q.size(), 0.0f);
    attn.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, 14, 64}},
                      TensorView{out.data(), DType::f32, Device::cpu, {2, 14, 64}});
    check_against_reference(caches, q, out, 7);
  }
}

TEST_CASE("several query tokens per sequence attend causally, in the kernels' emulation and the reference, for every codec it reads",
          "[cpu][attention]") {
  // Sequences of 300 and 171 tokens (live-hook caches: only the residual window exact) and n = 2, 3 and 8 query tokens
  // per sequence: query token j attends to the first T - n + 1 + j tokens. check_against_reference takes those as
  // the first rows of the materialised K / V (dequantize-then-attend), so a limit off by one token moves the output
  // by about that token's weight (~1/T of a value's size), orders above the tolerance.
  const std::int64_t qpk = 3;
  const LayerInput a = synthetic_input(2, 300, 64, 41), b = synthetic_input(2, 171, 64, 42);
  const int visited = for_each_codec_read(64, [&](const AttentionCodec& ac, const KvCodec& codec) {
    INFO(ac.name);
    const auto ca = filled_cache(codec, ac.lifecycle, a, 250, Execution::cpu(), ExactTokens::residual);
    const auto cb = filled_cache(codec, ac.lifecycle, b, 160, Execution::cpu(), ExactTokens::residual);
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    for (const std::int64_t n : {2, 3, 8}) {
      INFO(n << " query tokens");
      const DecodeAttention attn(caches, Execution::cpu(), 2, DecodeAttention::FastKernel::tensor_cores, true, n);
      CHECK(attn.query_tokens() == n);
      CHECK(attn.query_rows() == 2 * n);
      const std::vector<float> q = random_queries(2 * n, 2 * qpk, 64, 1.5f, 50 + static_cast<std::uint64_t>(n));
      const TensorView qv{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, n, 2 * qpk, 64}};
      std::vector<float> emulated(q.size(), 0.0f), reference(q.size(), 0.0f);
      attn.run_emulated(qv, TensorView{emulated.data(), DType::f32, Device::cpu, {2, n, 2 * qpk, 64}});
      attn.run(qv, TensorView{reference.data(), DType::f32, Device::cpu, {2, n, 2 * qpk, 64}});
      check_against_reference(caches, q, emulated, qpk, decode_attention_tolerance::Arithmetic::cuda_cores, n);
      check_against_reference(caches, q, reference, qpk, decode_attention_tolerance::Arithmetic::cuda_cores, n);
      // The last query token sees the whole cache: one query token's tables give its output.
      const DecodeAttention last(caches, Execution::cpu(), 2);
      std::vector<float> q1, o1(static_cast<std::size_t>(2 * 2 * qpk * 64), 0.0f);
      for (std::int64_t bb = 0; bb < 2; ++bb)
        q1.insert(q1.end(), q.begin() + ((bb * n + n - 1) * 2 * qpk) * 64, q.begin() + ((bb * n + n) * 2 * qpk) * 64);
      last.run_emulated(TensorView{q1.data(), DType::f32, Device::cpu, {2, 2 * qpk, 64}}, TensorView{o1.data(), DType::f32, Device::cpu, {2, 2 * qpk, 64}});
      for (std::int64_t bb = 0; bb < 2; ++bb)
        for (std::int64_t i = 0; i < 2 * qpk * 64; ++i)
          REQUIRE(emulated[static_cast<std::size_t>((bb * n + n - 1) * 2 * qpk * 64 + i)] == o1[static_cast<std::size_t>(bb * 2 * qpk * 64 + i)]);
    }
  });
  CHECK(visited >= 4);
}

TEST_CASE("query tokens whose causal limit falls inside the packed blocks read cut tiles, for every codec it reads", "[cpu][attention]") {
  // The paper lifecycle (G = 32, R = 48) with a prefill of 64 and 96 tokens quantizes every token (N mod G = 0), so
  // with n query tokens the first n - 1 limits fall inside the last packed tiles: those tiles are cut at the limit
  // (tokens T - n + 1 + j .. of a 32-token tile dropped) and taken by the kernel their length allows.
  const LifecycleParams paper = paper_lifecycle();
  const LayerInput a = synthetic_input(2, 64, 64, 43), b = synthetic_input(2, 96, 64, 44);
  const int visited = for_each_codec_read(64, [&](const AttentionCodec& ac, const KvCodec& codec) {
    INFO(ac.name);
    const auto ca = filled_cache(codec, paper, a, 64, Execution::cpu(), ExactTokens::residual);
    const auto cb = filled_cache(codec, paper, b, 96, Execution::cpu(), ExactTokens::residual);
    REQUIRE(ca->key_side().quantized == 64);
    REQUIRE(cb->value_side().quantized == 96);
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    for (const std::int64_t n : {1, 3, 8}) {
      INFO(n << " query tokens");
      const DecodeAttention attn(caches, Execution::cpu(), 1, DecodeAttention::FastKernel::tensor_cores, true, n);
      // 32-token tiles: 2 and 3 per row, whatever the cut (n <= 32).
      CHECK(attn.tiles() == 5 * n);
      const std::vector<float> q = random_queries(2 * n, 4, 64, 1.5f, 60 + static_cast<std::uint64_t>(n));
      std::vector<float> out(q.size(), 0.0f);
      attn.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, n, 4, 64}},
                        TensorView{out.data(), DType::f32, Device::cpu, {2, n, 4, 64}});
      check_against_reference(caches, q, out, 2, decode_attention_tolerance::Arithmetic::cuda_cores, n);
    }
  });
  CHECK(visited >= 4);
}

namespace {

// One decode step of n tokens per sequence for update()'s tests: appends the next n tokens of a and b to ca and cb
// (from ta and tb, which advance), updates `kept` with the count n and `groups` query head groups and requires its
// tables to equal a fresh construction's with the same counts.
void step_and_compare(DecodeAttention& kept, LayerCache& ca, LayerCache& cb, const LayerInput& a, const LayerInput& b,
                      std::int64_t& ta, std::int64_t& tb, std::int64_t n, std::int64_t groups = 1) {
  append_tokens(ca, a, ta, ta + n);
  append_tokens(cb, b, tb, tb + n);
  ta += n;
  tb += n;
  kept.update({&ca, &cb}, n, groups);
  REQUIRE(kept.same_tables(DecodeAttention({&ca, &cb}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, n, groups)));
}

}  // namespace

TEST_CASE("update() with several query tokens gives a fresh construction's tables, also when the count changes", "[cpu][attention]") {
  // kivi-2 and vidkv-k1.5-v1.58 live-hook caches; steps of 1, 3, 3, 8, 1, 2 tokens per sequence with 1, 2, 2, 3, 1, 2
  // query head groups per row, each followed by update(caches, tokens of the step, groups), against a fresh
  // construction with the same counts; the last step's tables (2 groups) run 12 query heads per KV head.
  const LayerInput a = synthetic_input(2, 400, 64, 45), b = synthetic_input(2, 400, 64, 46);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    auto make = [&] { return std::make_unique<LayerCache>(preset.codec, preset.lifecycle, 2, 64, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual); };
    auto ca = make(), cb = make();
    append_tokens(*ca, a, 0, 150);
    append_tokens(*cb, b, 0, 200);
    DecodeAttention kept({ca.get(), cb.get()}, Execution::cpu());
    std::int64_t ta = 150, tb = 200;
    for (int round = 0; round < 20; ++round) {
      const std::int64_t counts[6][2] = {{1, 1}, {3, 2}, {3, 2}, {8, 3}, {1, 1}, {2, 2}};
      for (const auto& [n, groups] : counts) {
        INFO("round " << round << ", step of " << n << " tokens, " << groups << " groups, at " << ta << " / " << tb);
        step_and_compare(kept, *ca, *cb, a, b, ta, tb, n, groups);
        if (tb + 10 > b.tokens) break;  // room for a step of 8 and the last of 2
      }
      if (tb + 10 > b.tokens) break;
    }
    append_tokens(*ca, a, ta, ta + 2);  // a last step of 2 tokens, run
    append_tokens(*cb, b, tb, tb + 2);
    kept.update({ca.get(), cb.get()}, 2, 2);
    REQUIRE(kept.same_tables(DecodeAttention({ca.get(), cb.get()}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, 2, 2)));
    const std::vector<float> q = random_queries(2 * 2, 24, 64, 1.5f, 9);
    std::vector<float> out(q.size(), 0.0f);
    kept.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, 2, 24, 64}},
                      TensorView{out.data(), DType::f32, Device::cpu, {2, 2, 24, 64}});
    check_against_reference({ca.get(), cb.get()}, q, out, 12, decode_attention_tolerance::Arithmetic::cuda_cores, 2);
  }
}

TEST_CASE("update() after decode steps gives the tables of a fresh construction, for every codec it reads", "[cpu][attention]") {
  // Two live-hook caches (only the residual window exact), prefills of 40 and 150 tokens, then one token per
  // sequence and step: 130 steps pass key flushes (every 32 tokens past the residual), KIVI's one-token value
  // blocks and Algorithm 1's blocks. After every step the kept object's update() must equal a fresh construction
  // entry for entry, and so after a batch change and a replaced cache; its run on the last state is then checked
  // against the reference like any other.
  const LayerInput a = synthetic_input(2, 170, 64, 31), b = synthetic_input(2, 280, 64, 32), c = synthetic_input(2, 90, 64, 33);
  int visited = 0, with_fast = 0;
  for (const AttentionCodec& ac : attention_codecs()) {
    const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
    const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
    if (!decode_attention_supports(codec.key(), a.channels, KvSide::key) || !decode_attention_supports(codec.value(), a.channels, KvSide::value)) continue;
    INFO(ac.name);
    auto make = [&] { return std::make_unique<LayerCache>(codec, ac.lifecycle, 2, 64, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual); };
    auto ca = make(), cb = make();
    append_tokens(*ca, a, 0, 40);
    append_tokens(*cb, b, 0, 150);
    DecodeAttention kept({ca.get(), cb.get()}, Execution::cpu());
    for (std::int64_t step = 0; step < 130; ++step) {
      INFO("step " << step);
      append_tokens(*ca, a, 40 + step, 41 + step);
      append_tokens(*cb, b, 150 + step, 151 + step);
      kept.update({ca.get(), cb.get()});
      REQUIRE(kept.same_tables(DecodeAttention({ca.get(), cb.get()}, Execution::cpu())));
    }
    with_fast += kept.fast_tiles() > 0 ? 1 : 0;  // presets with fast tiles: kivi-2, vidkv-k1.5-v1.58, ...
    kept.update({cb.get()});  // the batch shrinks
    REQUIRE(kept.same_tables(DecodeAttention({cb.get()}, Execution::cpu())));
    auto cc = make();  // sequence 0 is another cache
    append_tokens(*cc, c, 0, 90);
    kept.update({cc.get(), cb.get()});
    REQUIRE(kept.same_tables(DecodeAttention({cc.get(), cb.get()}, Execution::cpu())));
    const std::vector<float> q = random_queries(2, 14, 64, 1.5f, 9);
    std::vector<float> out(q.size(), 0.0f);
    kept.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, 14, 64}},
                      TensorView{out.data(), DType::f32, Device::cpu, {2, 14, 64}});
    check_against_reference({cc.get(), cb.get()}, q, out, 7);
    ++visited;
  }
  CHECK(visited >= 4);
  CHECK(with_fast >= 2);
}

TEST_CASE("update() with a fixed count of several query tokens keeps each row's unchanged tiles and equals a fresh construction, for every codec it reads",
          "[cpu][attention]") {
  // Steps of n = 3 and n = 8 tokens per sequence, update(caches, n) after each: the rows' regions keep the prefix
  // tiles they hold (prefix_fast / prefix_general) and only the entries from the first changed one on are compared.
  // Under each codec's own lifecycle and under the paper lifecycle (G = 32, R = 48), whose flushes quantize every
  // token now and then, so that rows' limits fall inside packed tiles (cut tiles, fast or general tails) and move out
  // of them again at the next step. Every step's tables must equal a fresh construction's; the last is run.
  const LifecycleParams paper = paper_lifecycle();
  const LayerInput a = synthetic_input(2, 500, 64, 47), b = synthetic_input(2, 500, 64, 48);
  const int visited = for_each_codec_read(64, [&](const AttentionCodec& ac, const KvCodec& codec) {
    for (const bool own : {true, false}) {
      const LifecycleParams& lc = own ? ac.lifecycle : paper;
      for (const std::int64_t n : {3, 8}) {
        INFO(ac.name << ", lifecycle " << (own ? "the codec's" : "paper G 32 R 48") << ", " << n << " query tokens");
        auto make = [&] { return std::make_unique<LayerCache>(codec, lc, 2, 64, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual); };
        auto ca = make(), cb = make();
        std::int64_t ta = 96, tb = 150;
        append_tokens(*ca, a, 0, ta);
        append_tokens(*cb, b, 0, tb);
        DecodeAttention kept({ca.get(), cb.get()}, Execution::cpu(), 0, DecodeAttention::FastKernel::tensor_cores, true, n);
        while (tb + n <= b.tokens && ta + n <= a.tokens) {
          INFO("at " << ta << " / " << tb << " tokens");
          step_and_compare(kept, *ca, *cb, a, b, ta, tb, n);
        }
        const std::vector<float> q = random_queries(2 * n, 4, 64, 1.5f, 80 + static_cast<std::uint64_t>(n));
        std::vector<float> out(q.size(), 0.0f);
        kept.run_emulated(TensorView{const_cast<float*>(q.data()), DType::f32, Device::cpu, {2, n, 4, 64}},
                          TensorView{out.data(), DType::f32, Device::cpu, {2, n, 4, 64}});
        check_against_reference({ca.get(), cb.get()}, q, out, 2, decode_attention_tolerance::Arithmetic::cuda_cores, n);
      }
    }
  });
  CHECK(visited >= 4);
}

TEST_CASE("update() at batch 8 changes only each sequence's new tiles: what a step sends does not grow with the context", "[cpu][attention]") {
  // Eight live-hook caches (kivi-2 and vidkv-k1.5-v1.58, 2 KV heads x 64) with prefills of P + 37 b tokens, then 130
  // steps of one token per sequence, at P = 640 and at P = 3200 (2560 more: a multiple of R = 128 and of 32, so both
  // runs quantize at the same steps and hold the same blocks after the prefill's, which is one block per side). The
  // tiles and blocks of each sequence sit in regions of their own, so a step rewrites each sequence's residual-window
  // tiles and its new or merged blocks' entries only: the bytes its change takes (last_change) are the same at both
  // lengths, 20 and 100 tiles of prefill per sequence alike, and fit the parameter-copy launches (at most 8 x 3,840
  // bytes), also at the steps where some sequence gains a block (which moves no other sequence's block indices).
  // Before the regions, a change in sequence 0's tiles moved every later sequence's, about 7,000 entries (170 KB) at
  // 8 x 32k tokens: a whole upload every step.
  constexpr int kSteps = 130;  // past R = 128: the paper lifecycle's residual blocks too
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name);
    std::vector<std::vector<DecodeAttention::TableChange>> runs;
    std::vector<bool> adds_blocks;  // per step: some sequence gained a block (the same in both runs)
    for (const std::int64_t prefill : {640, 3200}) {
      const LayerInput in = synthetic_input(2, prefill + 37 * 7 + kSteps, 64, 61);
      std::vector<std::unique_ptr<LayerCache>> caches;
      std::vector<const LayerCache*> ptrs;
      std::vector<std::int64_t> next;
      for (int b = 0; b < 8; ++b) {
        caches.push_back(std::make_unique<LayerCache>(preset.codec, preset.lifecycle, 2, 64, TokenContext{}, DType::f16,
                                                      Execution::cpu(), ExactTokens::residual));
        next.push_back(prefill + 37 * b);
        append_tokens(*caches.back(), in, 0, next.back());
        ptrs.push_back(caches.back().get());
      }
      DecodeAttention kept(ptrs, Execution::cpu());
      CHECK(kept.last_change().whole);  // a construction lays the tiles out
      std::vector<DecodeAttention::TableChange> changes;
      std::vector<bool> adds;
      for (int step = 0; step < kSteps; ++step) {
        bool added = false;
        for (std::size_t b = 0; b < 8; ++b) {
          LayerCache& c = *caches[b];
          const std::size_t blocks = c.key_block_count() + c.value_block_count();
          append_tokens(c, in, next[b], next[b] + 1);
          ++next[b];
          added = added || c.key_block_count() + c.value_block_count() != blocks;
        }
        kept.update(ptrs);
        changes.push_back(kept.last_change());
        adds.push_back(added);
      }
      REQUIRE(kept.same_tables(DecodeAttention(ptrs, Execution::cpu())));
      runs.push_back(changes);
      if (adds_blocks.empty()) adds_blocks = adds;
      REQUIRE(adds_blocks == adds);
    }
    int compared = 0, with_blocks = 0;
    for (std::size_t i = 0; i < runs[0].size(); ++i) {
      with_blocks += adds_blocks[i] ? 1 : 0;
      CAPTURE(i);
      const DecodeAttention::TableChange &a = runs[0][i], &b = runs[1][i];
      CHECK_FALSE(a.whole);
      CHECK_FALSE(b.whole);
      CHECK(a.bytes == b.bytes);
      CHECK(a.bytes > 0);
      CHECK(a.launches >= 1);
      CHECK(a.launches <= 8);
      ++compared;
    }
    CHECK(compared == kSteps);
    CHECK(with_blocks >= 2);  // steps at which some sequence gained a block are among them
  }
}

TEST_CASE("a failed update() leaves run() refusing until an update() succeeds", "[cpu][attention]") {
  const LayerInput a = synthetic_input(2, 120, 64, 51), b = synthetic_input(2, 100, 32, 52);
  const PresetCodec preset = preset_codec("kivi-2");
  const KvCodec& codec = preset.codec;
  const LifecycleParams& lc = preset.lifecycle;
  const auto ca = filled_cache(codec, lc, a, 100, Execution::cpu(), ExactTokens::residual);
  const auto other_width = filled_cache(codec, lc, b, 100, Execution::cpu(), ExactTokens::residual);  // D = 32
  DecodeAttention kept({ca.get()}, Execution::cpu());
  const std::vector<float> q = random_queries(1, 14, 64, 1.0f, 3);  // 2 KV heads x 7
  std::vector<float> out(q.size());
  const TensorView qv{const_cast<float*>(q.data()), DType::f32, Device::cpu, {1, 14, 64}}, ov{out.data(), DType::f32, Device::cpu, {1, 14, 64}};
  REQUIRE_THROWS_AS(kept.update({ca.get(), other_width.get()}), ShapeError);  // sequence 1 has 32 channels
  REQUIRE_THROWS_AS(kept.run_emulated(qv, ov), ShapeError);
  REQUIRE_THROWS_AS(kept.run(qv, ov), ShapeError);
  REQUIRE_THROWS_AS(kept.update({}), ShapeError);
  kept.update({ca.get()});
  REQUIRE(kept.same_tables(DecodeAttention({ca.get()}, Execution::cpu())));
  kept.run_emulated(qv, ov);
  check_against_reference({ca.get()}, q, out, 7);
}

TEST_CASE("every LayerCache object has its own instance id, copies too", "[cpu][attention]") {
  // Decode attention's kept tables recognise a sequence by it: a cache made at a freed one's address is another.
  const LayerInput a = synthetic_input(2, 40, 64, 53);
  const PresetCodec preset = preset_codec("kivi-2");
  const KvCodec& codec = preset.codec;
  const LifecycleParams& lc = preset.lifecycle;
  auto first = filled_cache(codec, lc, a, 40, Execution::cpu());
  const std::uint64_t id = first->instance_id();
  const LayerCache copy(*first, codec, TokenContext{});
  CHECK(copy.instance_id() != id);
  first.reset();
  const auto second = filled_cache(codec, lc, a, 40, Execution::cpu());
  CHECK(second->instance_id() != id);
  CHECK(second->instance_id() != copy.instance_id());
}

TEST_CASE("same_tables tells tables apart", "[cpu][attention]") {
  // The test above relies on same_tables: two caches one token apart have different tiles.
  const LayerInput a = synthetic_input(2, 100, 64, 41);
  const PresetCodec preset = preset_codec("kivi-2");
  const KvCodec& codec = preset.codec;
  const LifecycleParams& lc = preset.lifecycle;
  const auto c99 = filled_cache(codec, lc, synthetic_input(2, 99, 64, 41), 60, Execution::cpu());
  const auto c100 = filled_cache(codec, lc, a, 60, Execution::cpu());
  const DecodeAttention x({c99.get()}, Execution::cpu()), y({c100.get()}, Execution::cpu());
  CHECK(x.same_tables(x));
  CHECK_FALSE(x.same_tables(y));
}
