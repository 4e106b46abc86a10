// Registry-driven conformance of every plugin (ggml test-backend-ops style): each registered quantizer with its
// default parameters plus a table of extra configurations (conformance_configs.h), and each registered channel
// selector and token protector with its defaults, through the suite of experiments/src/plugin_conformance.h (the
// one `vidkv plugins check` runs: layout, exact bytes inside guard bytes, determinism, decode, round trip, unknown
// keys, reference vs optimized; masks / indices for selectors and protectors). New plugins are enrolled
// automatically through the registry.
//
// Optimised vs reference (architecture.md 5): every configuration above and every preset's key and value block is
// built from test::builtin_registry(reference) and test::builtin_registry(optimized) and run on shapes with tail groups, odd
// channel counts and several heads, on data with outlier, constant and signed-zero groups: packed bytes (inside
// guard bytes) and decoded floats must be bit-identical, in both directions (each decodes the other's bytes).
// Exception, where the AVX-512 kernels run: the optimised sign FFT (sign_fft_avx512.h, power-of-two widths 16 ..
// 128) sums in another order than FFTW. For a block with a sign quantizer with fft != off (itself or a composite's
// child) the sections of that quantizer may differ, every other section must still be bit-identical, and the
// decoders are compared with the named tolerance kFftDecodeTolerance (see fft_decode_tolerance below). The
// encode side of the tolerance (which bits and scales may differ) is checked where the FFT values are known, on
// the sign quantizer itself: tests/cpp/test_sign_fft_avx512.cpp.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token.h"
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"
#include "vidkv/quantization/simd/cpu_features.h"

#include "catch.h"
#include "test_registry.h"
#include "conformance_configs.h"
#include "fixture_quantizers.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/plugin_conformance.h"
#include "vidkv/experiments/src/presets.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

// Tokens: system text, then a middle span of visual tokens, then query text (token-dependent composites see all three).
TraceTokens mixed_tokens(std::int64_t n) {
  TraceTokens t = TraceTokens::uniform(n, Modality::system_text);
  for (std::int64_t i = n / 4; i < n; ++i) {
    const bool visual = i < 3 * n / 4;
    t.modality[std::size_t(i)] = visual ? Modality::visual : Modality::query_text;
    if (visual) {
      t.frame[std::size_t(i)] = static_cast<std::int32_t>((i - n / 4) / 4);
      t.patch_row[std::size_t(i)] = static_cast<std::int16_t>((i - n / 4) % 4 / 2);
      t.patch_col[std::size_t(i)] = static_cast<std::int16_t>((i - n / 4) % 2);
    }
  }
  return t;
}

// Gaussian block with a few outlier channels (scaled x8) and one constant channel, as KV caches have.
std::vector<float> test_block(const BlockShape& s, std::uint64_t seed) {
  auto x = gaussian(std::size_t(s.elements()), seed);
  for (std::int64_t h = 0; h < s.heads; ++h)
    for (std::int64_t t = 0; t < s.tokens; ++t)
      for (std::int64_t c = 0; c < s.channels; ++c) {
        float& v = x[std::size_t((h * s.tokens + t) * s.channels + c)];
        if (c % 5 == 1) v *= 8.0f;
        if (c == s.channels - 1 && s.channels > 2) v = 0.75f;
      }
  return x;
}

constexpr std::size_t kGuard = 64;

std::vector<std::uint8_t> guarded_encode(const Quantizer& q, const BlockShape& s, const TokenContext& ctx,
                                         const std::vector<float>& x, std::size_t bytes, std::uint8_t fill) {
  std::vector<std::uint8_t> buf(bytes + 2 * kGuard, fill);
  q.encode(x.data(), s, ctx, buf.data() + kGuard);
  for (std::size_t i = 0; i < kGuard; ++i) {
    REQUIRE(buf[i] == fill);
    REQUIRE(buf[kGuard + bytes + i] == fill);
  }
  return std::vector<std::uint8_t>(buf.begin() + std::ptrdiff_t(kGuard), buf.end() - std::ptrdiff_t(kGuard));
}

}  // namespace

