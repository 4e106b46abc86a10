// [cuda] tests of fused decode attention (attention/decode_attention.cu): the kernels on cuda LayerCaches against the
// CPU reference (the same cache's bytes decoded by the plugins on the host) and dequantize-then-attend, within the
// named tolerance of attention/decode_attention_tolerance.h, for every codec it reads (every preset it supports and
// the extra formats of decode_attention_test_support.h): batch 3 of different lengths (tails: lengths not multiples
// of 32, a sequence shorter than one residual window), GQA 7 and 1 query heads per KV head, head_dim 128 and 64,
// fp32 / fp16 / bf16 queries, the default and forced split counts, and an fp16 output. Skipped without a GPU.
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>

#include "catch.h"
#include "test_registry.h"
#include "cuda_test_support.h"
#include "decode_attention_test_support.h"
#ifdef VIDKV_WITH_CUDA
#include "vidkv/attention/decode_attention_cuda.h"
#include "vidkv/attention/decode_attention_fragment.h"
#endif
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"

using namespace vidkv;
using namespace vidkv::test;

namespace {

// Runs the kernels on `caches` (cuda) for queries q [batch, q_heads, D] ([batch, n, q_heads, D] where the tables are
// for n = attn.query_tokens() > 1) given as `qtype` elements; fp32 out.
std::vector<float> run_cuda(const DecodeAttention& attn, const std::vector<float>& q, std::int64_t q_heads, DType qtype,
                            DType out_type = DType::f32) {
  const std::int64_t batch = attn.batch(), d = attn.head_dim(), n = attn.query_tokens();
  const std::vector<std::int64_t> shape = n == 1 ? std::vector<std::int64_t>{batch, q_heads, d} : std::vector<std::int64_t>{batch, n, q_heads, d};
  const std::vector<std::uint8_t> qb = to_dtype_bytes(q, qtype);
  DeviceBuffer dq = upload(qb);
  const std::size_t out_bytes = q.size() * static_cast<std::size_t>(dtype_size(out_type));
  DeviceBuffer dout = poisoned(out_bytes);
  attn.run(TensorView{dq.data(), qtype, Device::cuda, shape}, TensorView{dout.data(), out_type, Device::cuda, shape});
  synchronize();
  return from_dtype_bytes(download(dout.data(), out_bytes), out_type);
}

decode_attention_tolerance::Arithmetic arithmetic_of(const DecodeAttention& attn) {
  if (attn.fragment()) return decode_attention_tolerance::Arithmetic::fragment;
  return attn.tensor_cores() ? decode_attention_tolerance::Arithmetic::tensor_cores
                             : decode_attention_tolerance::Arithmetic::cuda_cores;
}

const char* kernel_name(const DecodeAttention& attn) {
  return attn.fragment() ? "fragment kernel" : attn.tensor_cores() ? "tensor cores" : "cuda cores";
}

}  // namespace

TEST_CASE("decode attention on cuda agrees with the reference and dequantize-then-attend for every codec it reads", "[cuda][attention]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  int compared = 0;
  for (const int d : {128, 64}) {
    const LayerInput a = synthetic_input(2, 1000, d, 11), b = synthetic_input(2, 333, d, 12), c = synthetic_input(2, 70, d, 13);
    for (const AttentionCodec& ac : attention_codecs()) {
      // The reference registry: the CUDA paths are the same, and the reference's host decode of the cache's bytes is
      // the plugins' scalar reference (FFTW for the FFT keys, the bound of decode_attention_tolerance.h 4.).
      const PluginRegistry& reg = test::builtin_registry(CpuImplementation::reference);
      const KvCodec codec(reg.make_quantizer(ac.key), reg.make_quantizer(ac.value));
      std::string why;
      if (!decode_attention_supports(codec.key(), d, KvSide::key, &why) || !decode_attention_supports(codec.value(), d, KvSide::value, &why)) {
        std::cout << "[cuda] not read in place: " << ac.name << ": " << why << "\n";
        continue;
      }
      if (!codec.key().supports(Device::cuda, {2, 64, d}, &why) || !codec.value().supports(Device::cuda, {2, 64, d}, &why)) {
        std::cout << "[cuda] no CUDA cache for " << ac.name << ": " << why << "\n";
        continue;
      }
      INFO(ac.name << ", head_dim " << d);
      const Execution ex = Execution::cuda();
      const auto ca = filled_cache(codec, ac.lifecycle, a, 900, ex);
      const auto cb = filled_cache(codec, ac.lifecycle, b, 300, ex);
      const auto cc = filled_cache(codec, ac.lifecycle, c, 60, ex);
      const std::vector<const LayerCache*> caches{ca.get(), cb.get(), cc.get()};
      using Fast = DecodeAttention::FastKernel;
      // kivi-2's quantizers in layout fragment: the fragment kernel takes the whole tiles, also with 8 query heads
      // per KV head (the B operand's every column).
      const bool fragment_codec = ac.name.find("fragment") != std::string::npos;
      const std::vector<std::int64_t> qpks = fragment_codec ? std::vector<std::int64_t>{7, 1, 8} : std::vector<std::int64_t>{7, 1};
      for (const std::int64_t qpk : qpks) {
        // The fast tiles through the tensor-core kernel (where its formats allow) and through the fast kernel.
        for (const auto& [splits, fast] : {std::pair{0, Fast::tensor_cores}, std::pair{5, Fast::tensor_cores},
                                           std::pair{0, Fast::cuda_cores}}) {
          const DecodeAttention attn(caches, ex, splits, fast);
          if (ac.name == "preset kivi-2" || ac.name == "preset vidkv-k1.5-v1.58") CHECK(attn.tensor_cores() == (fast == Fast::tensor_cores));
          CHECK(attn.fragment() == (fragment_codec && fast == Fast::tensor_cores));
          if (attn.fragment()) CHECK(attn.fast_tiles() > 0);  // which tiles: fragment_tile, [cpu]-tested
          // The preset (lifecycle value_block 32: every value block whole fragment tiles): its residual windows' tiles
          // (fp16 stores; keys exact or in whole fragment tiles, values exact) on the general kernel's compact
          // instance, unless switched off. The other fragment codecs here keep value_block 1, whose one-token value
          // blocks leave general tiles in the quantized prefix: the full instance.
          if (attn.fragment() && ac.name == "preset kivi-2-fragment" && !env_equals("VIDKV_CUDA_ATTENTION_COMPACT", "off")) {
            CHECK(attn.general_compact());
            // fp16 stores (filled_cache's data dtype): those tiles on the residual tiles' tensor-core kernel
            // (fragment_residual_kernel), unless switched off; its outputs are checked below like every other's.
            CHECK(attn.general_tensor_cores() == !env_equals("VIDKV_CUDA_ATTENTION_RESIDUAL", "cuda_cores"));
          }
          if (attn.general_tensor_cores()) CHECK(attn.general_compact());
          for (const DType qtype : all_dtypes()) {
            INFO("qpk " << qpk << ", splits " << attn.splits() << ", " << kernel_name(attn) << ", queries "
                        << dtype_name(qtype));
            std::vector<float> q = random_queries(3, 2 * qpk, d, 1.5f, 21);
            for (auto& x : q) x = round_to_dtype(x, qtype);
            const std::vector<float> out = run_cuda(attn, q, 2 * qpk, qtype);
            const double worst = check_against_reference(caches, q, out, qpk, arithmetic_of(attn));
            std::cout << "[cuda] " << ac.name << ", D " << d << ", qpk " << qpk << ", splits " << attn.splits()
                      << ", " << kernel_name(attn) << ", " << dtype_name(qtype)
                      << ": largest error / tolerance " << worst << "\n";
          }
        }
      }
      ++compared;
    }
  }
  CHECK(compared >= 8);  // at least kivi-2, kivi-4, vidkv-k1.5-v1.58 and one extra format, at both head dims
}

