// mixed_channel and mixed_token on CUDA: the host/device split helpers against the CPU gather ([cpu]); encode
// bytes and decoded values on the device against the CPU reference for fp32, fp16 and bf16 blocks ([cuda]), with
// children that have exact CUDA tiers (uniform), every registered selector and protector, and every preset's
// composite codec whose children run exactly on CUDA (presets with an FFT child are compared within the FFT
// tolerance by the registry-wide test).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "cuda_test_support.h"
#include "fixture_quantizers.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/channel_selector.h"
#include "vidkv/core/error.h"
#include "vidkv/core/plugin_registry.h"
#include "vidkv/experiments/src/presets.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_cuda.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_format.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_split.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_format.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_split.h"

using namespace vidkv;
using vidkv::test::map;
using vidkv::test::scalar;

namespace {

// A trace of 200 tokens (8 system, 160 visual, 12 query text, 20 generated) with input embeddings, recorded query
// states (2 query heads) and full-precision keys (1 KV head), head_dim 8, so that every protector can run.
struct Trace {
  static constexpr std::int64_t kTokens = 200, kDim = 8;
  TraceTokens tokens;
  LayerQueries queries;
  std::vector<float> keys;
  Trace() {
    tokens = TraceTokens::uniform(kTokens);
    for (std::int64_t t = 0; t < kTokens; ++t)
      tokens.modality[static_cast<std::size_t>(t)] =
          t < 8 ? Modality::system_text : t < 168 ? Modality::visual : t < 180 ? Modality::query_text : Modality::generated;
    std::mt19937_64 rng(7);
    std::uniform_int_distribution<int> small(-2, 2);
    std::normal_distribution<float> gauss(0.0f, 1.0f);
    tokens.hidden = 8;
    tokens.embeddings.resize(static_cast<std::size_t>(kTokens * tokens.hidden));
    for (auto& e : tokens.embeddings) e = static_cast<float>(small(rng));
    queries.heads = 2;
    queries.dim = kDim;
    for (std::int32_t t = 168; t < 180; ++t) queries.token_index.push_back(t);
    queries.count = static_cast<std::int64_t>(queries.token_index.size());
    queries.data.resize(static_cast<std::size_t>(queries.heads * queries.count * kDim));
    for (auto& q : queries.data) q = gauss(rng);
    keys.resize(static_cast<std::size_t>(kTokens * kDim));
    for (auto& k : keys) k = gauss(rng);
  }
  TokenContext context(std::int64_t begin, std::int64_t end) const {
    TokenContext ctx;
    ctx.layer = 2;
    ctx.tokens = &tokens;
    ctx.queries = &queries;
    ctx.keys = LayerKeys{keys.data(), 1, kTokens, kDim};
    ctx.seed = 99;
    return ctx.range(begin, end);
  }
};

// Gaussian values with a few large channels (so selectors have something to find) and ties.
std::vector<float> block_values(const BlockShape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(s.elements()));
  for (std::size_t i = 0; i < x.size(); ++i) {
    const auto c = static_cast<std::int64_t>(i) % s.channels;
    x[i] = g(rng) * (c % 5 == 1 ? 8.0f : 1.0f);
    if (i % 17 == 3) x[i] = 0.5f;  // ties
  }
  return x;
}

// Encodes on the CPU (fp32 values of the dtype) and on CUDA (the dtype's elements on the device) and compares the
// bytes; decodes the CPU bytes on both and compares the outputs in the dtype.
void compare_on_devices(const Quantizer& q, const BlockShape& s, const TokenContext& ctx, const std::vector<float>& x) {
  const std::size_t bytes = q.layout(s, ctx).bytes();
  for (DType t : test::all_dtypes()) {
    INFO(q.plugin_name() << " " << s.str() << " " << dtype_name(t) << " tier " << q.tier(Device::cuda, s).name);
    const std::vector<std::uint8_t> in = test::to_dtype_bytes(x, t);
    const std::vector<float> values = test::from_dtype_bytes(in, t);
    std::vector<std::uint8_t> cpu(bytes);
    q.encode(values.data(), s, ctx, cpu.data());

    const DeviceBuffer d_in = test::upload(in);
    const DeviceBuffer d_out = test::poisoned(bytes);
    q.encode_view(test::view_of(d_in.data(), t, Device::cuda, s), ctx, d_out.as<std::uint8_t>(), Execution::cuda());
    synchronize();
    const std::vector<std::uint8_t> gpu = test::download(d_out.data(), bytes);
    CHECK(test::first_difference(cpu, gpu) == -1);

    std::vector<float> decoded(static_cast<std::size_t>(s.elements()));
    q.decode(cpu.data(), s, ctx, decoded.data());
    const std::vector<std::uint8_t> expected = test::to_dtype_bytes(decoded, t);
    const DeviceBuffer d_bytes = test::upload(cpu);
    const DeviceBuffer d_dec = test::poisoned(expected.size());
    q.decode_view(d_bytes.as<std::uint8_t>(), ctx, test::view_of(d_dec.data(), t, Device::cuda, s), Execution::cuda());
    synchronize();
    CHECK(test::first_difference(expected, test::download(d_dec.data(), expected.size())) == -1);
  }
}

