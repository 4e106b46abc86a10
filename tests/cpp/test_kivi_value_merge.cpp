// The kivi lifecycle's merge of one-token value blocks (cache_lifecycle.h, core/token_block_merge.h): each token the
// value FIFO quantizes is merged into the block before it while that block holds fewer than 32 tokens, and the
// merged block's bytes are those of its tokens encoded at once; a quantizer that is not token-separable keeps one
// block per token; the cuda cache merges to the cpu cache's bytes. With lifecycle value_block B > 1 the values leave
// the window B tokens at a time instead (the tests at the end of the file).
//
// Setup: 2 KV heads, 64 channels, keys uniform 2-bit per channel, values uniform 2-bit per token (KIVI; 64 x 2 bits =
// 16 code bytes per token and head, whole bytes), group 32, R = 16, fp16 residual. A prefill of 40 tokens quantizes
// values [0, 24) (N - R) as one block; each of 80 decode steps then quantizes one token, tokens 24 .. 103: the first
// 8 fill the prefill's block to [0, 32), the next 32 make [32, 64), then [64, 96), and the last 8 the tail [96, 104):
// 4 value blocks where one block per token would be 1 + 80.
#include <cstdint>
#include <utility>
#include <vector>

#include "catch.h"
#include "cuda_test_support.h"
#include "layer_cache_compare.h"
#include "quantizer_test_helpers.h"
#include "scoped_env.h"
#include "vidkv/core/cache_lifecycle.h"
#include "vidkv/core/dtype.h"
#include "vidkv/core/error.h"

using namespace vidkv;

namespace {

constexpr std::int64_t kHeads = 2, kChannels = 64, kPrefill = 40, kSteps = 80;

// Values of a few magnitudes (x 0.37 .. 2.2 across tokens) from a fixed integer hash, rounded to fp16 (the caches'
// data dtype, in which a cuda cache stores its inputs: exact there), [heads, end - begin, channels] for tokens
// [begin, end).
std::vector<float> inputs(std::int64_t begin, std::int64_t end, std::int64_t channels, std::uint32_t salt) {
  std::vector<float> out;
  for (std::int64_t h = 0; h < kHeads; ++h)
    for (std::int64_t t = begin; t < end; ++t)
      for (std::int64_t c = 0; c < channels; ++c) {
        std::uint32_t x = static_cast<std::uint32_t>((h * 100003 + t) * 1009 + c) * 2654435761u + salt;
        x ^= x >> 15;
        x *= 2246822519u;
        x ^= x >> 13;
        const float u = static_cast<float>(x & 0xFFFFu) / 65536.0f - 0.5f;  // [-0.5, 0.5)
        out.push_back(round_to_dtype(u * (0.37f + 0.02f * static_cast<float>(t % 91)) + 0.1f * static_cast<float>(h), DType::f16));
      }
  return out;
}

// KIVI's codec: keys per channel, values per token (layout: the values' code layout, dense or release).
KvCodec kivi_codec(const char* value_layout = "dense") {
  return KvCodec(test::make("uniform", {{"bits", "2"}, {"axis", "channel"}, {"group", "32"}}),
                 test::make("uniform", {{"bits", "2"}, {"axis", "token"}, {"group", "32"}, {"layout", value_layout}}));
}

LifecycleParams kivi_lifecycle() {
  LifecycleParams p;
  p.type = LifecycleType::kivi;
  p.group = 32;
  p.residual = 16;
  p.residual_dtype = ResidualDType::f16;
  return p;
}

// The prefill, then kSteps single-token decode steps.
void fill(LayerCache& cache, std::int64_t channels) {
  cache.append(inputs(0, kPrefill, channels, 1).data(), inputs(0, kPrefill, channels, 2).data(), kPrefill);
  for (std::int64_t t = kPrefill; t < kPrefill + kSteps; ++t)
    cache.append(inputs(t, t + 1, channels, 1).data(), inputs(t, t + 1, channels, 2).data(), 1);
}

}  // namespace