TEST_CASE("decode attention on cuda with several query tokens per sequence attends causally, for every codec it reads", "[cuda][attention]") {
  // Each (sequence, query token) is a row of the tables stopping at its causal limit T - n + 1 + j (decode_attention.h),
  // run by the one-token kernels: batch 3 of different lengths, n = 2 and 5, 7 query heads per KV head, head_dim 128,
  // against the reference and dequantize-then-attend over each token's first T - n + 1 + j tokens. Then the paper
  // lifecycle with every token quantized (prefills of 64 and 96 tokens, G = 32): the first n - 1 limits fall inside the
  // last packed tiles, which are cut there (a fragment tile cut short stays on the fragment kernel, which masks the
  // tokens past the limit).
  VIDKV_REQUIRE_CUDA_DEVICE();
  const std::int64_t d = 128, qpk = 7;
  const LayerInput a = synthetic_input(2, 1000, d, 61), b = synthetic_input(2, 333, d, 62), c = synthetic_input(2, 70, d, 63);
  const LayerInput pa = synthetic_input(2, 64, d, 64), pb = synthetic_input(2, 96, d, 65);
  const LifecycleParams paper = paper_lifecycle();
  int compared = 0;
  for_each_codec_read(d, [&](const AttentionCodec& ac, const KvCodec& codec) {
    if (!codec.key().supports(Device::cuda, {2, 64, d}) || !codec.value().supports(Device::cuda, {2, 64, d})) return;
    INFO(ac.name);
    const Execution ex = Execution::cuda();
    const auto ca = filled_cache(codec, ac.lifecycle, a, 900, ex, ExactTokens::residual);
    const auto cb = filled_cache(codec, ac.lifecycle, b, 300, ex, ExactTokens::residual);
    const auto cc = filled_cache(codec, ac.lifecycle, c, 60, ex, ExactTokens::residual);
    const auto cpa = filled_cache(codec, paper, pa, 64, ex, ExactTokens::residual);
    const auto cpb = filled_cache(codec, paper, pb, 96, ex, ExactTokens::residual);
    for (const auto& caches : {std::vector<const LayerCache*>{ca.get(), cb.get(), cc.get()}, std::vector<const LayerCache*>{cpa.get(), cpb.get()}}) {
      const auto batch = static_cast<std::int64_t>(caches.size());
      for (const std::int64_t n : {2, 5}) {
        const DecodeAttention attn(caches, ex, 0, DecodeAttention::FastKernel::tensor_cores, true, n);
        INFO(n << " query tokens, " << caches[0]->tokens() << " tokens in sequence 0, " << kernel_name(attn));
        // The fragment presets under the paper lifecycle: every tile a whole fragment tile or one cut by a row's
        // limit, all on the fragment kernel (mask_cut_tile), none left to the general kernel.
        if (caches.size() == 2 && (ac.name == "preset kivi-2-fragment" || ac.name == "preset vidkv-k1.5-v1.58-fragment")) {
          CHECK(attn.fragment());
          CHECK(attn.fast_tiles() == attn.tiles());
        }
        std::vector<float> q = random_queries(batch * n, 2 * qpk, d, 1.5f, 70 + static_cast<std::uint64_t>(n));
        for (auto& x : q) x = round_to_dtype(x, DType::f16);
        const std::vector<float> out = run_cuda(attn, q, 2 * qpk, DType::f16);
        const double worst = check_against_reference(caches, q, out, qpk, arithmetic_of(attn), n);
        std::cout << "[cuda] " << ac.name << ", " << n << " query tokens, sequence 0 of " << caches[0]->tokens()
                  << " tokens, " << kernel_name(attn) << ": largest error / tolerance " << worst << "\n";
      }
    }
    ++compared;
  });
  CHECK(compared >= 4);
}