const PluginRegistry& reference() { return test::builtin_registry(CpuImplementation::reference); }

ConfigNode uniform(const std::string& bits, const std::string& group, const std::string& axis, const std::string& layout = "dense") {
  return map({{"type", scalar("uniform")}, {"bits", scalar(bits)}, {"group", scalar(group)}, {"axis", scalar(axis)},
              {"layout", scalar(layout)}});
}

}  // namespace

TEST_CASE("mixed_channel_format: channel_slot gives the CPU gather's positions", "[cpu][mixed_channel]") {
  // Masks of 13 channels (not a byte multiple, so mask 1 starts mid-byte): mask 0 = {0, 3, 4, 12}, mask 1 = {1, 2}.
  const std::size_t d = 13;
  const std::vector<std::vector<std::size_t>> high = {{0, 3, 4, 12}, {1, 2}};
  std::vector<std::uint8_t> section(mixed_channel_format::mask_bytes(2, d), 0);
  for (std::size_t m = 0; m < 2; ++m)
    for (std::size_t c : high[m]) mixed_channel_format::mask_set(section.data(), d, m, c);
  for (std::size_t m = 0; m < 2; ++m) {
    std::int32_t next_high = 0, next_low = 0;
    for (std::size_t c = 0; c < d; ++c) {
      const bool is_high = std::find(high[m].begin(), high[m].end(), c) != high[m].end();
      const std::int32_t expected = is_high ? next_high++ : -1 - next_low++;
      CHECK(mixed_channel_format::channel_slot(section.data(), d, m, c) == expected);
    }
    CHECK(mixed_channel_format::mask_rank(section.data(), d, m, d) == high[m].size());
  }
  // mask 0's slots by hand: c 0 -> 0, 1 -> -1, 2 -> -2, 3 -> 1, 4 -> 2, 5 -> -3, ..., 12 -> 3.
  CHECK(mixed_channel_format::channel_slot(section.data(), d, 0, 5) == -3);
  CHECK(mixed_channel_format::channel_slot(section.data(), d, 0, 12) == 3);
  for (unsigned v = 0; v < 256; ++v) CHECK(mixed_channel_format::popcount8(v) == static_cast<unsigned>(__builtin_popcount(v)));
}

TEST_CASE("mixed_token_format: token_slots gives the CPU gather's positions", "[cpu][mixed_token]") {
  // 11 tokens, protected {1, 4, 5, 10}: slots 1 -> 0, 4 -> 1, 5 -> 2, 10 -> 3; others -1 - their rank: 0 -> -1,
  // 2 -> -2, 3 -> -3, 6 -> -4, 7 -> -5, 8 -> -6, 9 -> -7.
  std::vector<std::uint8_t> section(mixed_token_format::mask_bytes(11), 0);
  for (std::size_t t : {1, 4, 5, 10}) mixed_token_format::mask_set(section.data(), t);
  std::vector<std::int32_t> slots(11);
  CHECK(mixed_token_format::token_slots(section.data(), 11, slots.data()) == 4);
  CHECK(slots == std::vector<std::int32_t>{-1, 0, -2, -3, 1, 2, -4, -5, -6, -7, 3});
}