TEST_CASE("uniform and identity say which blocks are token-separable", "[lifecycle][kivi]") {
  const BlockShape s64{2, 7, 64}, s34{2, 7, 34};
  CHECK(test::make("uniform", {{"bits", "2"}, {"axis", "token"}})->token_separable(s64));       // 128 bits a token
  CHECK_FALSE(test::make("uniform", {{"bits", "2"}, {"axis", "token"}})->token_separable(s34)); // 68 bits: not whole bytes
  CHECK(test::make("uniform", {{"bits", "2"}, {"axis", "token"}, {"layout", "release"}})->token_separable(s34));  // word rows
  CHECK_FALSE(test::make("uniform", {{"bits", "2"}, {"axis", "channel"}})->token_separable(s64));  // groups span tokens
  CHECK(test::make("identity")->token_separable(s34));
  CHECK_FALSE(test::make("ternary", {{"axis", "token"}})->token_separable(s64));  // default: not claimed
  // layout fragment: fewer than 32 tokens are all tail (dense's bytes); a whole 32-token tile interleaves tokens.
  const auto fragment = test::make("uniform", {{"bits", "2"}, {"axis", "token"}, {"layout", "fragment"}});
  CHECK(fragment->token_separable(s64));
  CHECK(fragment->token_separable(BlockShape{2, 31, 64}));
  CHECK_FALSE(fragment->token_separable(BlockShape{2, 32, 64}));
  CHECK_FALSE(fragment->token_separable(BlockShape{2, 40, 128}));
}

TEST_CASE("kivi lifecycle merges fragment-layout value tokens into blocks of at most 31 tokens, the bytes of those tokens encoded at once", "[lifecycle][kivi]") {
  // Values [0, 24) from the prefill; tokens 24 .. 30 fill that block to 31; token 31 would make a whole 32-token tile
  // (not a byte merge in layout fragment), so it starts [31, ...), which grows to 31 tokens, and so on: blocks
  // [0, 31), [31, 62), [62, 93), [93, 104).
  const KvCodec codec = kivi_codec("fragment");
  LayerCache cache(codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16);
  fill(cache, kChannels);
  REQUIRE(cache.value_block_count() == 4);
  const std::int64_t bounds[] = {0, 31, 62, 93, 104};
  for (std::size_t b = 0; b < 4; ++b) {
    const std::int64_t begin = bounds[b], end = bounds[b + 1];
    CAPTURE(begin, end);
    CHECK(cache.value_block_bytes(b) ==
          test::encode(codec.value(), BlockShape{kHeads, end - begin, kChannels}, inputs(begin, end, kChannels, 2)));
  }
}

TEST_CASE("kivi lifecycle merges each quantized value token into a block of fewer than 32 tokens, the bytes of those tokens encoded at once", "[lifecycle][kivi]") {
  for (const char* layout : {"dense", "release"}) {
    for (const ExactTokens exact : {ExactTokens::all, ExactTokens::residual}) {
      CAPTURE(layout, static_cast<int>(exact));
      const KvCodec codec = kivi_codec(layout);
      LayerCache cache(codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu(), exact);
      fill(cache, kChannels);
      CHECK(cache.value_quantized() == kPrefill + kSteps - 16);
      REQUIRE(cache.value_block_count() == 4);
      // Each block is its tokens encoded as one block, byte for byte.
      const std::int64_t bounds[] = {0, 32, 64, 96, 104};
      for (std::size_t b = 0; b < 4; ++b) {
        const std::int64_t begin = bounds[b], end = bounds[b + 1];
        CAPTURE(begin, end);
        const std::vector<std::uint8_t> want =
            test::encode(codec.value(), BlockShape{kHeads, end - begin, kChannels}, inputs(begin, end, kChannels, 2));
        CHECK(cache.value_block_bytes(b) == want);
      }

      // Against the cache that keeps them apart: the same bytes stored, the same values read, 1 + 80 blocks.
      const test::ScopedEnv apart("VIDKV_KIVI_VALUE_MERGE", "off");
      LayerCache unmerged(codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu(), exact);
      fill(unmerged, kChannels);
      CHECK(unmerged.value_block_count() == 81);
      CHECK(unmerged.value_layout().bytes() == cache.value_layout().bytes());
      CHECK(unmerged.value_layout().effective_bits() == cache.value_layout().effective_bits());
      test::require_same_values(cache, unmerged);
    }
  }
}