TEST_CASE("decode attention on cuda handles head_dim 40 and 48 (channel tails per lane, a partial value group, key "
          "children across MMA chunks) and 8 query heads per KV head", "[cuda][attention]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  for (const std::int64_t d : {40, 48}) {  // 40: the fast kernel; 48: the tensor-core kernel (3 MMA tiles of 16)
    const LayerInput a = synthetic_input(1, 700, d, 8), b = synthetic_input(1, 37, d, 9);
    for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
      INFO(name << ", head_dim " << d);
      const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
      const KvCodec& codec = preset.codec;
      const LifecycleParams& lc = preset.lifecycle;
      const auto ca = filled_cache(codec, lc, a, 650, Execution::cuda());
      const auto cb = filled_cache(codec, lc, b, 37, Execution::cuda());
      const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
      const DecodeAttention attn(caches, Execution::cuda());
      CHECK(attn.tensor_cores() == (d == 48));
      const std::vector<float> q = random_queries(2, 8, d, 2.0f, 3);
      const std::vector<float> out = run_cuda(attn, q, 8, DType::f32);
      std::cout << "[cuda] " << name << ", D " << d << ", qpk 8: largest error / tolerance "
                << check_against_reference(caches, q, out, 8, arithmetic_of(attn)) << "\n";
    }
  }
}

TEST_CASE("decode attention on cuda with more than 8 query heads per KV head runs them in groups, for each kernel of the presets",
          "[cuda][attention]") {
  // 9, 12 and 16 query heads per KV head (DecodeAttention::query_head_groups: 5 + 4, 6 + 6, 8 + 8): the groups' queries
  // gathered into the staging buffer, run by the kernels (the fragment kernel for the fragment presets, the
  // tensor-core one for the others, the residual windows' kernels beside), and the outputs put back in place by
  // row-copy launches: one run per group (tables of one row per query row), and one run of a row per group (tables
  // of 2 query head groups). Batch 2 of different lengths, 1 and 2 query tokens, fp16 queries, fp32 and fp16 outputs,
  // the live hook's caches; against the reference and dequantize-then-attend within tolerance 6.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const std::int64_t d = 128;
  const LayerInput a = synthetic_input(4, 1000, d, 81), b = synthetic_input(4, 290, d, 82);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58", "kivi-2-fragment", "vidkv-k1.5-v1.58-fragment"}) {
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const auto ca = filled_cache(preset.codec, preset.lifecycle, a, 960, Execution::cuda(), ExactTokens::residual);
    const auto cb = filled_cache(preset.codec, preset.lifecycle, b, 290, Execution::cuda(), ExactTokens::residual);
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    for (const std::int64_t qpk : {9, 12, 16})  // 9: groups 5 + 4, the second's padding head zero in one run
      for (const std::int64_t groups : {1, 2})
      for (const std::int64_t n : {1, 2}) {
        const DecodeAttention attn(caches, Execution::cuda(), 0, DecodeAttention::FastKernel::tensor_cores, true, n, groups);
        INFO(name << ", " << qpk << " query heads per KV head, " << n << " query tokens, tables of " << groups
                  << " query head groups, " << kernel_name(attn));
        std::vector<float> q = random_queries(2 * n, 4 * qpk, d, 1.5f, 90 + static_cast<std::uint64_t>(qpk + n));
        for (auto& x : q) x = round_to_dtype(x, DType::f16);
        const std::vector<float> out = run_cuda(attn, q, 4 * qpk, DType::f16);
        const double worst = check_against_reference(caches, q, out, qpk, arithmetic_of(attn), n);
        std::cout << "[cuda] " << name << ", " << qpk << " query heads per KV head, " << n << " query tokens, "
                  << groups << " group(s) per row, " << kernel_name(attn) << ": largest error / tolerance " << worst << "\n";
        if (n == 1) {  // fp16 outputs: within half an ulp of the fp32 ones (the groups' staging keeps the output dtype)
          const std::vector<float> half = run_cuda(attn, q, 4 * qpk, DType::f16, DType::f16);
          for (std::size_t i = 0; i < out.size(); ++i) REQUIRE(half[i] == round_to_dtype(out[i], DType::f16));
        }
      }
  }
  // More (KV head, group) copies than one copy launch takes (copy_rows_batch: 16): 8 KV heads x 3 groups of 20 query
  // heads per KV head (7 + 7 + 6) = 24 copies each way, so two launches per direction, in one run and per group.
  const LayerInput wa = synthetic_input(8, 700, d, 83), wb = synthetic_input(8, 130, d, 84);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58-fragment"}) {
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const auto ca = filled_cache(preset.codec, preset.lifecycle, wa, 700, Execution::cuda(), ExactTokens::residual);
    const auto cb = filled_cache(preset.codec, preset.lifecycle, wb, 130, Execution::cuda(), ExactTokens::residual);
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    const std::int64_t qpk = 20;
    for (const std::int64_t groups : {1, 3}) {
      const DecodeAttention attn(caches, Execution::cuda(), 0, DecodeAttention::FastKernel::tensor_cores, true, 1, groups);
      INFO(name << ", 8 KV heads x " << qpk << " query heads, tables of " << groups << " query head groups, " << kernel_name(attn));
      std::vector<float> q = random_queries(2, 8 * qpk, d, 1.5f, 97 + static_cast<std::uint64_t>(groups));
      for (auto& x : q) x = round_to_dtype(x, DType::f16);
      const std::vector<float> out = run_cuda(attn, q, 8 * qpk, DType::f16);
      const double worst = check_against_reference(caches, q, out, qpk, arithmetic_of(attn));
      std::cout << "[cuda] " << name << ", 8 KV heads x " << qpk << " query heads, " << groups << " group(s) per row, "
                << kernel_name(attn) << ": largest error / tolerance " << worst << "\n";
    }
  }
}