TEST_CASE("composite tiers combine the children's and supports() names the child without CUDA", "[cpu][mixed_channel]") {
  // half_step is a test fixture with no CUDA implementation (fixture_quantizers.h).
  static const PluginRegistry fixtures = test::fixture_registry();
  auto q = fixtures.make_quantizer(map({{"type", scalar("mixed_channel")}, {"high", uniform("2", "32", "channel")},
                                        {"low", map({{"type", scalar("half_step")}})}}));
  const BlockShape s{2, 64, 128};
  const KernelTier cpu = q->tier(Device::cpu, s);
  CHECK(cpu.name.rfind("mixed_channel(uniform:", 0) == 0);
  CHECK(cpu.name.find(", half_step:cpu)") != std::string::npos);
  CHECK(cpu.exact);
  std::string why;
  CHECK_FALSE(q->supports(Device::cuda, s, &why));
#ifdef VIDKV_WITH_CUDA
  CHECK(why.rfind("low (", 0) == 0);  // "low (n of D channels): ..."
  CHECK(why.find("half_step") != std::string::npos);
#endif
  // fraction 1: every channel is high, the low child does not run and is not named.
  auto all_high = fixtures.make_quantizer(map({{"type", scalar("mixed_channel")},
                                               {"selector", map({{"type", scalar("range")}, {"fraction", scalar("1")}})},
                                               {"high", uniform("2", "32", "channel")},
                                               {"low", map({{"type", scalar("half_step")}})}}));
  CHECK(all_high->tier(Device::cpu, s).name.find("half_step") == std::string::npos);
#ifdef VIDKV_WITH_CUDA
  CHECK(all_high->supports(Device::cuda, s));
#endif
  auto mt = fixtures.make_quantizer(map({{"type", scalar("mixed_token")}, {"protected", uniform("2", "32", "channel")},
                                         {"rest", map({{"type", scalar("half_step")}})}}));
  CHECK(mt->tier(Device::cpu, s).name.find("mixed_token(uniform:") == 0);
  CHECK_FALSE(mt->supports(Device::cuda, s, &why));
#ifdef VIDKV_WITH_CUDA
  CHECK(why.rfind("rest: ", 0) == 0);
#endif
}

TEST_CASE("mixed_channel on CUDA: bytes and decode equal the CPU's for every selector, scope and dtype",
          "[cuda][mixed_channel]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const std::vector<BlockShape> shapes = {{1, 64, 128}, {2, 100, 128}, {3, 77, 9}, {4, 96, 24}, {2, 33, 7}};
  const std::vector<std::pair<ConfigNode, ConfigNode>> children = {
      {uniform("2", "32", "channel"), uniform("1", "32", "channel")},
      {uniform("2", "32", "channel", "release"), uniform("3", "16", "token")},
  };
  for (const std::string& selector : reference().names(PluginFamily::channel_selector)) {
    for (const std::string scope : {"layer", "head"}) {
      for (const std::string fraction : {"0.5", "0.25", "0", "1"}) {
        for (const auto& [high, low] : children) {
          auto q = reference().make_quantizer(map(
              {{"type", scalar("mixed_channel")},
               {"selector", map({{"type", scalar(selector)}, {"scope", scalar(scope)}, {"fraction", scalar(fraction)}})},
               {"high", high},
               {"low", low}}));
          for (const BlockShape& s : shapes) {
            INFO("selector " << selector << " scope " << scope << " fraction " << fraction);
            std::string why;
            REQUIRE(q->supports(Device::cuda, s, &why));
            REQUIRE(q->tier(Device::cuda, s).exact);
            compare_on_devices(*q, s, TokenContext{}, block_values(s, 40 + static_cast<std::uint64_t>(s.channels)));
          }
        }
      }
    }
  }
}

TEST_CASE("mixed_token on CUDA: bytes and decode equal the CPU's for every protector and dtype", "[cuda][mixed_token]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const Trace trace;
  // Nested: the rest is itself a mixed_token (its children see ctx.subset of the outer rest's tokens) whose rest
  // is a mixed_channel.
  const ConfigNode nested = map(
      {{"type", scalar("mixed_token")},
       {"protector", map({{"type", scalar("random")}, {"fraction", scalar("0.5")}, {"candidates", scalar("all")}})},
       {"protected", uniform("4", "16", "channel")},
       {"rest", map({{"type", scalar("mixed_channel")}, {"high", uniform("2", "32", "channel")},
                     {"low", uniform("1", "32", "token")}})}});
  const std::vector<std::pair<ConfigNode, ConfigNode>> children = {
      {uniform("2", "32", "channel"), uniform("1", "32", "channel")},
      {uniform("4", "32", "token"), uniform("2", "16", "channel", "release")},
      {uniform("2", "32", "channel"), nested},
  };
  for (const std::string& protector : reference().names(PluginFamily::token_protector)) {
    ConfigNode pblock = map({{"type", scalar(protector)}});
    if (!reference().find(PluginFamily::token_protector, protector)->params.empty()) pblock.set("fraction", scalar("0.3"));
    for (const auto& [kept, rest] : children) {
      auto q = reference().make_quantizer(
          map({{"type", scalar("mixed_token")}, {"protector", pblock}, {"protected", kept}, {"rest", rest}}));
      for (const auto& [begin, end, heads, channels] :
           std::vector<std::tuple<std::int64_t, std::int64_t, std::int64_t, std::int64_t>>{
               {0, 200, 2, 128}, {8, 168, 4, 24}, {30, 97, 1, 9}, {150, 190, 3, 7}}) {
        const BlockShape s{heads, end - begin, channels};
        INFO("protector " << protector << " tokens [" << begin << ", " << end << ")");
        REQUIRE(q->supports(Device::cuda, s));
        compare_on_devices(*q, s, trace.context(begin, end), block_values(s, 70 + static_cast<std::uint64_t>(begin)));
      }
      // A bare context (every token system text) over 9000 tokens: more than one pass of the device slot scan
      // (8192 tokens per pass); candidates: all, so random and the budgets protect tokens across the passes.
      if (protector == "random") {
        auto big = reference().make_quantizer(map(
            {{"type", scalar("mixed_token")},
             {"protector", map({{"type", scalar("random")}, {"fraction", scalar("0.3")}, {"candidates", scalar("all")}})},
             {"protected", kept},
             {"rest", rest}}));
        const BlockShape s{1, 9000, 16};
        compare_on_devices(*big, s, TokenContext{}, block_values(s, 3));
        // Every token protected (n == T): the protected child takes the block as it is.
        auto all = reference().make_quantizer(map(
            {{"type", scalar("mixed_token")},
             {"protector", map({{"type", scalar("random")}, {"fraction", scalar("1")}, {"candidates", scalar("all")}})},
             {"protected", kept},
             {"rest", rest}}));
        const BlockShape s2{2, 70, 24};
        compare_on_devices(*all, s2, TokenContext{}, block_values(s2, 4));
      }
    }
  }
}