// The contract checks themselves live in experiments/src/plugin_conformance.cpp, shared with `vidkv plugins check`.
TEST_CASE("every registered quantizer conforms to the codec contract", "[quantizer][conformance]") {
  const auto configs = conformance_configs();
  REQUIRE(configs.size() >= test::builtin_registry().names(PluginFamily::quantizer).size());
  for (const auto& config : configs) {
    std::vector<std::pair<std::string, std::string>> params(config.params.begin(), config.params.end());
    for (const auto& c : check_quantizer(test::builtin_registry(), plugin_block(config.name, params))) {
      INFO(c.plugin << " " << c.check << ": " << c.detail);
      CHECK(c.verdict != Verdict::fail);
      if (c.verdict == Verdict::skipped) CHECK(!c.detail.empty());  // cuda; reference on an inexact (FFT) tier
    }
  }
}

TEST_CASE("every registered channel selector and token protector conforms to its contract", "[selector][protector][conformance]") {
  std::vector<PluginInfo> plugins;
  for (const auto& info : test::builtin_registry().list())
    if (info.family != PluginFamily::quantizer) plugins.push_back(info);
  REQUIRE(plugins.size() == test::builtin_registry().names(PluginFamily::channel_selector).size() +
                                test::builtin_registry().names(PluginFamily::token_protector).size());
  std::set<std::string> checked;
  for (const auto& c : check_plugins(test::builtin_registry(), plugins)) {
    INFO(c.plugin << " " << c.check << ": " << c.detail);
    checked.insert(c.plugin);
    CHECK(c.verdict == (c.check == "cuda" ? Verdict::skipped : Verdict::pass));
  }
  CHECK(checked.size() == plugins.size());
}

TEST_CASE("invalid quantizer parameters are ConfigErrors naming the key", "[quantizer][conformance]") {
  struct Bad {
    Config config;
    std::string key;
  };
  const std::vector<Bad> bad{
      {{"uniform", {{"bits", "0"}}}, "bits"},
      {{"uniform", {{"group", "0"}}}, "group"},
      {{"uniform", {{"bits", "3"}, {"layout", "release"}}}, "layout"},
      {{"uniform", {{"axis", "row"}}}, "axis"},
      {{"uniform", {{"bitz", "2"}}}, "bitz"},
      {{"ternary", {{"gamma", "-1"}}}, "gamma"},
      {{"ternary", {{"group", "0"}}}, "group"},
      {{"ternary", {{"packing", "base4"}}}, "packing"},
      {{"sign", {{"group", "0"}}}, "group"},
      {{"sign", {{"fft", "on"}}}, "fft"},
      {{"sign", {{"bits", "1"}}}, "bits"},
      {{"identity", {{"dtype", "fp8"}}}, "dtype"},
  };
  for (const auto& b : bad) {
    if (!test::builtin_registry().find(PluginFamily::quantizer, b.config.name)) continue;
    INFO("config " << b.config.str());
    try {
      make(b.config.name, b.config.params);
      FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
      INFO("message: " << e.what());
      CHECK(std::string(e.what()).find(b.key) != std::string::npos);
    }
  }
  // Every registered quantizer rejects an unknown key.
  for (const auto& name : test::builtin_registry().names(PluginFamily::quantizer)) {
    INFO("plugin " << name);
    try {
      make(name, {{"no_such_key", "1"}});
      FAIL("expected a ConfigError");
    } catch (const ConfigError& e) {
      CHECK(std::string(e.what()).find("no_such_key") != std::string::npos);
    }
  }
}

