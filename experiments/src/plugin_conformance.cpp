#include "vidkv/experiments/src/plugin_conformance.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <random>

#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/error.h"
#include "vidkv/core/params.h"
#include "vidkv/core/token_context.h"

namespace vidkv {

const char* verdict_name(Verdict v) {
  switch (v) {
    case Verdict::pass: return "pass";
    case Verdict::fail: return "FAIL";
    case Verdict::skipped: return "skipped";
  }
  return "?";
}

const std::vector<BlockShape>& conformance_shapes() {
  static const std::vector<BlockShape> shapes{{1, 32, 8}, {2, 45, 16}, {1, 7, 3}, {3, 64, 128}, {2, 77, 13}, {1, 1, 5}};
  return shapes;
}

ConfigNode plugin_block(const std::string& name, const std::vector<std::pair<std::string, std::string>>& params) {
  const SourceLocation at{"conformance", 1, 1};
  ConfigNode n = ConfigNode::map(at);
  n.set(kPluginTypeKey, ConfigNode::scalar(name, at));
  for (const auto& [k, v] : params) n.set(k, ConfigNode::scalar(v, at));
  return n;
}

namespace {

constexpr std::size_t kGuardBytes = 64;
constexpr std::size_t kGuardFloats = 16;
constexpr float kGuardFloat = -12345.0f;
// round_trip: ||decode(encode(x)) - x|| / ||x|| must stay below this. Not a quality bar (a 1-bit asymmetric quantizer
// on 8-channel rows with x8 outlier channels reaches 1.3): a decoder that reads the wrong offsets, scales or dtype
// lands orders of magnitude above it.
constexpr double kRoundTripBound = 10.0;

// Tokens: system text, then a middle span of visual tokens (frames of 2x2 patches), then query text; input
// embeddings of width 16.
TraceTokens mixed_tokens(std::int64_t n, std::uint64_t seed) {
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
  t.hidden = 16;
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  t.embeddings.resize(std::size_t(n * t.hidden));
  for (float& v : t.embeddings) v = g(rng);
  return t;
}

// Gaussian block with outlier channels (c % 5 == 1, x8) and one constant channel, as KV caches have.
std::vector<float> test_block(const BlockShape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(std::size_t(s.elements()));
  for (std::int64_t h = 0; h < s.heads; ++h)
    for (std::int64_t t = 0; t < s.tokens; ++t)
      for (std::int64_t c = 0; c < s.channels; ++c) {
        float v = g(rng);
        if (c % 5 == 1) v *= 8.0f;
        if (c == s.channels - 1 && s.channels > 2) v = 0.75f;
        x[std::size_t((h * s.tokens + t) * s.channels + c)] = v;
      }
  return x;
}

// One block's context: mixed tokens, and queries / keys for protectors that score by attention.
struct Context {
  TraceTokens tokens;
  LayerQueries queries;
  TokenContext ctx;
  Context(const BlockShape& s, const std::vector<float>& x, std::uint64_t seed) : tokens(mixed_tokens(s.tokens, seed)) {
    queries.heads = s.heads;
    queries.count = 2;
    queries.dim = s.channels;
    queries.data = test_block({s.heads, 2, s.channels}, seed + 7);
    queries.token_index = {static_cast<std::int32_t>(s.tokens - 1), static_cast<std::int32_t>(s.tokens - 1)};
    ctx.layer = 3;
    ctx.tokens = &tokens;
    ctx.seed = seed;
    ctx.queries = &queries;
    ctx.keys.data = x.data();
    ctx.keys.heads = s.heads;
    ctx.keys.tokens = s.tokens;
    ctx.keys.dim = s.channels;
  }
  Context(const Context&) = delete;
};

// Collects the verdicts of one plugin: a check passes unless a failure was recorded (the first detail is kept).
class Recorder {
 public:
  explicit Recorder(std::string plugin) : plugin_(std::move(plugin)) {}
  void fail(const std::string& check, const std::string& detail) { set(check, Verdict::fail, detail); }
  void skip(const std::string& check, const std::string& detail) { set(check, Verdict::skipped, detail); }
  void pass(const std::string& check) { set(check, Verdict::pass, ""); }
  // A figure for the detail of a passed check.
  void note(const std::string& check, const std::string& detail) {
    for (auto& c : out_)
      if (c.check == check && c.verdict == Verdict::pass) c.detail = detail;
  }
  // Runs fn as `check`; an exception is that check's failure.
  void run(const std::string& check, const std::function<void()>& fn) {
    try {
      fn();
      pass(check);
    } catch (const std::exception& e) {
      fail(check, std::string("threw: ") + e.what());
    }
  }
  std::vector<ConformanceCheck> take() { return std::move(out_); }