TEST_CASE("decode attention on cuda reads the live hook's caches (only the residual window exact, in the data dtype)", "[cuda][attention]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const LayerInput a = synthetic_input(4, 1300, 128, 23), b = synthetic_input(4, 290, 128, 24);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58", "fp16", "kivi-2-fragment"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const KvCodec& codec = preset.codec;
    const LifecycleParams& lc = preset.lifecycle;
    const auto ca = filled_cache(codec, lc, a, 1200, Execution::cuda(), ExactTokens::residual);
    const auto cb = filled_cache(codec, lc, b, 250, Execution::cuda(), ExactTokens::residual);
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    const DecodeAttention attn(caches, Execution::cuda());
    // kivi-2-fragment: the residual windows (keys exact or in whole fragment tiles, values exact) through the general
    // kernel's compact instance, which reads the stores at their window offsets (capacity, first token).
    if (std::string(name) == "kivi-2-fragment" && attn.fragment() && !env_equals("VIDKV_CUDA_ATTENTION_COMPACT", "off")) {
      CHECK(attn.general_compact());
      CHECK(attn.general_tensor_cores() == !env_equals("VIDKV_CUDA_ATTENTION_RESIDUAL", "cuda_cores"));
    }
    for (const DType qtype : all_dtypes()) {
      std::vector<float> q = random_queries(2, 28, 128, 1.5f, 6);
      for (auto& x : q) x = round_to_dtype(x, qtype);
      const std::vector<float> out = run_cuda(attn, q, 28, qtype);
      std::cout << "[cuda] " << name << ", exact tokens residual, queries " << dtype_name(qtype)
                << ": largest error / tolerance " << check_against_reference(caches, q, out, 7, arithmetic_of(attn)) << "\n";
    }
  }
}

TEST_CASE("decode attention on cuda: the fragment presets' residual windows on the tensor cores, every token half and row half of their tiles", "[cuda][attention]") {
  // fragment_residual_kernel (decode_attention_fragment.cu) takes a narrow tile as one 8-row window of the fragment
  // kernel's MMAs: keys in a fragment tile from the token half and row half holding the tile's first token o (window
  // row g = the tile's token g - o % 8), exact keys from row 0. kivi-2-fragment: the window (KIVI: T - R, rounded down
  // to the lifecycle's value_block of 32) spans whole fragment tiles of its key blocks, so its narrow tiles start at
  // o = 0, 8, 16 and 24 (every token half and row half); o % 8 is 0 wherever these presets' blocks end (multiples of
  // 32 tokens), so the kernel's w0 > 0 path is not reached here. Eight sequences of different lengths and prefills
  // (1100 + k) give windows of different lengths, the last tile of each cut short, and exact-key tiles (the keys' own
  // residual) of different lengths; head_dim 128 and 64. vidkv-k1.5-v1.58-fragment (paper lifecycle: keys and values
  // leave the window together, so its tiles there have exact keys): head_dim 128. The live hook's caches (only the
  // window exact, fp16 stores), 7 and 1 query heads per KV head, 1 and 3 query tokens per sequence. A token read from
  // the wrong row or tile moves the output by a whole score difference, far above tolerance 6.
  VIDKV_REQUIRE_CUDA_DEVICE();
  for (const auto& [name, d] : {std::pair{"kivi-2-fragment", 128}, std::pair{"kivi-2-fragment", 64},
                                std::pair{"vidkv-k1.5-v1.58-fragment", 128}}) {
    const PresetCodec preset = preset_codec(name, CpuImplementation::reference);
    const KvCodec& codec = preset.codec;
    const LifecycleParams& lc = preset.lifecycle;
    std::vector<std::unique_ptr<LayerCache>> owned;
    std::vector<const LayerCache*> caches;
    for (int k = 0; k < 8; ++k) {
      const LayerInput in = synthetic_input(2, 1230 + 3 * k, static_cast<int>(d), 90 + static_cast<std::uint64_t>(k));
      owned.push_back(filled_cache(codec, lc, in, 1100 + k, Execution::cuda(), ExactTokens::residual));
      caches.push_back(owned.back().get());
    }
    for (const std::int64_t n : {1, 3}) {
      const DecodeAttention attn(caches, Execution::cuda(), 0, DecodeAttention::FastKernel::tensor_cores, true, n);
      REQUIRE(attn.fragment());
      const bool compact = !env_equals("VIDKV_CUDA_ATTENTION_COMPACT", "off");
      CHECK(attn.general_compact() == compact);
      CHECK(attn.general_tensor_cores() == (compact && !env_equals("VIDKV_CUDA_ATTENTION_RESIDUAL", "cuda_cores")));
      CHECK(attn.fast_tiles() < attn.tiles());  // the windows' tiles are there
      for (const std::int64_t qpk : {7, 1}) {
        INFO(name << ", head_dim " << d << ", " << n << " query tokens, qpk " << qpk);
        std::vector<float> q = random_queries(8 * n, 2 * qpk, d, 1.5f, 95 + static_cast<std::uint64_t>(qpk + n));
        for (auto& x : q) x = round_to_dtype(x, DType::f16);
        const std::vector<float> out = run_cuda(attn, q, 2 * qpk, DType::f16);
        const double worst = check_against_reference(caches, q, out, qpk, arithmetic_of(attn), n);
        std::cout << "[cuda] " << name << " residual windows, head_dim " << d << ", " << n
                  << " query tokens, qpk " << qpk << ", " << (attn.general_tensor_cores() ? "tensor cores" : "cuda cores")
                  << ": largest error / tolerance " << worst << "\n";
      }
    }
  }
}

TEST_CASE("decode attention on cuda writes fp16 outputs within half an ulp of the fp32 ones", "[cuda][attention]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  const PresetCodec preset = preset_codec("vidkv-k1.5-v1.58");
  const KvCodec& codec = preset.codec;
  const LifecycleParams& lc = preset.lifecycle;
  const LayerInput in = synthetic_input(4, 2100, 128, 31);
  const auto cache = filled_cache(codec, lc, in, 2000, Execution::cuda());
  const DecodeAttention attn({cache.get()}, Execution::cuda());
  const std::vector<float> q = random_queries(1, 28, 128, 1.0f, 5);
  const std::vector<float> f32 = run_cuda(attn, q, 28, DType::f32, DType::f32);
  const std::vector<float> f16 = run_cuda(attn, q, 28, DType::f32, DType::f16);
  for (std::size_t i = 0; i < f32.size(); ++i) REQUIRE(f16[i] == round_to_dtype(f32[i], DType::f16));
}