namespace {

// test_block plus the cases where a vectorised min/max could differ from the sequential one: groups whose
// extremum is a zero of either sign (channel c % 7 == 3 alternates -0/+0 along tokens, token t % 11 == 4 is
// all zeros of alternating sign along channels) and a group of large-magnitude values.
std::vector<float> equivalence_block(const BlockShape& s, std::uint64_t seed) {
  auto x = test_block(s, seed);
  for (std::int64_t h = 0; h < s.heads; ++h)
    for (std::int64_t t = 0; t < s.tokens; ++t)
      for (std::int64_t c = 0; c < s.channels; ++c) {
        float& v = x[std::size_t((h * s.tokens + t) * s.channels + c)];
        if (c % 7 == 3) v = (t % 2) ? -0.0f : 0.0f;
        if (t % 11 == 4) v = (c % 2) ? 0.0f : -0.0f;
        if (c % 7 == 5 && t % 3 == 0) v = std::fabs(v);  // some groups with a zero minimum from below
        if (c == 0 && t % 13 == 6) v *= 1000.0f;
      }
  return x;
}

std::vector<ConfigNode> equivalence_blocks() {
  std::vector<ConfigNode> out;
  for (const auto& c : conformance_configs()) out.push_back(quantizer_block(c.name, c.params));
  for (const auto& p : list_presets()) {
    const ConfigNode doc = load_preset(p.name, ConfigNode::scalar(p.name));
    for (const char* side : {"key", "value"}) out.push_back(doc.at("codec").at(side));
  }
  return out;
}

// Dotted config paths of the sign quantizers with an FFT inside `node` ("" for the node itself, "low",
// "rest.low", ...): the section-name prefixes of their packed parts (composites prefix a child's sections with its
// key; mixed_channel's scope head adds ".h<mask>" components, dropped by section_path).
// A composite's children left out of its block are its defaults (e.g. mixed_channel's low {sign, fft: real}).
void fft_sign_paths(const ConfigNode& block, const std::string& path, std::vector<std::string>* out) {
  if (!block.is_map()) return;
  ConfigNode node = block;
  const ConfigNode* q = node.find("type");
  const std::string name = q && !q->is_map() ? q->text() : "";
  const auto fill = [&](const char* key, ConfigNode (*def)()) {
    if (!node.has(key)) node.set(key, def());
  };
  if (name == "mixed_channel") {
    fill("high", &MixedChannelQuantizer::Params::default_high);
    fill("low", &MixedChannelQuantizer::Params::default_low);
  } else if (name == "mixed_token") {
    fill("protected", &MixedTokenQuantizer::Params::default_protected);
    fill("rest", &MixedTokenQuantizer::Params::default_rest);
  }
  const ConfigNode* fft = node.find("fft");
  if (name == "sign" && fft && !fft->is_map() && fft->text() != "off") out->push_back(path);
  for (const auto& [key, child] : node.entries())
    if (child.is_map()) fft_sign_paths(child, path.empty() ? key : path + "." + key, out);
}

std::string section_path(const std::string& name) {
  std::string out, part;
  std::size_t i = 0;
  while (i <= name.size()) {
    const std::size_t dot = std::min(name.find('.', i), name.size());
    part = name.substr(i, dot - i);
    const bool head_part = part.size() > 1 && part[0] == 'h' && part.find_first_not_of("0123456789", 1) == std::string::npos;
    if (!head_part) out += (out.empty() ? "" : ".") + part;
    i = dot + 1;
  }
  return out;
}

bool in_fft_part(const std::string& section, const std::vector<std::string>& paths) {
  const std::string p = section_path(section);
  for (const auto& f : paths)
    if (f.empty() || p.rfind(f + ".", 0) == 0) return true;
  return false;
}

// kFftDecodeTolerance: how far the optimised and the reference decoders may be apart on the same bytes of a block
// with a sign FFT, per decoded value. Each inverse transform is within B_inv = F(n) u (2/n) sum |Y| (stored bins)
// of the exact one (F = fft_avx512_error_factor, derivation in sign_fft_avx512.cpp; FFTW checked against the same
// bound in test_sign_fft_avx512.cpp), so they differ by at most 2 B_inv. A decoded spectrum component is 0 or +-s,
// s a group's stored scale, so |Y_k| <= sqrt(2) s and (2/n) sum |Y| <= 2 sqrt(2) s (complex: n bins; real: n/2 + 1
// bins <= 2 sqrt(2) s too); s is a mean of |X| over FFT components, each |X_k| <= ||x_row||_1 of the channels the
// sign quantizer got (a subset of the block's), rounded up by at most a factor (1 + 2^-8) (bf16, the coarsest scale
// dtype); F grows with n <= channels. Hence
//   kFftDecodeTolerance = 2 * 2 sqrt(2) * F(channels) * u * (1 + 2^-8) * max over rows of ||x_row||_1.
// Values outside the FFT part come from identical bytes through identical code and still compare equal (0 <= tol).
double fft_decode_tolerance(const std::vector<float>& x, const BlockShape& s) {
  double worst = 0;
  for (std::int64_t r = 0; r < s.heads * s.tokens; ++r) {
    double l1 = 0;
    for (std::int64_t c = 0; c < s.channels; ++c) l1 += std::fabs(double(x[std::size_t(r * s.channels + c)]));
    worst = std::max(worst, l1);
  }
  return 4.0 * std::sqrt(2.0) * fft_avx512_error_factor(s.channels) * 0x1p-24 * (1.0 + 0x1p-8) * worst;
}

}  // namespace