TEST_CASE("every preset's composite codec with exact CUDA children encodes and decodes as on the CPU",
          "[cuda][mixed_channel][mixed_token]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const Trace trace;
  int compared = 0;
  for (const auto& p : list_presets()) {
    const ConfigNode doc = load_preset(p.name, ConfigNode::scalar(p.name));
    for (const char* side : {"key", "value"}) {
      const ConfigNode& block = doc.at("codec").at(side);
      const std::string name = block.at("type").text();
      if (name != "mixed_channel" && name != "mixed_token") continue;
      auto q = reference().make_quantizer(block);
      for (const BlockShape& s : {BlockShape{4, 160, 128}, BlockShape{2, 70, 128}}) {
        std::string why;
        if (!q->supports(Device::cuda, s, &why)) {
          WARN(p.name << " " << side << " not compared on CUDA: " << why);
          continue;
        }
        if (!q->tier(Device::cuda, s).exact) {
          WARN(p.name << " " << side << " has an FFT child (" << q->tier(Device::cuda, s).name
                      << "): compared within the FFT tolerance by the registry-wide test");
          continue;
        }
        INFO("preset " << p.name << " " << side);
        compare_on_devices(*q, s, trace.context(8, 8 + s.tokens), block_values(s, 5));
        ++compared;
      }
    }
  }
  WARN(compared << " preset composite codecs compared bit for bit");
}

namespace {

// The CPU gather of mixed_channel.cpp, written out: rows of the high channels and rows of the others.
void reference_split(const std::vector<std::uint16_t>& in, std::int64_t rows, std::int64_t d,
                     const std::vector<std::vector<std::uint8_t>>& masks, std::int64_t rows_per_mask,
                     std::vector<std::uint16_t>* hi, std::vector<std::uint16_t>* lo) {
  for (std::int64_t r = 0; r < rows; ++r)
    for (std::int64_t c = 0; c < d; ++c)
      (masks[static_cast<std::size_t>(r / rows_per_mask)][static_cast<std::size_t>(c)] ? hi : lo)
          ->push_back(in[static_cast<std::size_t>(r * d + c)]);
}

}  // namespace