TEST_CASE("decode attention on cuda kept across decode steps (update) gives a fresh object's output bit for bit", "[cuda][attention]") {
  // The live cache's use: one DecodeAttention per layer, update() after each appended token. Its tables equal a
  // fresh construction's (the [cpu] test), so the same kernels on them must write the same bits; run twice per step
  // (the second run reuses the uploaded tables and the kept workspace) and compared with a fresh one-shot object of
  // the same side_stream choice (it sets the splits). The device tables go up patched (the changed entries as
  // kernel parameters) or whole (pinned memory); batch 1, the live bench's, must mostly patch.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const LayerInput a = synthetic_input(4, 700, 128, 25), b = synthetic_input(4, 400, 128, 26);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58", "vidkv-k1.5-v1.66-stp"}) {
    for (const bool side_stream : {true, false}) {
      for (const int batch : {1, 2}) {
        INFO(name << ", side_stream " << side_stream << ", batch " << batch);
        const PresetCodec preset = preset_codec(name);
        const KvCodec& codec = preset.codec;
        const LifecycleParams& lc = preset.lifecycle;
        auto make = [&] { return std::make_unique<LayerCache>(codec, lc, 4, 128, TokenContext{}, DType::f16, Execution::cuda(), ExactTokens::residual); };
        auto ca = make(), cb = make();
        append_tokens(*ca, a, 0, 600);
        append_tokens(*cb, b, 0, 300);
        const std::vector<const LayerCache*> both = {ca.get(), cb.get()};
        const std::vector<const LayerCache*> caches(both.begin(), both.begin() + batch);
        using Fast = DecodeAttention::FastKernel;
        DecodeAttention kept(caches, Execution::cuda(), 0, Fast::tensor_cores, side_stream);
        std::vector<float> q = random_queries(batch, 28, 128, 1.5f, 12);
        for (auto& x : q) x = round_to_dtype(x, DType::f16);  // the queries as the kernels read them
        constexpr std::int64_t kSteps = 70;
        for (std::int64_t step = 0; step < kSteps; ++step) {
          INFO("step " << step);
          append_tokens(*ca, a, 600 + step, 601 + step);
          append_tokens(*cb, b, 300 + step, 301 + step);
          kept.update(caches);
          const DecodeAttention fresh(caches, Execution::cuda(), 0, Fast::tensor_cores, side_stream);
          REQUIRE(kept.same_tables(fresh));
          const std::vector<float> want = run_cuda(fresh, q, 28, DType::f16);
          REQUIRE(run_cuda(kept, q, 28, DType::f16) == want);
          REQUIRE(run_cuda(kept, q, 28, DType::f16) == want);
          if (step == kSteps - 1) check_against_reference(caches, q, want, 7, arithmetic_of(kept));
        }
        const DecodeAttention::Uploads u = kept.uploads();
        CHECK(u.whole + u.patched + u.unchanged == kSteps + 1);  // the construction and every update
        // Both batches: each sequence's tiles have their own region, so sequence 0's residual tiles moving does not
        // move sequence 1's (which made every batch-2 step a whole upload before 2026-12-05).
        CHECK(u.patched > 4 * u.whole);
      }
    }
  }
}

TEST_CASE("decode attention on cuda kept across steps of several tokens (update with a count) gives a fresh object's output bit for bit",
          "[cuda][attention]") {
  // Steps of 1, 3, 3, 8, 1, 2, ... tokens per sequence, update(caches, n) after each, the fragment presets (their cut
  // tiles on the fragment kernel) and kivi-2 / vidkv-k1.5-v1.58 (the tensor-core kernel), batch 2, live-hook caches:
  // the kept object's device tables (patched or whole) must give a fresh object's bits, twice per step.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const LayerInput a = synthetic_input(4, 900, 128, 35), b = synthetic_input(4, 900, 128, 36);
  for (const char* name : {"kivi-2-fragment", "vidkv-k1.5-v1.58-fragment", "kivi-2", "vidkv-k1.5-v1.58"}) {
    INFO(name);
    const PresetCodec preset = preset_codec(name);
    auto make = [&] {
      return std::make_unique<LayerCache>(preset.codec, preset.lifecycle, 4, 128, TokenContext{}, DType::f16, Execution::cuda(),
                                          ExactTokens::residual);
    };
    auto ca = make(), cb = make();
    std::int64_t ta = 512, tb = 300;  // 512: the paper lifecycle quantizes it all (G = 32), so the first limits cut tiles
    append_tokens(*ca, a, 0, ta);
    append_tokens(*cb, b, 0, tb);
    const std::vector<const LayerCache*> caches{ca.get(), cb.get()};
    DecodeAttention kept(caches, Execution::cuda(), 0, DecodeAttention::FastKernel::tensor_cores, false, 1);
    const std::int64_t counts[] = {3, 1, 3, 8, 1, 2, 5, 8, 8, 4, 1, 7};
    for (int round = 0; round < 3; ++round) {
      for (const std::int64_t n : counts) {
        INFO("round " << round << ", step of " << n << " tokens at " << ta << " / " << tb);
        append_tokens(*ca, a, ta, ta + n);
        append_tokens(*cb, b, tb, tb + n);
        ta += n;
        tb += n;
        kept.update(caches, n);
        const DecodeAttention fresh(caches, Execution::cuda(), 0, DecodeAttention::FastKernel::tensor_cores, false, n);
        REQUIRE(kept.same_tables(fresh));
        std::vector<float> q = random_queries(2 * n, 28, 128, 1.5f, 40 + static_cast<std::uint64_t>(n));
        for (auto& x : q) x = round_to_dtype(x, DType::f16);
        const std::vector<float> want = run_cuda(fresh, q, 28, DType::f16);
        REQUIRE(run_cuda(kept, q, 28, DType::f16) == want);
        REQUIRE(run_cuda(kept, q, 28, DType::f16) == want);
        if (round == 2 && n == 8) check_against_reference(caches, q, want, 7, arithmetic_of(kept), n);
      }
    }
  }
}