TEST_CASE("optimized CPU paths write the reference's bytes for every quantizer and preset", "[quantizer][conformance][optimized]") {
  // Besides tails and odd sizes, shapes that the AVX-512 kernels take (grouped axis a multiple of 32): several
  // 16-channel strips with a partial last one (2x64x40, 2x96x20), token-axis batches of 16 groups with and
  // without a remainder (1x64x96, 1x33x32), and the release's 2x64x128.
  const std::vector<BlockShape> shapes{{1, 32, 8},  {2, 45, 16}, {1, 7, 3},   {3, 64, 128}, {4, 300, 128}, {2, 77, 13},
                                       {1, 1, 5},   {2, 64, 40}, {2, 96, 20}, {1, 64, 96},  {1, 33, 32},   {2, 64, 128}};
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  const PluginRegistry& opt_registry = test::builtin_registry(CpuImplementation::optimized);
  REQUIRE(ref_registry.implementation() == CpuImplementation::reference);
  REQUIRE(opt_registry.implementation() == CpuImplementation::optimized);
  const auto blocks = equivalence_blocks();
  REQUIRE(blocks.size() > conformance_configs().size());
  std::uint64_t seed = 5000;
  for (const auto& block : blocks) {
    const auto ref = ref_registry.make_quantizer(block);
    const auto opt = opt_registry.make_quantizer(block);
    std::vector<std::string> fft_paths;
    if (simd::avx512_kernels()) fft_sign_paths(block, "", &fft_paths);
    for (const auto& shape : shapes) {
      ++seed;
      INFO("block " << block.dump() << ", shape " << shape.str() << ", seed " << seed);
      if (!ref->supports(Device::cpu, shape)) continue;
      const TraceTokens tokens = mixed_tokens(shape.tokens);
      TokenContext ctx;
      ctx.layer = 1;
      ctx.tokens = &tokens;
      ctx.seed = seed;
      const auto layout = ref->layout(shape, ctx);
      REQUIRE(opt->layout(shape, ctx).bytes() == layout.bytes());
      const auto x = equivalence_block(shape, seed);
      std::vector<std::uint8_t> ref_bytes;
      try {
        ref_bytes = guarded_encode(*ref, shape, ctx, x, layout.bytes(), 0xC3);
      } catch (const Error& e) {  // e.g. a protector whose side data this context lacks: both must refuse
        INFO("reference refused: " << e.what());
        std::vector<std::uint8_t> out(layout.bytes());
        CHECK_THROWS_AS(opt->encode(x.data(), shape, ctx, out.data()), Error);
        continue;
      }
      const auto opt_bytes = guarded_encode(*opt, shape, ctx, x, layout.bytes(), 0x3C);
      // Bytes of the sign-FFT parts (if any, see the top) are exempt; all others must be equal.
      std::vector<bool> exempt(ref_bytes.size(), false);
      std::size_t offset = 0;
      for (const auto& sec : layout.sections()) {
        if (in_fft_part(sec.name, fft_paths)) std::fill(exempt.begin() + std::ptrdiff_t(offset), exempt.begin() + std::ptrdiff_t(offset + sec.bytes), true);
        offset += sec.bytes;
      }
      std::size_t first_diff = ref_bytes.size();
      for (std::size_t i = 0; i < ref_bytes.size(); ++i)
        if (ref_bytes[i] != opt_bytes[i] && !exempt[i]) {
          first_diff = i;
          break;
        }
      INFO("first differing byte " << first_diff << " of " << ref_bytes.size());
      REQUIRE(first_diff == ref_bytes.size());

      const std::size_t n = std::size_t(shape.elements());
      std::vector<float> ref_y(n + 32, -777.0f), opt_y(n + 32, -777.0f), cross_y(n + 32, -777.0f);
      ref->decode(ref_bytes.data(), shape, ctx, ref_y.data() + 16);
      opt->decode(opt_bytes.data(), shape, ctx, opt_y.data() + 16);
      opt->decode(ref_bytes.data(), shape, ctx, cross_y.data() + 16);
      for (std::size_t i = 0; i < 16; ++i) {
        REQUIRE(opt_y[i] == -777.0f);
        REQUIRE(opt_y[n + 16 + i] == -777.0f);
      }
      if (fft_paths.empty()) {
        CHECK(std::memcmp(ref_y.data(), opt_y.data(), (n + 32) * sizeof(float)) == 0);
        CHECK(std::memcmp(ref_y.data(), cross_y.data(), (n + 32) * sizeof(float)) == 0);
        continue;
      }
      // Sign FFT: the decoders on the same bytes, both ways, within kFftDecodeTolerance.
      std::vector<float> ref_on_opt(n + 32, -777.0f);
      ref->decode(opt_bytes.data(), shape, ctx, ref_on_opt.data() + 16);
      const double tol = fft_decode_tolerance(x, shape);
      double worst = 0;
      std::size_t worst_at = 0;
      for (std::size_t i = 0; i < n + 32; ++i) {
        const double d = std::max(std::fabs(double(cross_y[i]) - ref_y[i]), std::fabs(double(opt_y[i]) - ref_on_opt[i]));
        if (!(d <= worst)) worst = d, worst_at = i;
      }
      INFO("sign FFT block: worst decoder difference " << worst << " at float " << worst_at << ", kFftDecodeTolerance " << tol);
      CHECK(worst <= tol);
    }
  }
}