TEST_CASE("mixed_channel_split: the tiled gather and scatter, replayed tile by tile, are the CPU's split",
          "[cpu][mixed_channel]") {
  // What gather_tiles / scatter_tiles do per block, in a loop: tables from the mask section (fill_tables), the
  // high and low parts of each tile written in runs of 8 elements plus a tail through PartWalk, and the scatter
  // through the slot table. Scope layer (1 mask) and scope head (3 masks), tiles of 8 and 24 rows, a last partial
  // tile, k from 0 to D.
  std::mt19937_64 rng(9);
  for (const std::int64_t d : {16, 24, 128}) {
    for (const std::int64_t masks : {1, 3}) {
      for (const std::int64_t k : {std::int64_t{0}, std::int64_t{5}, d / 2, d}) {
        const std::int64_t tokens = 37, rows = 3 * tokens, rows_per_mask = masks == 1 ? rows : tokens;
        std::vector<std::vector<std::uint8_t>> mask_lists(static_cast<std::size_t>(masks), std::vector<std::uint8_t>(static_cast<std::size_t>(d), 0));
        std::vector<std::uint8_t> section(mixed_channel_format::mask_bytes(static_cast<std::size_t>(masks), static_cast<std::size_t>(d)), 0);
        for (std::int64_t m = 0; m < masks; ++m) {
          std::vector<std::int64_t> order(static_cast<std::size_t>(d));
          for (std::int64_t c = 0; c < d; ++c) order[static_cast<std::size_t>(c)] = c;
          std::shuffle(order.begin(), order.end(), rng);
          for (std::int64_t i = 0; i < k; ++i) {
            mask_lists[static_cast<std::size_t>(m)][static_cast<std::size_t>(order[static_cast<std::size_t>(i)])] = 1;
            mixed_channel_format::mask_set(section.data(), static_cast<std::size_t>(d), static_cast<std::size_t>(m),
                                           static_cast<std::size_t>(order[static_cast<std::size_t>(i)]));
          }
        }
        std::vector<std::uint16_t> in(static_cast<std::size_t>(rows * d));
        for (auto& v : in) v = static_cast<std::uint16_t>(rng());
        std::vector<std::uint16_t> hi_ref, lo_ref;
        reference_split(in, rows, d, mask_lists, rows_per_mask, &hi_ref, &lo_ref);

        std::vector<std::int32_t> slot(static_cast<std::size_t>(masks * d)), hs(static_cast<std::size_t>(masks * k) + 1),
            ls(static_cast<std::size_t>(masks * (d - k)) + 1);
        for (std::int64_t m = 0; m < masks; ++m)
          for (std::int64_t c = 0; c < d; ++c)
            REQUIRE(mixed_channel_split::fill_tables(section.data(), d, k, m, c, slot.data(), hs.data(), ls.data()));

        for (const std::int64_t tile_rows : {8, 24}) {
          INFO("D " << d << " masks " << masks << " k " << k << " tile rows " << tile_rows);
          std::vector<std::uint16_t> hi(hi_ref.size(), 0xABAB), lo(lo_ref.size(), 0xABAB), out(in.size(), 0xABAB);
          for (std::int64_t r0 = 0; r0 < rows; r0 += tile_rows) {
            const std::int64_t nr = std::min(tile_rows, rows - r0);
            const std::uint16_t* tile = in.data() + r0 * d;
            for (int side = 0; side < 2; ++side) {
              const std::int64_t width = side == 0 ? k : d - k;
              if (width == 0) continue;
              std::uint16_t* dst = (side == 0 ? hi.data() : lo.data()) + r0 * width;
              const std::int32_t* source = side == 0 ? hs.data() : ls.data();
              const std::int64_t count = nr * width, vectors = count / 8;
              for (std::int64_t q = 0; q < vectors; ++q) {
                mixed_channel_split::PartWalk w(d, width, masks, rows_per_mask, r0, source, q * 8);
                for (int j = 0; j < 8; ++j, w.next()) dst[q * 8 + j] = tile[w.tile_index()];
              }
              for (std::int64_t e = vectors * 8; e < count; ++e)
                dst[e] = tile[mixed_channel_split::PartWalk(d, width, masks, rows_per_mask, r0, source, e).tile_index()];
            }
            // scatter of the same tile from the reference parts
            for (std::int64_t e = 0; e < nr * d; ++e) {
              const std::int64_t row = e / d, c = e % d;
              const std::int32_t s = slot[static_cast<std::size_t>(mixed_channel_split::mask_of_row(r0 + row, masks, rows_per_mask) * d + c)];
              out[static_cast<std::size_t>((r0 + row) * d + c)] =
                  s >= 0 ? hi_ref[static_cast<std::size_t>((r0 + row) * k + s)] : lo_ref[static_cast<std::size_t>((r0 + row) * (d - k) + (-1 - s))];
            }
          }
          CHECK(hi == hi_ref);
          CHECK(lo == lo_ref);
          CHECK(out == in);
        }
      }
    }
  }
}