TEST_CASE("kivi lifecycle keeps one-token value blocks apart when the value quantizer is not token-separable", "[lifecycle][kivi]") {
  // 34 channels x 2 bits = 68 bits a token: the dense stream does not split at a token boundary.
  const KvCodec codec = kivi_codec();
  LayerCache cache(codec, kivi_lifecycle(), kHeads, 34, TokenContext{}, DType::f16);
  fill(cache, 34);
  CHECK(cache.value_block_count() == 1 + 80);
}

TEST_CASE("kivi value merge on cuda gives the cpu cache's blocks in layout fragment", "[cuda][lifecycle][kivi]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const KvCodec cpu_codec = kivi_codec("fragment"), gpu_codec = kivi_codec("fragment");
  LayerCache c_cpu(cpu_codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu());
  LayerCache c_gpu(gpu_codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cuda());
  fill(c_cpu, kChannels);
  fill(c_gpu, kChannels);
  REQUIRE(c_gpu.value_block_count() == 4);
  test::require_same_cache(c_gpu, c_cpu);  // counters, materialized values, every block's bytes
}

TEST_CASE("kivi value merge on cuda gives the cpu cache's blocks", "[cuda][lifecycle][kivi]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const KvCodec cpu_codec = kivi_codec(), gpu_codec = kivi_codec();
  for (const ExactTokens exact : {ExactTokens::all, ExactTokens::residual}) {
    CAPTURE(static_cast<int>(exact));
    LayerCache c_cpu(cpu_codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu(), exact);
    LayerCache c_gpu(gpu_codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cuda(), exact);
    fill(c_cpu, kChannels);
    fill(c_gpu, kChannels);
    REQUIRE(c_gpu.value_block_count() == 4);
    REQUIRE(c_cpu.value_block_count() == 4);
    test::require_same_cache(c_gpu, c_cpu);  // counters, materialized values, every block's bytes
    // The device buffers of the one-token encodes and merges are reused (DeviceBufferShelf): 80 scratch rows + 80
    // one-token blocks + 77 merges (the steps of tokens 32, 64 and 96 start a new tail: no merge) = 237 requests,
    // each of which allocated before; now a few at the start and at each new tail (8 in a simulation of the
    // shelf's policy on these sizes: 48-byte token, 256-byte scratch rows, 1536-byte tail buffers).
    const auto [reuses, allocations] = c_gpu.buffer_reuse();
    CHECK(reuses + allocations == 237);
    CHECK(allocations <= 10);
    // Held bytes count the tail buffers' room and the shelf: at most 4 buffers of 32 tokens beside the blocks' own.
    const std::size_t tail = 32 * 48;
    CHECK(c_gpu.held_bytes().packed >= c_cpu.held_bytes().packed);
    CHECK(c_gpu.held_bytes().packed <= c_cpu.held_bytes().packed + 8 * tail);
    CHECK(c_cpu.buffer_reuse() == std::pair<std::size_t, std::size_t>{0, 0});
  }
}