 private:
  void set(const std::string& check, Verdict v, const std::string& detail) {
    for (auto& c : out_)
      if (c.check == check) {
        if (c.verdict == Verdict::fail) return;  // the first failure stays
        if (v == Verdict::pass && c.verdict == Verdict::skipped) return;
        c.verdict = v;
        c.detail = detail;
        return;
      }
    out_.push_back({plugin_, check, v, detail});
  }
  std::string plugin_;
  std::vector<ConformanceCheck> out_;
};

std::string where(const BlockShape& s, std::uint64_t seed) { return "shape " + s.str() + ", seed " + std::to_string(seed); }

void check_unknown_key(Recorder& r, PluginFamily family, const PluginRegistry& registry, const ConfigNode& block) {
  ConfigNode bad = block;
  bad.set("no_such_key", ConfigNode::scalar("1", {"conformance", 1, 1}));
  try {
    registry.validate(family, bad);
    r.fail("parameters", "a block with the unknown key 'no_such_key' was accepted");
  } catch (const ConfigError& e) {
    if (std::string(e.what()).find("no_such_key") == std::string::npos)
      r.fail("parameters", std::string("the ConfigError does not name the key: ") + e.what());
    else
      r.pass("parameters");
  } catch (const std::exception& e) {
    r.fail("parameters", std::string("threw another error than ConfigError: ") + e.what());
  }
}

std::string cuda_skip_reason(bool declares_cuda) {
  std::string why;
  const bool gpu = cuda_device_count(&why) > 0;
  if (!declares_cuda) return "the plugin has no CUDA implementation (cuda_implemented() is false)";
  if (!gpu) return "no GPU visible (" + why + "); the CPU-vs-CUDA comparison needs one";
  return "a GPU is visible: the CPU-vs-CUDA comparison runs in the [cuda] tests (test_cuda_registry.cpp), not here";
}

// Exposes the protected cuda_implemented() of a built plugin.
struct QuantizerCuda : Quantizer {
  static bool of(const Quantizer& q) { return (q.*(&QuantizerCuda::cuda_implemented))(); }
};
struct SelectorCuda : ChannelSelector {
  static bool of(const ChannelSelector& s) { return (s.*(&SelectorCuda::cuda_implemented))(); }
};
struct ProtectorCuda : TokenProtector {
  static bool of(const TokenProtector& p) { return (p.*(&ProtectorCuda::cuda_implemented))(); }
};

}  // namespace

std::vector<ConformanceCheck> check_quantizer(const PluginRegistry& registry, const ConfigNode& block) {
  Recorder r("quantizer " + block.dump());
  std::unique_ptr<Quantizer> q, ref;
  const PluginRegistry ref_registry = registry.with_implementation(CpuImplementation::reference);
  const PluginRegistry opt_registry = registry.with_implementation(CpuImplementation::optimized);
  try {
    q = opt_registry.make_quantizer(block);
    ref = ref_registry.make_quantizer(block);
    r.pass("build");
  } catch (const std::exception& e) {
    r.fail("build", e.what());
    return r.take();
  }
  std::uint64_t seed = 1000;
  double worst_rel = -1;
  std::string refused;  // the shapes supports() refused
  std::size_t supported = 0;
  for (const BlockShape& shape : conformance_shapes()) {
    ++seed;
    const std::vector<float> x = test_block(shape, seed);
    Context c(shape, x, seed);
    const TokenContext& ctx = c.ctx;
    std::string why;
    if (!q->supports(Device::cpu, shape, &why)) {
      refused += (refused.empty() ? "" : ", ") + std::to_string(shape.heads) + "x" + std::to_string(shape.tokens) + "x" +
                 std::to_string(shape.channels);
      try {
        std::vector<std::uint8_t> out(std::size_t(q->layout(shape, ctx).bytes()));
        q->encode(x.data(), shape, ctx, out.data());
        r.fail("layout", "supports() refused " + where(shape, seed) + " but layout()/encode() did not throw");
      } catch (const Error&) {
        if (why.empty()) r.fail("layout", "supports() refused " + where(shape, seed) + " without a reason");
      }
      continue;
    }
    ++supported;
    try {
      const PackedLayout layout = q->layout(shape, ctx);
      const PackedLayout again = q->layout(shape, ctx);
      std::size_t sum = 0;
      for (const auto& sec : layout.sections()) sum += sec.bytes;
      if (layout.bytes() != again.bytes() || layout.sections().size() != again.sections().size())
        r.fail("layout", "layout() differs between two calls, " + where(shape, seed));
      if (sum != layout.bytes()) r.fail("layout", "sections sum to " + std::to_string(sum) + " of " + std::to_string(layout.bytes()) + " bytes, " + where(shape, seed));
      if (layout.elements() != shape.elements()) r.fail("layout", "elements() != shape.elements(), " + where(shape, seed));
      if (!(layout.nominal_bits() > 0)) r.fail("layout", "nominal_bits() <= 0, " + where(shape, seed));
      r.pass("layout");

      const std::size_t bytes = layout.bytes();
      auto encode_into = [&](const Quantizer& qq, std::uint8_t fill) {
        std::vector<std::uint8_t> buf(bytes + 2 * kGuardBytes, fill);
        qq.encode(x.data(), shape, ctx, buf.data() + kGuardBytes);
        for (std::size_t i = 0; i < kGuardBytes; ++i)
          if (buf[i] != fill || buf[kGuardBytes + bytes + i] != fill) {
            r.fail("exact_bytes", "encode() wrote outside its " + std::to_string(bytes) + " bytes, " + where(shape, seed));
            break;
          }
        return std::vector<std::uint8_t>(buf.begin() + std::ptrdiff_t(kGuardBytes), buf.end() - std::ptrdiff_t(kGuardBytes));
      };
      const auto a = encode_into(*q, 0xA5);
      const auto b = encode_into(*q, 0x5A);
      r.pass("exact_bytes");
      if (a != b) r.fail("determinism", "two encodes (buffers pre-filled 0xA5 / 0x5A) differ, " + where(shape, seed));
      r.pass("determinism");

      if (q->token_separable(shape)) {
        // The claim the kivi lifecycle relies on when it merges blocks: each token encoded alone, its sections'
        // [heads][1][w] bytes put side by side per head, gives the block's bytes.
        std::vector<std::uint8_t> joined(bytes, 0);
        bool ok = true;
        for (std::int64_t t = 0; t < shape.tokens && ok; ++t) {
          const BlockShape one{shape.heads, 1, shape.channels};
          const TokenContext one_ctx = ctx.range(t, t + 1);
          const PackedLayout one_layout = q->layout(one, one_ctx);
          std::vector<float> xt;
          for (std::int64_t h = 0; h < shape.heads; ++h)
            xt.insert(xt.end(), x.begin() + std::ptrdiff_t((h * shape.tokens + t) * shape.channels),
                      x.begin() + std::ptrdiff_t((h * shape.tokens + t + 1) * shape.channels));
          std::vector<std::uint8_t> bt(one_layout.bytes());
          q->encode(xt.data(), one, one_ctx, bt.data());
          ok = one_layout.sections().size() == layout.sections().size();
          for (std::size_t sec = 0; ok && sec < layout.sections().size(); ++sec) {
            const std::size_t w = one_layout.sections()[sec].bytes / std::size_t(shape.heads);
            ok = one_layout.sections()[sec].bytes == w * std::size_t(shape.heads) &&
                 layout.sections()[sec].bytes == w * std::size_t(shape.heads * shape.tokens);
            for (std::int64_t h = 0; ok && h < shape.heads; ++h)
              std::memcpy(joined.data() + layout.offset_of(sec) + std::size_t(h * shape.tokens + t) * w,
                          bt.data() + one_layout.offset_of(sec) + std::size_t(h) * w, w);
          }
        }
        if (!ok)
          r.fail("token_separable", "token_separable() is true but the sections are not [heads][tokens][w] bytes, " + where(shape, seed));
        else if (joined != a)
          r.fail("token_separable", "token_separable() is true but the tokens encoded one by one, side by side, differ from the block's bytes, " + where(shape, seed));
        else
          r.pass("token_separable");
      }

      const std::size_t n = std::size_t(shape.elements());
      auto decode_from = [&](const Quantizer& qq, const std::vector<std::uint8_t>& in) {
        std::vector<float> y(n + 2 * kGuardFloats, kGuardFloat);
        qq.decode(in.data(), shape, ctx, y.data() + kGuardFloats);
        for (std::size_t i = 0; i < kGuardFloats; ++i)
          if (y[i] != kGuardFloat || y[kGuardFloats + n + i] != kGuardFloat) {
            r.fail("decode", "decode() wrote outside its " + std::to_string(n) + " floats, " + where(shape, seed));
            break;
          }
        return std::vector<float>(y.begin() + std::ptrdiff_t(kGuardFloats), y.end() - std::ptrdiff_t(kGuardFloats));
      };
      const auto y = decode_from(*q, a);
      double err = 0, ref_norm = 0;
      bool finite = true;
      for (std::size_t i = 0; i < n; ++i) {
        finite = finite && std::isfinite(y[i]);
        err += (double(y[i]) - x[i]) * (double(y[i]) - x[i]);
        ref_norm += double(x[i]) * x[i];
      }
      if (!finite) r.fail("decode", "decode() gave a non-finite value, " + where(shape, seed));
      r.pass("decode");
      const double rel = std::sqrt(err / ref_norm);
      worst_rel = std::max(worst_rel, rel);
      if (!(rel < kRoundTripBound))
        r.fail("round_trip", "relative error " + std::to_string(rel) + " >= " + format_number(kRoundTripBound) + ", " + where(shape, seed));

      if (const KernelTier tier = q->tier(Device::cpu, shape); !tier.exact) {
        // Declared inexact (an FFT summed in another order): its bytes may differ by design; the named tolerance of
        // such a path is a property of the plugin, checked by its own tests (test_plugin_conformance.cpp [optimized]).
        r.skip("reference", "the optimized path " + tier.name + " declares itself not bit-exact (KernelTier::exact), " + where(shape, seed));
      } else if (!ref->supports(Device::cpu, shape)) {
        r.fail("reference", "the reference implementation refuses " + where(shape, seed) + " which the optimized one takes");
      } else {
        const auto ra = encode_into(*ref, 0xC3);
        if (ra != a) {
          std::size_t i = 0;
          while (i < a.size() && a[i] == ra[i]) ++i;
          r.fail("reference", "optimized and reference bytes differ at byte " + std::to_string(i) + " of " + std::to_string(a.size()) + ", " + where(shape, seed));
        } else if (const auto ry = decode_from(*ref, ra); std::memcmp(ry.data(), y.data(), n * sizeof(float)) != 0) {
          r.fail("reference", "optimized and reference decoders differ on the same bytes, " + where(shape, seed));
        }
        r.pass("reference");
      }
    } catch (const std::exception& e) {
      r.fail("exact_bytes", "threw on " + where(shape, seed) + " which supports() accepts: " + e.what());
    }
  }
  if (worst_rel >= 0) {
    r.pass("round_trip");
    if (worst_rel < kRoundTripBound) r.note("round_trip", "worst relative error " + format_number(worst_rel));
  }
  // Which shapes the data checks above ran on: none is a failure (they did not run at all), some a note.
  const std::size_t n = conformance_shapes().size();
  if (supported == 0) {
    r.fail("shapes", "supports() refused all " + std::to_string(n) + " conformance shapes (heads x tokens x channels " + refused +
                         "), so layout, exact_bytes, determinism, decode, round_trip and reference did not run on "
                         "this block (" + block.dump() + "; vidkv plugins check builds each plugin with its default "
                         "parameters: give it defaults under which it takes small blocks)");
  } else {
    r.pass("shapes");
    r.note("shapes", std::to_string(supported) + " of " + std::to_string(n) + " shapes" +
                         (refused.empty() ? "" : "; supports() refused " + refused + " (heads x tokens x channels)"));
  }
  check_unknown_key(r, PluginFamily::quantizer, registry, block);
  r.skip("cuda", cuda_skip_reason(QuantizerCuda::of(*q)));
  return r.take();
}

std::vector<ConformanceCheck> check_channel_selector(const PluginRegistry& registry, const ConfigNode& block) {
  Recorder r("channel_selector " + block.dump());
  std::unique_ptr<ChannelSelector> s, ref;
  try {
    s = registry.with_implementation(CpuImplementation::optimized).make_channel_selector(block);
    ref = registry.with_implementation(CpuImplementation::reference).make_channel_selector(block);
    r.pass("build");
  } catch (const std::exception& e) {
    r.fail("build", e.what());
    return r.take();
  }
  std::uint64_t seed = 2000;
  for (const BlockShape& shape : conformance_shapes()) {
    ++seed;
    const std::vector<float> x = test_block(shape, seed);
    std::int64_t k = 0;
    try {
      k = s->selected_count(shape.channels);
    } catch (const ConfigError&) {
      continue;  // a budget larger than this shape's channels: refused with a message, as documented
    }
    r.run("scores", [&] {
      const auto sc = s->score(x.data(), shape, 0, shape.heads);
      if (sc.size() != std::size_t(shape.channels)) r.fail("scores", "score() gave " + std::to_string(sc.size()) + " values for " + std::to_string(shape.channels) + " channels, " + where(shape, seed));
      for (double v : sc)
        if (!std::isfinite(v)) {
          r.fail("scores", "score() gave a non-finite value, " + where(shape, seed));
          break;
        }
    });
    r.run("masks", [&] {
      const auto masks = s->select(x.data(), shape);
      const auto again = s->select(x.data(), shape);
      if (masks != again) r.fail("determinism", "two select() calls differ, " + where(shape, seed));
      r.pass("determinism");
      if (std::int64_t(masks.size()) != s->mask_count(shape)) r.fail("masks", "select() gave " + std::to_string(masks.size()) + " masks, mask_count() says " + std::to_string(s->mask_count(shape)));
      for (const auto& m : masks) {
        std::int64_t ones = 0;
        bool binary = m.size() == std::size_t(shape.channels);
        for (auto v : m) ones += v == 1, binary = binary && (v == 0 || v == 1);
        if (!binary || ones != k) {
          r.fail("masks", "a mask is not " + std::to_string(shape.channels) + " 0/1 entries with " + std::to_string(k) + " ones, " + where(shape, seed));
          break;
        }
      }
      if (ref->select(x.data(), shape) != masks) r.fail("reference", "optimized and reference masks differ, " + where(shape, seed));
      r.pass("reference");
    });
  }
  check_unknown_key(r, PluginFamily::channel_selector, registry, block);
  r.skip("cuda", cuda_skip_reason(SelectorCuda::of(*s)));
  return r.take();
}

std::vector<ConformanceCheck> check_token_protector(const PluginRegistry& registry, const ConfigNode& block) {
  Recorder r("token_protector " + block.dump());
  std::unique_ptr<TokenProtector> p, ref;
  try {
    p = registry.with_implementation(CpuImplementation::optimized).make_token_protector(block);
    ref = registry.with_implementation(CpuImplementation::reference).make_token_protector(block);
    r.pass("build");
  } catch (const std::exception& e) {
    r.fail("build", e.what());
    return r.take();
  }
  std::uint64_t seed = 3000;
  for (const BlockShape& shape : conformance_shapes()) {
    ++seed;
    const std::vector<float> x = test_block(shape, seed);
    Context c(shape, x, seed);
    r.run("indices", [&] {
      const auto candidates = p->candidate_tokens(shape.tokens, c.ctx);
      const auto got = p->protect(x.data(), shape, c.ctx);
      if (std::int64_t(got.size()) != p->budget(std::int64_t(candidates.size())))
        r.fail("indices", "protect() gave " + std::to_string(got.size()) + " tokens, budget() says " + std::to_string(p->budget(std::int64_t(candidates.size()))) + ", " + where(shape, seed));
      for (std::size_t i = 0; i < got.size(); ++i) {
        const bool ascending = i == 0 || got[i - 1] < got[i];
        if (!ascending || !std::binary_search(candidates.begin(), candidates.end(), got[i])) {
          r.fail("indices", "protect() indices are not ascending candidates, " + where(shape, seed));
          break;
        }
      }
      if (p->protect(x.data(), shape, c.ctx) != got) r.fail("determinism", "two protect() calls differ, " + where(shape, seed));
      r.pass("determinism");
      if (ref->protect(x.data(), shape, c.ctx) != got) r.fail("reference", "optimized and reference protect() differ, " + where(shape, seed));
      r.pass("reference");
    });
  }
  check_unknown_key(r, PluginFamily::token_protector, registry, block);
  r.skip("cuda", cuda_skip_reason(ProtectorCuda::of(*p)));
  return r.take();
}

std::vector<ConformanceCheck> check_plugins(const PluginRegistry& registry, const std::vector<PluginInfo>& plugins) {
  std::vector<ConformanceCheck> out;
  for (const PluginInfo& info : plugins) {
    const ConfigNode block = plugin_block(info.name);
    std::vector<ConformanceCheck> some;
    switch (info.family) {
      case PluginFamily::quantizer: some = check_quantizer(registry, block); break;
      case PluginFamily::channel_selector: some = check_channel_selector(registry, block); break;
      case PluginFamily::token_protector: some = check_token_protector(registry, block); break;
    }
    out.insert(out.end(), some.begin(), some.end());
  }
  return out;
}

}  // namespace vidkv