namespace {

// Claims token-separable but keeps one scale per head for the whole block: its sections are not [heads][tokens][w].
class SeparableClaimMeanSign : public test::MeanSignQuantizer {
 public:
  using MeanSignQuantizer::MeanSignQuantizer;
  bool token_separable(const BlockShape&) const override { return true; }
};
// Claims token-separable with [heads][tokens][1] bytes, but writes each head's tokens in reverse order: the sizes fit,
// the bytes do not (a one-token block reads the same either way).
class SeparableClaimReversed : public test::HalfStepQuantizer {
 public:
  using HalfStepQuantizer::HalfStepQuantizer;
  bool token_separable(const BlockShape&) const override { return true; }
  void encode(const float* in, const BlockShape& shape, const TokenContext& ctx, std::uint8_t* out) const override {
    std::vector<float> reversed(static_cast<std::size_t>(shape.elements()));
    for (std::int64_t h = 0; h < shape.heads; ++h)
      for (std::int64_t t = 0; t < shape.tokens; ++t)
        for (std::int64_t c = 0; c < shape.channels; ++c)
          reversed[std::size_t((h * shape.tokens + shape.tokens - 1 - t) * shape.channels + c)] = in[(h * shape.tokens + t) * shape.channels + c];
    HalfStepQuantizer::encode(reversed.data(), shape, ctx, out);
  }
};

const ConformanceCheck* find_check(const std::vector<ConformanceCheck>& checks, const std::string& name) {
  for (const auto& c : checks)
    if (c.check == name) return &c;
  return nullptr;
}

std::vector<ConformanceCheck> token_separable_checks(const PluginRegistry& r, const std::string& name,
                                                     const std::vector<std::pair<std::string, std::string>>& params = {}) {
  std::vector<ConformanceCheck> out;
  for (const auto& c : check_quantizer(r, plugin_block(name, params)))
    if (c.check == "token_separable") out.push_back(c);
  return out;
}

}  // namespace