TEST_CASE("decode attention on cuda: decode steps queued without a synchronise give each step's output", "[cuda][attention]") {
  // The live cache never synchronises between steps: step i's table patch (a kernel on the stream) must run after
  // step i - 1's attention kernels have read the tables, the side stream included. Cache A runs 12 steps of append +
  // update + run back to back, each output into its own buffer, and is synchronised once at the end; cache B, built
  // the same way, runs the same steps with a synchronise and a fresh object per step. Same tables and splits, so the
  // same bits.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const LayerInput in = synthetic_input(4, 700, 128, 27);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    for (const bool side_stream : {true, false}) {
      INFO(name << ", side_stream " << side_stream);
      const PresetCodec preset = preset_codec(name);
      auto make = [&] {
        auto c = std::make_unique<LayerCache>(preset.codec, preset.lifecycle, 4, 128, TokenContext{}, DType::f16, Execution::cuda(),
                                              ExactTokens::residual);
        append_tokens(*c, in, 0, 600);
        return c;
      };
      auto ca = make(), cb = make();
      using Fast = DecodeAttention::FastKernel;
      std::vector<float> q = random_queries(1, 28, 128, 1.5f, 14);
      for (auto& x : q) x = round_to_dtype(x, DType::f16);
      const std::vector<std::uint8_t> qb = to_dtype_bytes(q, DType::f16);
      DeviceBuffer dq = upload(qb);
      const TensorView qv{dq.data(), DType::f16, Device::cuda, {1, 28, 128}};
      constexpr int kSteps = 12;
      const std::size_t out_bytes = q.size() * sizeof(float);
      std::vector<DeviceBuffer> outs;
      DecodeAttention queued({ca.get()}, Execution::cuda(), 0, Fast::tensor_cores, side_stream);
      for (int step = 0; step < kSteps; ++step) {
        append_tokens(*ca, in, 600 + step, 601 + step);
        queued.update({ca.get()});
        outs.push_back(poisoned(out_bytes));
        queued.run(qv, TensorView{outs.back().data(), DType::f32, Device::cuda, {1, 28, 128}});
      }
      synchronize();
      for (int step = 0; step < kSteps; ++step) {
        INFO("step " << step);
        append_tokens(*cb, in, 600 + step, 601 + step);
        const DecodeAttention fresh({cb.get()}, Execution::cuda(), 0, Fast::tensor_cores, side_stream);
        const std::vector<float> want = run_cuda(fresh, q, 28, DType::f16);
        REQUIRE(from_dtype_bytes(download(outs[static_cast<std::size_t>(step)].data(), out_bytes), DType::f32) == want);
      }
      CHECK(queued.uploads().patched > 0);
    }
  }
}

TEST_CASE("decode attention on cuda kept across a batch that changes size and a failed update gives a fresh object's output",
          "[cuda][attention]") {
  // update() takes any batch (a server's batch changes between steps): 2 -> 1 -> 2 sequences, then an update that
  // fails (a sequence holding no tokens: ShapeError), after which run() refuses, then good updates at batch 1 again.
  // Every kept state's tables and output equal a fresh object's, bit for bit; the failed update leaves the device
  // tables unknown, so the next upload is whole (uploads()), and later one-token steps patch again.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const LayerInput a = synthetic_input(4, 700, 128, 31), b = synthetic_input(4, 400, 128, 32);
  for (const char* name : {"kivi-2", "vidkv-k1.5-v1.58"}) {
    for (const bool side_stream : {true, false}) {
      INFO(name << ", side_stream " << side_stream);
      const PresetCodec preset = preset_codec(name);
      auto make = [&] {
        return std::make_unique<LayerCache>(preset.codec, preset.lifecycle, 4, 128, TokenContext{}, DType::f16, Execution::cuda(),
                                            ExactTokens::residual);
      };
      auto ca = make(), cb = make(), empty = make();
      append_tokens(*ca, a, 0, 600);
      append_tokens(*cb, b, 0, 300);
      std::int64_t ta = 600, tb = 300;
      const auto step = [&] {
        append_tokens(*ca, a, ta, ta + 1);
        append_tokens(*cb, b, tb, tb + 1);
        ++ta, ++tb;
      };
      std::vector<float> q2 = random_queries(2, 28, 128, 1.5f, 15);
      for (auto& x : q2) x = round_to_dtype(x, DType::f16);
      const std::vector<float> q1(q2.begin(), q2.begin() + 28 * 128);
      using Fast = DecodeAttention::FastKernel;
      const std::vector<const LayerCache*> both = {ca.get(), cb.get()}, one = {ca.get()};
      DecodeAttention kept(both, Execution::cuda(), 0, Fast::tensor_cores, side_stream);
      const auto same_as_fresh = [&](const std::vector<const LayerCache*>& caches, const std::vector<float>& q) {
        const DecodeAttention fresh(caches, Execution::cuda(), 0, Fast::tensor_cores, side_stream);
        REQUIRE(kept.same_tables(fresh));
        REQUIRE(run_cuda(kept, q, 28, DType::f16) == run_cuda(fresh, q, 28, DType::f16));
      };
      same_as_fresh(both, q2);
      step();
      kept.update(one);
      same_as_fresh(one, q1);
      step();
      kept.update(both);
      same_as_fresh(both, q2);
      const DecodeAttention::Uploads before = kept.uploads();
      REQUIRE_THROWS_AS(kept.update({ca.get(), empty.get()}), ShapeError);
      REQUIRE_THROWS_AS(run_cuda(kept, q2, 28, DType::f16), ShapeError);
      step();
      kept.update(one);
      same_as_fresh(one, q1);
      const DecodeAttention::Uploads after = kept.uploads();
      CHECK(after.whole == before.whole + 1);
      for (int i = 0; i < 4; ++i) {  // one token per step at batch 1: patched again (the kept-across-steps test)
        step();
        kept.update(one);
        same_as_fresh(one, q1);
      }
      CHECK(kept.uploads().patched > after.patched);
    }
  }
}