TEST_CASE("kivi lifecycle encodes value tokens leaving the window together as one block, the bytes and values of one token at a time", "[lifecycle][kivi]") {
  // A prefill of 40 tokens (values [0, 24) quantized, R = 16), then one append of 50 tokens (a prompt fed in passes,
  // or a multi-token step): 50 value tokens leave the window at once, tokens [24, 74), and are one block of 50 tokens
  // (the one-token path would make them 8 merged into the prefill's block, then [32, 64) and [64, 74)). Against a
  // cache fed the same tokens one at a time: the same materialized values and effective bits.
  const KvCodec codec = kivi_codec();
  LayerCache together(codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16);
  together.append(inputs(0, kPrefill, kChannels, 1).data(), inputs(0, kPrefill, kChannels, 2).data(), kPrefill);
  together.append(inputs(kPrefill, kPrefill + 50, kChannels, 1).data(), inputs(kPrefill, kPrefill + 50, kChannels, 2).data(), 50);
  CHECK(together.value_quantized() == kPrefill + 50 - 16);
  REQUIRE(together.value_block_count() == 2);
  CHECK(together.value_block_bytes(1) ==
        test::encode(codec.value(), BlockShape{kHeads, 50, kChannels}, inputs(24, 74, kChannels, 2)));
  LayerCache apart(codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16);
  apart.append(inputs(0, kPrefill, kChannels, 1).data(), inputs(0, kPrefill, kChannels, 2).data(), kPrefill);
  for (std::int64_t t = kPrefill; t < kPrefill + 50; ++t)
    apart.append(inputs(t, t + 1, kChannels, 1).data(), inputs(t, t + 1, kChannels, 2).data(), 1);
  CHECK(apart.value_block_count() == 3);
  CHECK(apart.value_layout().effective_bits() == together.value_layout().effective_bits());
  test::require_same_values(together, apart);
  // A quantizer that is not token-separable for them (34 channels: 68 bits a token) keeps one block per token.
  LayerCache odd(codec, kivi_lifecycle(), kHeads, 34, TokenContext{}, DType::f16);
  odd.append(inputs(0, kPrefill, 34, 1).data(), inputs(0, kPrefill, 34, 2).data(), kPrefill);
  odd.append(inputs(kPrefill, kPrefill + 50, 34, 1).data(), inputs(kPrefill, kPrefill + 50, 34, 2).data(), 50);
  CHECK(odd.value_block_count() == 1 + 50);
}

// ----- value_block B: the values leave the window B tokens at a time ------------------------------------------------

namespace {

LifecycleParams kivi_blocks(int value_block) {
  LifecycleParams p = kivi_lifecycle();
  p.value_block = value_block;
  return p;
}

// Token ranges of the cache's value blocks, in order.
std::vector<std::pair<std::int64_t, std::int64_t>> value_ranges(const LayerCache& c) {
  std::vector<std::pair<std::int64_t, std::int64_t>> out;
  for (const LayerCache::BlockRef& b : c.value_side().blocks) out.emplace_back(b.begin, b.end);
  return out;
}

}  // namespace

TEST_CASE("kivi value_block B quantizes the values up to the largest multiple of B that leaves R in the window", "[lifecycle][kivi]") {
  // R = 16, B = 8. A prefill of 43 tokens: keys [0, 32) (43 - 43 mod 16), values 43 - 16 = 27 leaving, rounded down
  // to 24: [0, 24) as one block. Decode steps: at 44 .. 47 tokens 28 .. 31 leave (still 24); at 48, 32 leave:
  // [24, 32) is one block; then [32, 40) at 56, ..., [96, 104) at 120; 123 tokens leave 107 -> 104, a window of 19.
  // Blocks: [0, 24) and ten of 8 tokens. Ternary values (not token-separable: each block is its own encode).
  for (const char* value_type : {"uniform", "ternary"}) {
    CAPTURE(value_type);
    const KvCodec codec(test::make("uniform", {{"bits", "2"}, {"axis", "channel"}, {"group", "32"}}),
                        std::string(value_type) == "uniform"
                            ? test::make("uniform", {{"bits", "2"}, {"axis", "token"}, {"group", "32"}})
                            : test::make("ternary", {{"axis", "token"}, {"group", "32"}}));
    LayerCache cache(codec, kivi_blocks(8), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual);
    cache.append(inputs(0, 43, kChannels, 1).data(), inputs(0, 43, kChannels, 2).data(), 43);
    CHECK(cache.key_quantized() == 32);
    CHECK(cache.value_quantized() == 24);
    for (std::int64_t t = 43; t < 123; ++t) {
      cache.append(inputs(t, t + 1, kChannels, 1).data(), inputs(t, t + 1, kChannels, 2).data(), 1);
      const std::int64_t n = t + 1, window = n - cache.value_quantized();
      CAPTURE(n);
      CHECK(cache.value_quantized() % 8 == 0);
      CHECK(window >= 16);
      CHECK(window < 16 + 8);
      CHECK(cache.exact_value_tokens() == window);
    }
    CHECK(cache.value_quantized() == 104);
    const auto ranges = value_ranges(cache);
    REQUIRE(ranges.size() == 11);
    CHECK(ranges[0] == std::pair<std::int64_t, std::int64_t>{0, 24});
    for (std::size_t b = 1; b < ranges.size(); ++b) {
      const std::int64_t begin = 24 + 8 * static_cast<std::int64_t>(b - 1);
      CHECK(ranges[b] == std::pair<std::int64_t, std::int64_t>{begin, begin + 8});
      CHECK(cache.value_block_bytes(b) == test::encode(codec.value(), BlockShape{kHeads, 8, kChannels}, inputs(begin, begin + 8, kChannels, 2)));
    }
  }
}