TEST_CASE("the token_separable check passes the plugins that claim it and fails false claims", "[quantizer][conformance]") {
  // True claims, checked on every conformance shape: uniform along tokens (dense and release), identity.
  for (const auto& [name, params] : std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>{
           {"uniform", {{"bits", "2"}, {"axis", "token"}, {"layout", "release"}}}, {"uniform", {{"bits", "4"}, {"axis", "token"}}}, {"identity", {}}}) {
    INFO(name);
    const auto checks = token_separable_checks(test::builtin_registry(), name, params);
    REQUIRE(!checks.empty());
    for (const auto& c : checks) {
      INFO(c.detail);
      CHECK(c.verdict == Verdict::pass);
    }
  }
  // No claim, no check: uniform per channel.
  CHECK(token_separable_checks(test::builtin_registry(), "uniform", {{"axis", "channel"}}).empty());
  // False claims fail, saying which way.
  PluginRegistry r = test::fixture_registry();
  r.add<SeparableClaimMeanSign>("claims_separable_mean_sign", "test fixture: a false token_separable claim (sizes)");
  r.add<SeparableClaimReversed>("claims_separable_reversed", "test fixture: a false token_separable claim (bytes)");
  const auto sizes = token_separable_checks(r, "claims_separable_mean_sign");
  const auto bytes = token_separable_checks(r, "claims_separable_reversed");
  REQUIRE(!sizes.empty());
  REQUIRE(!bytes.empty());
  CHECK(sizes[0].verdict == Verdict::fail);
  CHECK(sizes[0].detail.find("not [heads][tokens][w]") != std::string::npos);
  CHECK(bytes[0].verdict == Verdict::fail);
  CHECK(bytes[0].detail.find("differ from the block's bytes") != std::string::npos);
}

TEST_CASE("the shapes check names the shapes supports() refused, and fails a plugin that takes none", "[quantizer][conformance]") {
  const PluginRegistry r = test::fixture_registry();
  // The conformance shapes have 8, 16, 3, 128, 13 and 5 channels: min_channels 64 takes one, 4096 none.
  const auto some = check_quantizer(r, plugin_block("wide_blocks_only"));
  const ConformanceCheck* shapes = find_check(some, "shapes");
  REQUIRE(shapes);
  CHECK(shapes->verdict == Verdict::pass);
  CHECK(shapes->detail.find("1 of 6 shapes; supports() refused 1x32x8, 2x45x16, 1x7x3, 2x77x13, 1x1x5 (heads x tokens x channels)") != std::string::npos);
  REQUIRE(find_check(some, "round_trip"));
  CHECK(find_check(some, "round_trip")->verdict == Verdict::pass);
  // Before: every check said pass (or was left out) though no block was ever encoded.
  const auto none = check_quantizer(r, plugin_block("wide_blocks_only", {{"min_channels", "4096"}}));
  shapes = find_check(none, "shapes");
  REQUIRE(shapes);
  INFO(shapes->detail);
  CHECK(shapes->verdict == Verdict::fail);
  CHECK(shapes->detail.find("supports() refused all 6 conformance shapes") != std::string::npos);
  CHECK(shapes->detail.find("round_trip and reference did not run") != std::string::npos);
  CHECK(find_check(none, "round_trip") == nullptr);
}