TEST_CASE("mixed_channel_split: a mask without k channels set is refused by fill_tables", "[cpu][mixed_channel]") {
  std::vector<std::uint8_t> section(2, 0);
  mixed_channel_format::mask_set(section.data(), 16, 0, 3);
  std::vector<std::int32_t> slot(16), hs(2), ls(16);
  CHECK_FALSE(mixed_channel_split::fill_tables(section.data(), 16, 2, 0, 5, slot.data(), hs.data(), ls.data()));
  CHECK(slot[5] == mixed_channel_split::kInvalidSlot);
  // Every source entry of the refused mask is still written, in range: position c of the split "first k high"
  // (channel 1 -> high_source[1], channel 5 -> low_source[5 - 2]), so a gather by it reads only its own row.
  std::vector<std::int32_t> hs2(2, -7), ls2(14, -7);
  for (int c = 0; c < 16; ++c)
    CHECK_FALSE(mixed_channel_split::fill_tables(section.data(), 16, 2, 0, c, slot.data(), hs2.data(), ls2.data()));
  CHECK(hs2 == std::vector<std::int32_t>{0, 1});
  for (int i = 0; i < 14; ++i) CHECK(ls2[static_cast<std::size_t>(i)] == i + 2);
  CHECK(mixed_channel_split::fill_tables(section.data(), 16, 1, 0, 3, slot.data(), hs.data(), ls.data()));
  CHECK(slot[3] == 0);
  CHECK(hs[0] == 3);
}

TEST_CASE("mixed_channel_split: table_entry_from_words (the fused kernels' staged mask) gives table_entry's entries",
          "[cpu][mixed_channel]") {
  // Masks of 3 heads over D channels (D % 8 == 0, some not multiples of 32: the last word zero-padded), with k, k - 1
  // and k + 1 channels set (the last two invalid), copied as the kernels stage them: mask m's D / 8 bytes from byte
  // m * D / 8 into little-endian words. Hand check, D = 8, k = 2, mask 0b0010'0100 (channels 2, 5): channel 5 has
  // rank 1 -> slot 1; channel 3 -> -1 - (3 - 1) = -3.
  {
    const std::uint32_t words[1] = {0x24u};
    CHECK(mixed_channel_split::table_entry_from_words(words, 8, 2, 5).slot == 1);
    CHECK(mixed_channel_split::table_entry_from_words(words, 8, 2, 3).slot == -3);
    CHECK(mixed_channel_split::table_entry_from_words(words, 8, 3, 3).slot == mixed_channel_split::kInvalidSlot);
    CHECK(mixed_channel_split::table_entry_from_words(words, 8, 3, 3).moved == -1);  // fallback: 3 >= k, 3 - 3 = 0
  }
  std::mt19937_64 rng(4242);
  for (int d : {8, 16, 40, 64, 128, 200, 256}) {
    for (int k : {1, d / 2, d - 1}) {
      const int masks = 3;
      std::vector<std::uint8_t> section(mixed_channel_format::mask_bytes(masks, d), 0);
      for (int m = 0; m < masks; ++m) {
        const int set = k + (m == 1 ? -1 : m == 2 ? 1 : 0);
        std::vector<int> order(static_cast<std::size_t>(d));
        for (int c = 0; c < d; ++c) order[static_cast<std::size_t>(c)] = c;
        std::shuffle(order.begin(), order.end(), rng);
        for (int i = 0; i < set && i < d; ++i)
          mixed_channel_format::mask_set(section.data(), static_cast<std::size_t>(d), static_cast<std::size_t>(m),
                                         static_cast<std::size_t>(order[static_cast<std::size_t>(i)]));
      }
      for (int m = 0; m < masks; ++m) {
        std::vector<std::uint32_t> words(static_cast<std::size_t>((d + 31) / 32), 0u);
        for (int b = 0; b < d / 8; ++b)
          words[static_cast<std::size_t>(b / 4)] |= static_cast<std::uint32_t>(section[static_cast<std::size_t>(m * d / 8 + b)]) << (8 * (b % 4));
        for (int c = 0; c < d; ++c) {
          INFO("D " << d << " k " << k << " mask " << m << " channel " << c);
          const auto want = mixed_channel_split::table_entry(section.data(), d, k, m, c);
          const auto got = mixed_channel_split::table_entry_from_words(words.data(), d, k, c);
          CHECK(got.slot == want.slot);
          CHECK(got.moved == want.moved);
          CHECK(got.valid == want.valid);
        }
      }
    }
  }
}