TEST_CASE("kivi value_block B reads the same values as B = 1 for tokens both quantized, and the exact inputs for the rest", "[lifecycle][kivi]") {
  // Per-token values (token-separable): a token's quantized values depend on that token alone, whatever its block.
  // After 40 + 80 tokens, R = 16: B = 1 quantized [0, 104), B = 32 [0, 96) (104 rounded down to a multiple of 32),
  // so tokens [96, 104)
  // are read exactly (fp16 inputs, fp16 residual) by the B = 32 cache and quantized by the other.
  const KvCodec codec = kivi_codec();
  LayerCache one(codec, kivi_lifecycle(), kHeads, kChannels, TokenContext{}, DType::f16);
  LayerCache wide(codec, kivi_blocks(32), kHeads, kChannels, TokenContext{}, DType::f16);
  fill(one, kChannels);
  fill(wide, kChannels);
  REQUIRE(one.value_quantized() == 104);
  REQUIRE(wide.value_quantized() == 96);
  // The prefill's 40 - 16 = 24 leaving tokens round down to 0: no value block until 48 tokens leave 32.
  CHECK(value_ranges(wide) == std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 32}, {32, 64}, {64, 96}});
  std::vector<float> k1, v1, kw, vw;
  one.materialize(k1, v1);
  wide.materialize(kw, vw);
  CHECK(k1 == kw);  // the keys follow R alone
  const std::vector<float> exact = inputs(0, kPrefill + kSteps, kChannels, 2);
  const std::int64_t n = kPrefill + kSteps;
  std::int64_t differs = 0;
  for (std::int64_t h = 0; h < kHeads; ++h)
    for (std::int64_t t = 0; t < n; ++t)
      for (std::int64_t c = 0; c < kChannels; ++c) {
        const auto i = static_cast<std::size_t>((h * n + t) * kChannels + c);
        if (t < 96) {
          REQUIRE(vw[i] == v1[i]);
        } else {
          REQUIRE(vw[i] == exact[i]);
          differs += vw[i] != v1[i];
        }
      }
  CHECK(differs > 0);  // tokens [96, 104): quantized in one cache, exact in the other
}

TEST_CASE("kivi value_block keeps R to R + B - 1 value tokens in the window and block ends on multiples of B under appends of any size", "[lifecycle][kivi]") {
  // Appends of 1 .. 37 tokens (a fixed pseudo-random sequence), R = 16, B = 8, per-token values in layout dense
  // (token-separable: several blocks leaving at once are one encode, still ending on a multiple of 8) and 34
  // channels (not token-separable: blocks of exactly 8).
  for (const std::int64_t channels : {kChannels, std::int64_t{34}}) {
    CAPTURE(channels);
    const KvCodec codec = kivi_codec();
    LayerCache cache(codec, kivi_blocks(8), kHeads, channels, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual);
    std::int64_t n = 0;
    std::uint32_t x = 12345;
    while (n < 400) {
      x = x * 1103515245u + 12345u;
      const std::int64_t t = 1 + static_cast<std::int64_t>((x >> 16) % 37);
      cache.append(inputs(n, n + t, channels, 1).data(), inputs(n, n + t, channels, 2).data(), t);
      n += t;
      CAPTURE(n, t);
      const std::int64_t vq = cache.value_quantized();
      CHECK(vq == (n > 16 ? (n - 16) / 8 * 8 : 0));
      for (const auto& [begin, end] : value_ranges(cache)) {
        CHECK(end % 8 == 0);
        if (channels == 34 && begin > 0) CHECK(end - begin == 8);
      }
    }
  }
}