namespace {

// run_cuda, except that a launch which never ends (a combine block waiting for general-kernel blocks that never
// come: the one-stream path's counters) stops the test binary with a message after `seconds` instead of hanging.
std::vector<float> run_cuda_or_stop(const DecodeAttention& attn, const std::vector<float>& q, std::int64_t q_heads, double seconds = 30.0) {
  const std::int64_t batch = attn.batch(), d = attn.head_dim();
  const std::vector<std::uint8_t> qb = to_dtype_bytes(q, DType::f16);
  DeviceBuffer dq = upload(qb);
  const std::size_t out_bytes = q.size() * sizeof(float);
  DeviceBuffer dout = poisoned(out_bytes);
  attn.run(TensorView{dq.data(), DType::f16, Device::cuda, {batch, q_heads, d}},
           TensorView{dout.data(), DType::f32, Device::cuda, {batch, q_heads, d}});
  const auto start = std::chrono::steady_clock::now();
  while (!stream_idle(nullptr)) {
    if (std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() > seconds) {
      std::cerr << "decode attention did not finish within " << seconds << " s (a combine block waiting for the general "
                << "kernel's blocks forever?): stopping the test binary\n";
      std::_Exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  synchronize();
  return from_dtype_bytes(download(dout.data(), out_bytes), DType::f32);
}

}  // namespace

TEST_CASE("decode attention on cuda: the general kernel beside the other on one stream through a batch walk 1, 2, 1, 3, 2 gives a fresh object's output",
          "[cuda][attention]") {
  // The one-stream path (DecodeAttention::GeneralKernel::one_stream, Hopper) counts the general kernel's blocks per
  // (sequence, KV head) on the device, and its combine blocks zero the counts again; rows that a smaller batch skips
  // must not fall behind (a first version's host-side running target did: the combine kernel then waited forever).
  // kivi-2 keeps a residual window, so its sequences have general tiles; at batch 1 their 16 blocks take at most 1/16
  // of the tensor-core kernel's wave on an H200 and run beside it, at batch 2 and 3 after it (DecodeAttention::update),
  // so the walk also switches between the two. The kept object, updated through the walk with one token per step,
  // equals a fresh object bit for bit at every step, and at batch 1 its path is the one the device allows.
  VIDKV_REQUIRE_CUDA_DEVICE();
  const PresetCodec preset = preset_codec("kivi-2");
  const LayerInput in[3] = {synthetic_input(4, 800, 128, 41), synthetic_input(4, 800, 128, 42), synthetic_input(4, 800, 128, 43)};
  std::vector<std::unique_ptr<LayerCache>> caches;
  std::int64_t t[3] = {700, 450, 333};
  for (int b = 0; b < 3; ++b) {
    caches.push_back(std::make_unique<LayerCache>(preset.codec, preset.lifecycle, 4, 128, TokenContext{}, DType::f16, Execution::cuda(),
                                                  ExactTokens::residual));
    append_tokens(*caches.back(), in[b], 0, t[b]);
  }
  std::vector<float> q3 = random_queries(3, 28, 128, 1.5f, 44);
  for (auto& x : q3) x = round_to_dtype(x, DType::f16);
  using Fast = DecodeAttention::FastKernel;
  using General = DecodeAttention::GeneralKernel;
  auto first = [&](int n) {
    std::vector<const LayerCache*> v;
    for (int b = 0; b < n; ++b) v.push_back(caches[static_cast<std::size_t>(b)].get());
    return v;
  };
  DecodeAttention kept(first(1), Execution::cuda(), 0, Fast::tensor_cores, false);
  int one_stream_at_1 = 0;
  for (const int n : {1, 2, 1, 3, 2, 2, 1}) {
    INFO("batch " << n);
    for (int b = 0; b < 3; ++b) {  // one token more in every sequence, in the batch or not
      append_tokens(*caches[static_cast<std::size_t>(b)], in[b], t[b], t[b] + 1);
      ++t[b];
    }
    kept.update(first(n));
    const DecodeAttention fresh(first(n), Execution::cuda(), 0, Fast::tensor_cores, false);
    REQUIRE(kept.same_tables(fresh));
    REQUIRE(kept.general_kernel() == fresh.general_kernel());
    const std::vector<float> q(q3.begin(), q3.begin() + n * 28 * 128);
    REQUIRE(run_cuda_or_stop(kept, q, 28) == run_cuda_or_stop(fresh, q, 28));
    if (n == 1) one_stream_at_1 += kept.general_kernel() == General::one_stream;
    CHECK(kept.general_kernel() != General::side_stream);  // side_stream false: never the second stream
  }
  const int cc = cuda_compute_capability(process_cuda_device() < 0 ? 0 : process_cuda_device());
  INFO("compute capability " << cc);
  // On compute capability 9.0 and newer the general tiles of batch 1 run beside on one stream (unless
  // VIDKV_CUDA_ATTENTION_ONE_STREAM=0 or VIDKV_NO_DEPENDENT_LAUNCH=1 turn it off): the walk's three batch-1 steps.
  if (cc >= 90 && std::getenv("VIDKV_CUDA_ATTENTION_ONE_STREAM") == nullptr &&
      std::getenv("VIDKV_NO_DEPENDENT_LAUNCH") == nullptr)
    CHECK(one_stream_at_1 == 3);
}

#ifdef VIDKV_WITH_CUDA  // calls decode_attention_fragment.cu directly (absent from a build without CUDA)
TEST_CASE("the fragment kernels' operands on the tensor cores: codes as fp16 subnormals give the integer codes' MMA sums within tolerance 6's alignment bound and movmatrix transposes the probabilities",
          "[cuda][attention]") {
  VIDKV_REQUIRE_CUDA_DEVICE();
  // What the fragment kernels' arithmetic rests on, on this device (attention_cuda::fragment_operand_check): an
  // mma.m16n8k16 whose A registers are the codes as fp16 subnormals (code 2^(s - 24), s = subnormal_row_shift: 2-bit
  // 4 in rows g and 6 in rows g + 8, 1-bit 8 and 9) and whose accumulator C carries the same row factors gives, times
  // subnormal_unscale, the MMA of the same codes as fp16 integers with C as it is, within the bound
  // decode_attention_tolerance.h 6. takes for it (the last paragraph: 17 2^-11 2^-s max(max |B|, 2^-14) for the
  // subnormal alignment, here with each row's own s), plus both MMAs' own truncation and rounding
  // (72 2^-23 of |C| + 16 max code max |B|). Not bit for bit: on an H100 (2026-12-06) most outputs differed in their low bits. A
  // subnormal code flushed to zero would miss the bound by orders of magnitude. Random words; words whose every field
  // is 1 (the slot of trit 0); B random fp16 including subnormals and zeros; C from 2^-90 (above where the scaled C
  // would fall below fp32's normal range) to 2^40, signed, or 0. And movmatrix's transpose against the 8 x 8 matrix of
  // halves the lanes hold (lane 4 r + c / 2, half c % 2 holds row r, column c), bit for bit.
  // B's columns (n = lane / 4 of the lanes holding them) span different exponent ranges, so that the bound, taken per
  // output column as the tolerance takes it (each head's own query or probabilities), is tested as such.
  std::mt19937_64 rng(17);
  std::uniform_int_distribution<int> exponent(0, 14), mantissa(0, 1023), sign(0, 1), chance(0, 9);
  std::uniform_real_distribution<double> magnitude(-90.0, 40.0);
  const auto random_half = [&](int column) -> std::uint32_t {
    const int e = chance(rng) == 0 ? 0 : std::min(30, exponent(rng) + 2 * column);  // a tenth subnormal (or zero)
    return static_cast<std::uint32_t>(sign(rng) << 15 | e << 10 | (chance(rng) == 0 ? 0 : mantissa(rng)));
  };
  const auto half_value = [](std::uint32_t pair, int which) {
    return static_cast<double>(half_bits_to_float(static_cast<std::uint16_t>(pair >> (16 * which))));
  };
  const int cases = 96;
  for (const int bits : {2, 1}) {
    CAPTURE(bits);
    std::vector<std::uint32_t> words(cases * 32), b(cases * 64);
    std::vector<float> c(cases * 128);
    for (int w = 0; w < cases; ++w)
      for (int l = 0; l < 32; ++l) {
        const std::size_t i = static_cast<std::size_t>(w) * 32 + l;
        words[i] = w % 4 == 3 ? (bits == 2 ? 0x55555555u : 0xFFFFFFFFu) : static_cast<std::uint32_t>(rng());
        b[2 * i] = random_half(l / 4) | random_half(l / 4) << 16;  // column l / 4 (PTX: b0, b1 of lane 4 n + t4)
        b[2 * i + 1] = random_half(l / 4) | random_half(l / 4) << 16;
        for (int r = 0; r < 4; ++r)
          c[4 * i + r] = chance(rng) == 0 ? 0.0f : static_cast<float>((sign(rng) ? -1.0 : 1.0) * std::exp2(magnitude(rng)));
      }
    const attention_cuda::FragmentOperandCheck out = attention_cuda::fragment_operand_check(words, b, c, bits);
    const int groups = 4 / bits;
    REQUIRE(out.subnormal.size() == static_cast<std::size_t>(cases) * groups * 32 * 4);
    const double code_max = bits == 2 ? 3.0 : 1.0;
    double worst = 0.0;
    std::size_t over = 0, nonzero = 0, differ = 0;
    for (int w = 0; w < cases; ++w) {
      double bmax[8] = {};  // per B column n: its 16 values, held by lanes 4 n .. 4 n + 3 (b0, b1, two halves each)
      for (int l = 0; l < 32; ++l)
        for (int x = 0; x < 4; ++x)
          bmax[l / 4] = std::max(bmax[l / 4], std::fabs(half_value(b[(static_cast<std::size_t>(w) * 32 + l) * 2 + x / 2], x % 2)));
      for (int k = 0; k < groups; ++k)
        for (int l = 0; l < 32; ++l)
          for (int r = 0; r < 4; ++r) {
            const std::size_t o = ((static_cast<std::size_t>(w) * groups + k) * 32 + l) * 4 + r;
            const double bm = bmax[2 * (l % 4) + (r % 2)];  // D entry r of lane l: column 2 t4 + r % 2
            const double cc = std::fabs(static_cast<double>(c[(static_cast<std::size_t>(w) * 32 + l) * 4 + r]));
            // the subnormal codes' alignment (6.) + both MMAs' own truncation of C and of normal terms (17 terms each
            // within 2^-23 of twice the largest, C's included) and their final roundings
            const double alignment = 17.0 * std::ldexp(0x1p-11, -attention_fragment::subnormal_row_shift(r / 2, bits));
            const double bound = alignment * std::max(bm, 0x1p-14) + 72.0 * 0x1p-23 * (cc + 16.0 * code_max * bm);
            const double diff = std::fabs(static_cast<double>(out.subnormal[o]) - static_cast<double>(out.integer[o]));
            worst = std::max(worst, diff / bound);
            over += !(diff <= bound);
            nonzero += out.integer[o] != 0.0f;
            differ += std::memcmp(&out.subnormal[o], &out.integer[o], 4) != 0;
          }
    }
    std::cout << "fragment operands, " << bits << "-bit codes: " << differ << " of " << out.subnormal.size()
              << " MMA outputs differ from the integer codes'; largest difference / bound " << worst << "\n";
    CHECK(over == 0);
    CHECK(nonzero > out.integer.size() / 2);  // the sums are not trivially zero
    std::size_t wrong = 0;
    for (int w = 0; w < cases; ++w)
      for (int l = 0; l < 32; ++l) {
        const auto half = [&](int r, int col) {  // element (r, col) of case w's matrix
          return (words[static_cast<std::size_t>(w) * 32 + 4 * r + col / 2] >> (16 * (col % 2))) & 0xFFFFu;
        };
        const std::uint32_t want = half(2 * (l % 4), l / 4) | half(2 * (l % 4) + 1, l / 4) << 16;
        wrong += out.transposed[static_cast<std::size_t>(w) * 32 + l] != want;
      }
    CHECK(wrong == 0);
  }
  CHECK_THROWS_AS(attention_cuda::fragment_operand_check(std::vector<std::uint32_t>(32), std::vector<std::uint32_t>(64),
                                                         std::vector<float>(128), 3),
                  ShapeError);
}
#endif