TEST_CASE("mixed_token_split: RowWalk's increments give the rows' (head, token) and child rows", "[cpu][mixed_token]") {
  // 3 heads x 11 tokens, protected {1, 4, 5, 10} (n = 4): row (h, t) goes to kept row h * 4 + slot or rest row
  // h * 7 + (-1 - slot). Strides below, equal to and above the token count.
  std::vector<std::uint8_t> section(mixed_token_format::mask_bytes(11), 0);
  for (std::size_t t : {1, 4, 5, 10}) mixed_token_format::mask_set(section.data(), t);
  std::vector<std::int32_t> slots(11);
  mixed_token_format::token_slots(section.data(), 11, slots.data());
  for (const std::int64_t stride : {1, 3, 11, 12, 25}) {
    for (std::int64_t first = 0; first < std::min<std::int64_t>(stride, 33); ++first) {
      mixed_token_split::RowWalk w(11, first, stride);
      for (std::int64_t row = first; row < 33; row += stride, w.next()) {
        INFO("stride " << stride << " row " << row);
        REQUIRE(w.h == row / 11);
        REQUIRE(w.t == row % 11);
        bool kept = false;
        const std::int64_t child = w.child_row(slots.data(), 4, &kept);
        const std::int32_t slot = slots[static_cast<std::size_t>(row % 11)];
        CHECK(kept == (slot >= 0));
        CHECK(child == (slot >= 0 ? (row / 11) * 4 + slot : (row / 11) * 7 + (-1 - slot)));
      }
    }
  }
}

#ifdef VIDKV_WITH_CUDA  // calls mixed_channel.cu directly (absent from a build without CUDA)
TEST_CASE("mixed_channel gather on CUDA: a mask without k channels set moves its rows as the split 'first k high'",
          "[cuda][mixed_channel]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  // 2 masks (scope head) x 16 rows x D channels, k high. Mask 0 is valid (the last k channels high); mask 1 has k + 1
  // channels set (what NaN scores give: in_top_k passes every NaN channel). Elements are 16-bit words r * D + c (the
  // gather only moves them). Mask 0's rows: hi = channels D - k.., lo = channels 0..D - k - 1; mask 1's rows (the
  // fallback of fill_tables and gather_runs): hi = channels 0..k - 1, lo = channels k..D - 1. D = 128: the tiled
  // gather (its table scratch taken from the stream-ordered pool right after a freed buffer of 0xAB bytes of its size:
  // the unwritten source entries before the fix were such words); D = 20 (40-byte rows): the per-run gather.
  for (const auto& [D, k] : {std::pair<std::int64_t, std::int64_t>{128, 32}, {20, 4}}) {
    CAPTURE(D, k);
    const std::int64_t rows_per_mask = 16, masks = 2, rows = masks * rows_per_mask;
    const auto d = static_cast<std::size_t>(D);
    std::vector<std::uint8_t> section(mixed_channel_format::mask_bytes(2, d), 0);
    for (std::size_t c = d - static_cast<std::size_t>(k); c < d; ++c) mixed_channel_format::mask_set(section.data(), d, 0, c);
    for (std::size_t c = 0; c <= static_cast<std::size_t>(k); ++c) mixed_channel_format::mask_set(section.data(), d, 1, c);
    std::vector<std::uint8_t> in(static_cast<std::size_t>(rows * D) * 2);
    for (std::int64_t r = 0; r < rows; ++r)
      for (std::int64_t c = 0; c < D; ++c) {
        const auto w = static_cast<std::uint16_t>(r * D + c);
        std::memcpy(&in[static_cast<std::size_t>(r * D + c) * 2], &w, 2);
      }
    const DeviceBuffer d_section = test::upload(section), d_in = test::upload(in);
    const DeviceBuffer hi = test::poisoned(static_cast<std::size_t>(rows * k) * 2);
    const DeviceBuffer lo = test::poisoned(static_cast<std::size_t>(rows * (D - k)) * 2);
    { const DeviceBuffer stale = test::poisoned(static_cast<std::size_t>(masks * 2 * D) * 4); }  // freed: the tables' scratch next
    const mixed_channel_cuda::Split split{d_section.as<std::uint8_t>(), masks, rows_per_mask, D, k};
    mixed_channel_cuda::gather(split, d_in.data(), 2, hi.data(), lo.data(), nullptr);
    synchronize();
    const std::vector<std::uint8_t> h = test::download(hi.data(), static_cast<std::size_t>(rows * k) * 2);
    const std::vector<std::uint8_t> l = test::download(lo.data(), static_cast<std::size_t>(rows * (D - k)) * 2);
    const auto word = [](const std::vector<std::uint8_t>& b, std::int64_t i) {
      std::uint16_t w;
      std::memcpy(&w, &b[static_cast<std::size_t>(i) * 2], 2);
      return static_cast<std::int64_t>(w);
    };
    std::int64_t wrong = 0;
    for (std::int64_t r = 0; r < rows; ++r) {
      const bool valid = r < rows_per_mask;
      for (std::int64_t j = 0; j < k; ++j) wrong += word(h, r * k + j) != r * D + (valid ? D - k + j : j);
      for (std::int64_t j = 0; j < D - k; ++j) wrong += word(l, r * (D - k) + j) != r * D + (valid ? j : k + j);
    }
    CHECK(wrong == 0);
  }
}
#endif