TEST_CASE("kivi value_block 32 in layout fragment: every value block after the prefill's is one whole aligned tile", "[lifecycle][kivi]") {
  // R = 32, B = 32, 64 channels: a prefill of 100 tokens quantizes keys [0, 96) (whole R-blocks from token 0) and
  // values [0, 64) (68 leaving, rounded down); 80 decode steps then add key blocks [96, 128), [128, 160) and value
  // blocks [64, 96), [96, 128) (180 - 32 = 148 -> 128): each value block 32 tokens from a multiple of 32 (so are the
  // keys'), the fragment kernel's tile, and each the bytes of its 32 tokens encoded as one fragment block (a whole
  // tile: tokens interleaved, not one-token merges).
  const KvCodec codec = kivi_codec("fragment");
  LifecycleParams lc = kivi_blocks(32);
  lc.residual = 32;
  LayerCache cache(codec, lc, kHeads, kChannels, TokenContext{}, DType::f16);
  cache.append(inputs(0, 100, kChannels, 1).data(), inputs(0, 100, kChannels, 2).data(), 100);
  for (std::int64_t t = 100; t < 180; ++t)
    cache.append(inputs(t, t + 1, kChannels, 1).data(), inputs(t, t + 1, kChannels, 2).data(), 1);
  REQUIRE(value_ranges(cache) == std::vector<std::pair<std::int64_t, std::int64_t>>{{0, 64}, {64, 96}, {96, 128}});
  for (std::size_t b = 0; b < 3; ++b) {
    const auto [begin, end] = value_ranges(cache)[b];
    CHECK(cache.value_block_bytes(b) == test::encode(codec.value(), BlockShape{kHeads, end - begin, kChannels}, inputs(begin, end, kChannels, 2)));
  }
  for (const LayerCache::BlockRef& k : cache.key_side().blocks) CHECK((k.begin % 32 == 0 && k.end % 32 == 0));
  CHECK(cache.key_quantized() == 160);
}

TEST_CASE("lifecycle value_block other than 1 is refused outside type kivi, and below 1", "[lifecycle][kivi][errors]") {
  const KvCodec codec = kivi_codec();
  for (const LifecycleType type : {LifecycleType::paper, LifecycleType::release}) {
    LifecycleParams p = kivi_blocks(4);
    p.type = type;
    CHECK_THROWS_AS(LayerCache(codec, p, kHeads, kChannels, TokenContext{}, DType::f16), ConfigError);
    CHECK_THROWS_WITH(LayerCache(codec, p, kHeads, kChannels, TokenContext{}, DType::f16),
                      VIDKV_CONTAINS("value_block (4) applies to type kivi only"));
  }
  CHECK_THROWS_WITH(LayerCache(codec, kivi_blocks(0), kHeads, kChannels, TokenContext{}, DType::f16), VIDKV_CONTAINS("value_block (0) must be at least 1"));
}

TEST_CASE("kivi value_block on cuda gives the cpu cache's blocks", "[cuda][lifecycle][kivi]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  for (const char* layout : {"dense", "fragment"}) {
    CAPTURE(layout);
    const KvCodec cpu_codec = kivi_codec(layout), gpu_codec = kivi_codec(layout);
    LayerCache c_cpu(cpu_codec, kivi_blocks(32), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cpu(), ExactTokens::residual);
    LayerCache c_gpu(gpu_codec, kivi_blocks(32), kHeads, kChannels, TokenContext{}, DType::f16, Execution::cuda(), ExactTokens::residual);
    fill(c_cpu, kChannels);
    fill(c_gpu, kChannels);
    REQUIRE(c_gpu.value_block_count() == 3);
    test::require_same_cache(c_gpu, c_cpu);  // counters, materialized values, every block's bytes
  }
}
