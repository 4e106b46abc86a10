// Shared by the [cpu] tests of fused decode attention (test_decode_attention.cpp) and the [cuda] ones
// (test_cuda_decode_attention.cpp): the codecs compared (every preset, plus single-plugin codecs for formats no
// preset uses), caches built from a synthetic layer with a prefill and decode steps, and the comparison of an
// output [batch, q_heads, D] with the reference and with dequantize-then-attend within the named tolerance
// (attention/decode_attention_tolerance.h).
#pragma once

#include <cmath>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/attention/attend.h"
#include "vidkv/attention/decode_attention.h"
#include "vidkv/attention/decode_attention_reference.h"
#include "vidkv/attention/decode_attention_tolerance.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/params.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/experiments/src/yaml_config.h"
#include "vidkv/traces/synthetic_trace.h"

namespace vidkv::test {

struct AttentionCodec {
  std::string name;
  ConfigNode key, value;
  LifecycleParams lifecycle;
};

// The paper lifecycle (algorithms.md section 5) with groups of 32 and a residual window of 48: a prefill of a multiple
// of 32 tokens quantizes every token, as does every 48th decode token after it (the flushes).
inline LifecycleParams paper_lifecycle() {
  LifecycleParams paper;
  paper.type = LifecycleType::paper;
  paper.group = 32;
  paper.residual = 48;
  return paper;
}

// Every preset, then codecs for the formats no preset reads: 4-bit per-token keys in release words with fp32
// metadata, sign keys without FFT (symmetric), ternary scaled values in slots2, mixed_channel with head scope,
// plain sign fft complex keys, mixed_token values with token-axis children.
inline std::vector<AttentionCodec> attention_codecs() {
  std::vector<AttentionCodec> out;
  for (const auto& p : list_presets()) {
    const ConfigNode doc = load_preset(p.name, ConfigNode::scalar(p.name));
    out.push_back({"preset " + p.name, doc.at("codec").at("key"), doc.at("codec").at("value"),
                   parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle")});
  }
  const LifecycleParams paper = paper_lifecycle();
  out.push_back({"uniform 4-bit per-token keys (release, fp32), uniform 4-bit per-channel values",
                 quantizer_block("uniform", {{"bits", "4"}, {"axis", "token"}, {"layout", "release"}, {"scale_dtype", "fp32"}, {"group", "16"}}),
                 quantizer_block("uniform", {{"bits", "4"}, {"axis", "channel"}, {"group", "20"}}), paper});
  out.push_back({"sign keys (fft off, symmetric), ternary scaled slots2 per-token values",
                 quantizer_block("sign", {{"reconstruction", "symmetric"}, {"group", "24"}}),
                 quantizer_block("ternary", {{"reconstruction", "scaled"}, {"packing", "slots2"}, {"axis", "token"}}), paper});
  ConfigNode mixed_head = quantizer_block("mixed_channel");
  ConfigNode selector = ConfigNode::map({"test", 1, 1});
  for (const auto& [k, v] : KeyValues{{"type", "range"}, {"fraction", "0.25"}, {"scope", "head"}})
    selector.set(k, ConfigNode::scalar(v, {"test", 1, 1}));
  mixed_head.set("selector", selector);
  out.push_back({"mixed_channel scope head (uniform 2-bit + sign fft real), ternary values", mixed_head,
                 quantizer_block("ternary", {}), paper});
  // Plain sign fft complex keys (2 D components, no channel split); mixed_token values (random protector) with
  // token-axis children: 4-bit uniform in groups of 16 channels for the protected tokens, ternary for the rest.
  ConfigNode token_mixed = quantizer_block("mixed_token");
  token_mixed.set("protected", quantizer_block("uniform", {{"bits", "4"}, {"axis", "token"}, {"group", "16"}}));
  token_mixed.set("rest", quantizer_block("ternary", {{"axis", "token"}}));
  out.push_back({"sign fft complex keys, mixed_token values (token-axis children)",
                 quantizer_block("sign", {{"fft", "complex"}}), token_mixed, paper});
  // kivi-2's quantizers in uniform's fragment layout (group_format.h) under KIVI's lifecycle with a shorter window:
  // key blocks of whole 32-token tiles, value blocks with a dense tail (the prefill's N - R tokens), then decode-time
  // value blocks merged up to 31 tokens (all tail). Read only at a multiple of 64 channels (decode_attention_supports).
  LifecycleParams kivi;
  kivi.type = LifecycleType::kivi;
  kivi.group = 32;
  kivi.residual = 64;
  out.push_back({"uniform 2-bit fragment layout, per-channel keys and per-token values (kivi lifecycle)",
                 quantizer_block("uniform", {{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}}),
                 quantizer_block("uniform", {{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}}), kivi});
  // The same with key groups of 64 tokens (a fragment tile is half a group) and one value group per token (128
  // channels: one scale and min per token, so the values' metadata of a tile starts at an odd half-word for odd
  // rows), and with value groups of 16 channels (8 groups per token at head_dim 128: the kernel's largest metadata area).
  LifecycleParams kivi64 = kivi;
  kivi64.group = 64;
  out.push_back({"uniform 2-bit fragment layout, key groups of 64, one value group per token (kivi lifecycle)",
                 quantizer_block("uniform", {{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}, {"group", "64"}}),
                 quantizer_block("uniform", {{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}, {"group", "128"}}), kivi64});
  out.push_back({"uniform 2-bit fragment layout, value groups of 16 channels (kivi lifecycle)",
                 quantizer_block("uniform", {{"bits", "2"}, {"axis", "channel"}, {"layout", "fragment"}}),
                 quantizer_block("uniform", {{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}, {"group", "16"}}), kivi});
  return out;
}

// A preset's codec (its plugins from the tests' registry of `implementation`) and lifecycle.
struct PresetCodec {
  KvCodec codec;
  LifecycleParams lifecycle;
};
inline PresetCodec preset_codec(const std::string& name, CpuImplementation implementation = CpuImplementation::optimized) {
  const ConfigNode doc = load_preset(name, ConfigNode::scalar(name));
  const PluginRegistry& reg = test::builtin_registry(implementation);
  return {KvCodec(reg.make_quantizer(doc.at("codec").at("key")), reg.make_quantizer(doc.at("codec").at("value"))),
          parse_params<LifecycleParams>(doc.at("lifecycle"), {}, "lifecycle")};
}

// [heads, T, D] keys and values of a synthetic layer (outlier channels, fp16-rounded), T tokens.
struct LayerInput {
  std::vector<float> key, value;
  std::int64_t heads, tokens, channels;
};
inline LayerInput synthetic_input(int heads, std::int64_t tokens, int channels, std::uint64_t seed) {
  SyntheticTraceSpec spec;
  spec.layers = 1;
  spec.kv_heads = heads;
  spec.tokens = tokens;
  spec.head_dim = channels;
  spec.frames = 2;
  spec.seed = seed;
  const SyntheticTrace trace(spec);
  LayerData d = trace.layer(0);
  return {std::move(d.key), std::move(d.value), heads, tokens, channels};
}

// Tokens [from, to) of x, one of `in`'s [heads, T, D] sides, as [heads, to - from, D].
inline std::vector<float> token_rows(const LayerInput& in, const std::vector<float>& x, std::int64_t from, std::int64_t to) {
  std::vector<float> out;
  for (std::int64_t h = 0; h < in.heads; ++h)
    out.insert(out.end(), x.begin() + (h * in.tokens + from) * in.channels, x.begin() + (h * in.tokens + to) * in.channels);
  return out;
}

// Appends tokens [from, to) of `in` to `cache` in one call (host rows, uploaded on a cuda cache).
inline void append_tokens(LayerCache& cache, const LayerInput& in, std::int64_t from, std::int64_t to) {
  const std::vector<float> k = token_rows(in, in.key, from, to), v = token_rows(in, in.value, from, to);
  cache.append(k.data(), v.data(), to - from);
}

// A cache holding `in`: the first `prefill` tokens at once, then one decode step per token. exact: residual keeps
// only the residual window's exact inputs (the live hook's cache), all every token's (trace replay).
inline std::unique_ptr<LayerCache> filled_cache(const KvCodec& codec, const LifecycleParams& lc, const LayerInput& in,
                                                std::int64_t prefill, const Execution& ex,
                                                ExactTokens exact = ExactTokens::all) {
  auto cache = std::make_unique<LayerCache>(codec, lc, in.heads, in.channels, TokenContext{}, DType::f16, ex, exact);
  for (std::int64_t b = 0; b < in.tokens;) {
    const std::int64_t e = b == 0 ? std::min(prefill, in.tokens) : b + 1;
    append_tokens(*cache, in, b, e);
    b = e;
  }
  return cache;
}

// fn(ac, codec) for every codec of attention_codecs() that decode attention reads in place at `channels` (its
// plugins from the reference registry). Returns how many were visited.
template <class Fn>
int for_each_codec_read(std::int64_t channels, Fn&& fn) {
  int read = 0;
  for (const AttentionCodec& ac : attention_codecs()) {
    const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
    const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
    if (!decode_attention_supports(codec.key(), channels, KvSide::key) || !decode_attention_supports(codec.value(), channels, KvSide::value)) continue;
    fn(ac, codec);
    ++read;
  }
  return read;
}

// fn(ac, codec, cache) for every codec of attention_codecs() that decode attention reads in place (reference
// plugins), with a cpu cache of `in` filled by filled_cache(..., prefill). Returns how many were visited.
template <class Fn>
int for_each_read_codec(const LayerInput& in, std::int64_t prefill, Fn&& fn) {
  return for_each_codec_read(in.channels, [&](const AttentionCodec& ac, const KvCodec& codec) {
    const auto cache = filled_cache(codec, ac.lifecycle, in, prefill, Execution::cpu());
    fn(ac, codec, *cache);
  });
}

// fn(v, width, tokens) for every child view of KV head `head` (v: the child's view, width: its part indices (channels
// or FFT components), tokens: the child's rows, the block's tokens except under mixed_token) of every block of both sides of `cache`, whose codec is `codec`, for `channels` channels.
template <class Fn>
void for_each_child_view(const KvCodec& codec, const LayerCache& cache, std::int64_t channels, std::int64_t head, Fn&& fn) {
  namespace af = attention_format;
  for (int side = 0; side < 2; ++side) {
    const LayerCache::SideRef s = side == 0 ? cache.key_side() : cache.value_side();
    const af::SideFormat f = side_format(side == 0 ? codec.key() : codec.value(), channels, side == 0 ? KvSide::key : KvSide::value);
    for (const auto& blk : s.blocks) {
      const std::int64_t n = blk.end - blk.begin;
      // mixed_token: the children hold the protected tokens (counted from the mask) and the others.
      const std::int64_t kept = f.token_mixed ? af::mask_count(blk.bytes, 0, n) : 0;
      const af::PartRef part = af::part_of(f, blk.bytes, cache.heads(), n, channels, head, kept);
      for (int which = 0; which < (f.mixed || f.token_mixed ? 2 : 1); ++which) {
        const std::int64_t rows = f.token_mixed ? (which == 0 ? kept : n - kept) : n;
        if (rows > 0) fn(which == 0 ? part.first : part.second, which == 0 ? part.first_n : part.second_n, rows);
      }
    }
  }
}

// Queries [batch, q_heads, D], N(0, 1) times `scale` (larger: sharper softmax).
inline std::vector<float> random_queries(std::int64_t batch, std::int64_t q_heads, std::int64_t channels, float scale,
                                         std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n(0.0f, 1.0f);
  std::vector<float> q(static_cast<std::size_t>(batch * q_heads * channels));
  for (auto& x : q) x = scale * n(rng);
  return q;
}

// Checks out [batch, q_heads, D] (fp32; [batch, query_tokens, q_heads, D] with several query tokens) against the
// reference within the named tolerance, and the reference against dequantize-then-attend (materialize() + attend();
// both double over the same fp32 K/V: 1e-12 relative). Query token j of a sequence of T tokens attends to its first
// T - query_tokens + 1 + j tokens (the causal limit, decode_attention.h): the dequantize-then-attend side takes them
// as the first rows of the materialised K / V, not through the reference's limit. arithmetic: the kernels'
// (decode_attention_tolerance.h; DecodeAttention::fragment() / tensor_cores()). Returns the largest
// |out - reference| / tolerance seen.
inline double check_against_reference(const std::vector<const LayerCache*>& caches, const std::vector<float>& queries,
                                      const std::vector<float>& out, std::int64_t qpk,
                                      decode_attention_tolerance::Arithmetic arithmetic =
                                          decode_attention_tolerance::Arithmetic::cuda_cores,
                                      std::int64_t query_tokens = 1) {
  const std::int64_t heads = caches[0]->heads(), d = caches[0]->channels();
  double worst = 0.0;
  for (std::size_t b = 0; b < caches.size(); ++b) {
    const LayerCache& cache = *caches[b];
    std::vector<float> mk, mv;
    cache.materialize(mk, mv);
    const std::int64_t T = cache.tokens();
    for (std::int64_t h = 0; h < heads; ++h) {
      std::vector<double> k, v;
      decoded_head(cache, h, k, v);
      std::vector<double> dk(mk.begin() + h * T * d, mk.begin() + (h + 1) * T * d), dv(mv.begin() + h * T * d, mv.begin() + (h + 1) * T * d);
      for (std::int64_t j = 0; j < query_tokens; ++j) {
        const std::int64_t row = static_cast<std::int64_t>(b) * query_tokens + j, limit = T - query_tokens + 1 + j;
        const float* qh = queries.data() + (row * heads + h) * qpk * d;  // the KV head's rows
        const std::vector<double> want = reference_decode_attention(cache, h, qh, qpk, limit);
        std::vector<double> qd(qh, qh + qpk * d);
        const std::vector<double> deq = attend(qd.data(), qpk, dk.data(), dv.data(), limit, d);
        for (std::int64_t r = 0; r < qpk; ++r) {
          const float* q = qh + r * d;
          const double extra = decode_attention_tolerance::fft_score_error(cache, h, q, arithmetic);
          // The fragment kernel's vidkv instance rounds the transformed query and the part elements (empty otherwise).
          const auto terms = arithmetic == decode_attention_tolerance::Arithmetic::fragment
                                 ? decode_attention_tolerance::fragment_score_terms(cache, h, q)
                                 : decode_attention_tolerance::FragmentScoreTerms{};
          const std::vector<double> tol = decode_attention_tolerance::output_tolerance(q, k, v, limit, d, extra, arithmetic, &terms);
          for (std::int64_t c = 0; c < d; ++c) {
            INFO("sequence " << b << " (" << T << " tokens), query token " << j << " (attends to " << limit << "), KV head "
                             << h << ", query row " << r << ", channel " << c);
            const std::size_t i = static_cast<std::size_t>(r * d + c);
            const double got = out[static_cast<std::size_t>(((row * heads + h) * qpk + r) * d + c)];
            // The reference decodes the blocks on the host; deq is the cache's own materialize(). Equal up to
            // summation order, except FFT keys on cuda (cuFFT / fused tiles vs the host FFT): within the derived
            // FFT score error, i.e. the output tolerance.
            REQUIRE(std::fabs(want[i] - deq[i]) <=
                    (extra > 0 ? tol[static_cast<std::size_t>(c)] : 1e-12 * (std::fabs(want[i]) + 1.0)));
            REQUIRE(std::fabs(got - want[i]) <= tol[static_cast<std::size_t>(c)]);
            worst = std::max(worst, std::fabs(got - want[i]) / tol[static_cast<std::size_t>(c)]);
          }
        }
      }
    }
  }
  return worst;
}

}  // namespace vidkv::test