TEST_CASE("corrupt masks on CUDA: mixed_channel decodes NaN for the mask's rows, mixed_token throws IoError",
          "[cuda][mixed_channel][mixed_token]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const BlockShape s{2, 64, 128};
  const std::vector<float> x = block_values(s, 8);
  const std::vector<std::uint8_t> in = test::to_dtype_bytes(x, DType::f16);
  const DeviceBuffer d_in = test::upload(in);
  {
    // Scope head: mask 1 gets one channel too many (a low channel's bit set); head 0 still decodes as on the CPU.
    auto q = reference().make_quantizer(map({{"type", scalar("mixed_channel")},
                                             {"selector", map({{"type", scalar("range")}, {"scope", scalar("head")}})},
                                             {"high", uniform("2", "32", "channel")},
                                             {"low", uniform("1", "32", "channel")}}));
    std::vector<std::uint8_t> bytes = test::encode(*q, s, test::from_dtype_bytes(in, DType::f16));
    std::size_t low_channel = 0;
    while (mixed_channel_format::mask_get(bytes.data(), 128, 1, low_channel)) ++low_channel;
    mixed_channel_format::mask_set(bytes.data(), 128, 1, low_channel);
    const DeviceBuffer d_bytes = test::upload(bytes);
    const DeviceBuffer d_out = test::poisoned(static_cast<std::size_t>(s.elements()) * 2);
    q->decode_view(d_bytes.as<std::uint8_t>(), {}, test::view_of(d_out.data(), DType::f16, Device::cuda, s), Execution::cuda());
    synchronize();
    const std::vector<float> out = test::from_dtype_bytes(test::download(d_out.data(), static_cast<std::size_t>(s.elements()) * 2), DType::f16);
    std::size_t nan_head1 = 0, finite_head0 = 0;
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (i < out.size() / 2) finite_head0 += std::isfinite(out[i]) ? 1 : 0;
      else nan_head1 += std::isnan(out[i]) ? 1 : 0;
    }
    CHECK(finite_head0 == out.size() / 2);
    CHECK(nan_head1 == out.size() / 2);
  }
  {
    const Trace trace;
    auto q = reference().make_quantizer(map({{"type", scalar("mixed_token")},
                                             {"protector", map({{"type", scalar("random")}, {"fraction", scalar("0.3")}})},
                                             {"protected", uniform("2", "32", "channel")},
                                             {"rest", uniform("1", "32", "channel")}}));
    const TokenContext ctx = trace.context(100, 164);
    std::vector<std::uint8_t> bytes = test::encode(*q, s, test::from_dtype_bytes(in, DType::f16), ctx);
    bytes[0] ^= 0x01;  // token 0's bit: one protected token more or less than the budget
    const DeviceBuffer d_bytes = test::upload(bytes);
    const DeviceBuffer d_out = test::poisoned(static_cast<std::size_t>(s.elements()) * 2);
    CHECK_THROWS_AS(q->decode_view(d_bytes.as<std::uint8_t>(), ctx, test::view_of(d_out.data(), DType::f16, Device::cuda, s),
                                   Execution::cuda()),
                    IoError);
  }
}

TEST_CASE("mixed_channel_split::in_top_k keeps exactly the channels of top_k_indices, ties included", "[cpu][mixed_channel]") {
  std::mt19937_64 rng(21);
  for (int trial = 0; trial < 300; ++trial) {
    const std::int64_t n = 1 + trial % 40;
    std::vector<double> scores(static_cast<std::size_t>(n));
    std::uniform_int_distribution<int> few(0, 3);  // many ties
    for (auto& s : scores) s = trial % 2 ? static_cast<double>(few(rng)) : std::ldexp(static_cast<double>(rng() % 1000), -3);
    if (trial % 7 == 0) scores[0] = -0.0;  // a negative zero ties with +0
    for (std::int64_t k = 0; k <= n; ++k) {
      std::vector<std::uint8_t> expected(static_cast<std::size_t>(n), 0), got(static_cast<std::size_t>(n), 0);
      for (auto c : top_k_indices(scores, k)) expected[static_cast<std::size_t>(c)] = 1;
      for (std::int64_t c = 0; c < n; ++c) got[static_cast<std::size_t>(c)] = mixed_channel_split::in_top_k(scores.data(), n, c, k) ? 1 : 0;
      INFO("trial " << trial << " n " << n << " k " << k);
      CHECK(got == expected);
    }
  }
}
