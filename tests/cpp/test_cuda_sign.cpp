// sign on CUDA (plugins/quantizers/sign/sign_cuda.h) against the CPU reference (test::builtin_registry(reference)), on
// fp32, fp16 and bf16 device inputs (the reference encodes the same values, converted exactly to fp32), on shapes
// with tail groups, odd channel counts and several heads. Output buffers are poisoned (0xAB) with 64 guard bytes
// on each side before every kernel, so unwritten or overwritten bytes show.
//   fft off: bytes bit-identical for every axis, reconstruction, layout, scale dtype and group size (incl. tails);
//            the CUDA decode of the reference's bytes equals the reference decode rounded to the output dtype.
//   fft complex / real: within the named bounds of tests/cpp/sign_fft_compare.h (bits differ only near 0, scales
//            within the propagated error, decodes within the inverse bounds), with the bound of the path that ran
//            (tier "sign:cuda+fft-tile": the AVX-512 transform's bound, where this host has AVX-512 the CPU
//            optimised path's bytes and decodes bit for bit, and the same shapes once more through cuFFT;
//            "sign:cuda+cufft": the library bound). The tiers are inexact; bytes at odd addresses give the same
//            results; the cuFFT plan cache serves several host threads on their own streams at once.
//   channel subsets (SignQuantizer::encode_cuda_channels / decode_cuda_channels, for composites): the bytes of the gathered
//            block, and a decode that writes exactly the indexed channels.
// Without a GPU every test skips visibly (VIDKV_SKIP).
#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "catch.h"
#include "test_registry.h"
#include "quantizer_test_helpers.h"
#include "sign_fft_compare.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/execution.h"
#include "vidkv/plugins/quantizers/sign/sign.h"
#include "vidkv/quantization/simd/cpu_features.h"

#ifdef VIDKV_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace vidkv;
using namespace vidkv::test;
namespace cmp = vidkv::test::sign_fft_compare;

namespace {

constexpr std::size_t kGuard = 64;
constexpr int kPoison = 0xAB;

void require_gpu() {
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
}

// Gaussian values with outlier channels, constant, all-zero and signed-zero stretches; scales stay within fp16.
std::vector<float> block_values(const BlockShape& s, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> x(static_cast<std::size_t>(s.elements()));
  for (std::int64_t i = 0; i < s.elements(); ++i) {
    const std::int64_t t = (i / s.channels) % s.tokens, c = i % s.channels;
    float v = g(rng);
    if (c % 7 == 3) v *= 20.0f;
    if (t % 11 == 5) v = 0.5f;
    if (t % 13 == 6) v = 0.0f;
    if (t % 17 == 8 && c % 2 == 0) v = -0.0f;
    x[static_cast<std::size_t>(i)] = v;
  }
  return x;
}

// The values in `dtype` (rounded to nearest even) as raw bytes, and the fp32 values they stand for.
struct HostInput {
  std::vector<std::uint8_t> bytes;
  std::vector<float> values;
};
HostInput as_dtype(const std::vector<float>& x, DType t) {
  HostInput h;
  h.bytes.resize(x.size() * dtype_size(t));
  h.values.resize(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    store_from_float(h.bytes.data(), t, i, x[i]);
    h.values[i] = load_as_float(h.bytes.data(), t, i);
  }
  return h;
}

const char* dtype_str(DType t) { return t == DType::f32 ? "fp32" : (t == DType::f16 ? "fp16" : "bf16"); }

// Encodes `in` (host bytes of dtype t) on the GPU into a poisoned buffer with `kGuard` guard bytes on each side;
// returns the whole buffer (no assertions: also called from other threads). `offset` shifts the output inside its
// allocation (1: an unaligned output).
std::vector<std::uint8_t> cuda_encode_guarded(const Quantizer& q, const BlockShape& s, const HostInput& in, DType t, std::size_t bytes,
                                              void* stream = nullptr, std::size_t offset = 0) {
  DeviceBuffer d_in(in.bytes.size(), stream);
  copy_to_device(d_in.data(), in.bytes.data(), in.bytes.size(), stream);
  DeviceBuffer d_out(bytes + 2 * kGuard + offset, stream);
  fill_device(d_out.data(), kPoison, d_out.bytes(), stream);
  const TensorView view{d_in.data(), t, Device::cuda, {s.heads, s.tokens, s.channels}};
  q.encode_view(view, TokenContext{}, d_out.as<std::uint8_t>() + kGuard + offset, Execution::cuda(stream));
  std::vector<std::uint8_t> all(d_out.bytes());
  copy_to_host(all.data(), d_out.data(), all.size(), stream);
  return all;
}

// The encoded bytes out of a guarded buffer, after checking its guards.
std::vector<std::uint8_t> unguard(const std::vector<std::uint8_t>& all, std::size_t bytes, std::size_t offset = 0) {
  REQUIRE(all.size() == bytes + 2 * kGuard + offset);
  for (std::size_t i = 0; i < kGuard + offset; ++i) REQUIRE(all[i] == kPoison);
  for (std::size_t i = kGuard + offset + bytes; i < all.size(); ++i) REQUIRE(all[i] == kPoison);
  return {all.begin() + std::ptrdiff_t(kGuard + offset), all.begin() + std::ptrdiff_t(kGuard + offset + bytes)};
}

std::vector<std::uint8_t> cuda_encode(const Quantizer& q, const BlockShape& s, const HostInput& in, DType t, std::size_t bytes,
                                      std::size_t offset = 0) {
  return unguard(cuda_encode_guarded(q, s, in, t, bytes, nullptr, offset), bytes, offset);
}

// Decodes host bytes on the GPU (placed `offset` bytes into their allocation) into a poisoned, guarded buffer of
// dtype t; returns the values as fp32.
std::vector<float> cuda_decode(const Quantizer& q, const BlockShape& s, const std::vector<std::uint8_t>& bytes, DType t,
                               std::size_t offset = 0) {
  DeviceBuffer d_in(bytes.size() + offset);
  copy_to_device(d_in.as<std::uint8_t>() + offset, bytes.data(), bytes.size());
  const std::size_t out_bytes = static_cast<std::size_t>(s.elements()) * dtype_size(t);
  DeviceBuffer d_out(out_bytes + 2 * kGuard);
  fill_device(d_out.data(), kPoison, d_out.bytes());
  const TensorView view{d_out.as<std::uint8_t>() + kGuard, t, Device::cuda, {s.heads, s.tokens, s.channels}};
  q.decode_view(d_in.as<std::uint8_t>() + offset, TokenContext{}, view, Execution::cuda());
  std::vector<std::uint8_t> all(d_out.bytes());
  copy_to_host(all.data(), d_out.data(), all.size());
  for (std::size_t i = 0; i < kGuard; ++i) REQUIRE(all[i] == kPoison);
  for (std::size_t i = kGuard + out_bytes; i < all.size(); ++i) REQUIRE(all[i] == kPoison);
  std::vector<float> y(static_cast<std::size_t>(s.elements()));
  for (std::size_t i = 0; i < y.size(); ++i) y[i] = load_as_float(all.data() + kGuard, t, i);
  return y;
}

const std::vector<BlockShape>& off_shapes() {
  static const std::vector<BlockShape> s{{1, 32, 8}, {2, 45, 16}, {1, 7, 3},   {3, 64, 128},
                                         {4, 300, 128}, {2, 77, 13}, {1, 1, 5}, {2, 64, 40}};
  return s;
}

}  // namespace

TEST_CASE("sign on CUDA, fft off: the reference's bytes and decodes for every parameter combination", "[cuda][sign]") {
  require_gpu();
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  std::vector<KeyValues> configs;
  for (const char* axis : {"channel", "token"})
    for (const char* layout : {"dense", "release"})
      for (const char* group : {"32", "7", "64"}) configs.push_back({{"axis", axis}, {"layout", layout}, {"group", group}});
  configs.push_back({{"reconstruction", "symmetric"}});
  configs.push_back({{"reconstruction", "symmetric"}, {"axis", "token"}, {"scale_dtype", "fp32"}});
  configs.push_back({{"scale_dtype", "fp32"}, {"layout", "release"}, {"group", "1"}});
  std::uint64_t seed = 81000;
  for (const auto& kv : configs) {
    const auto block = quantizer_block("sign", kv);
    const auto ref = ref_registry.make_quantizer(block);
    const auto gpu = test::builtin_registry().make_quantizer(block);
    for (const auto& shape : off_shapes()) {
      CHECK(gpu->tier(Device::cuda, shape).name == "sign:cuda");
      CHECK(gpu->tier(Device::cuda, shape).exact);
      for (DType t : {DType::f32, DType::f16, DType::bf16}) {
        ++seed;
        INFO(block.dump() << ", shape " << shape.str() << ", input " << dtype_str(t) << ", seed " << seed);
        const HostInput in = as_dtype(block_values(shape, seed), t);
        const auto ref_bytes = encode(*ref, shape, in.values);
        const auto gpu_bytes = cuda_encode(*gpu, shape, in, t, ref_bytes.size());
        std::size_t first = ref_bytes.size();
        for (std::size_t i = 0; i < ref_bytes.size(); ++i)
          if (ref_bytes[i] != gpu_bytes[i]) {
            first = i;
            break;
          }
        INFO("first differing byte " << first << " of " << ref_bytes.size());
        CHECK(first == ref_bytes.size());
        // An output at an odd address (a composite's section): word stores go byte by byte, the same bytes.
        if (t == DType::f16) CHECK(cuda_encode(*gpu, shape, in, t, ref_bytes.size(), 1) == ref_bytes);

        // Decode of the reference's bytes into the input's dtype: the reference decode rounded to it.
        const auto ref_y = decode(*ref, shape, ref_bytes);
        const auto gpu_y = cuda_decode(*gpu, shape, ref_bytes, t);
        std::size_t bad = 0;
        for (std::size_t i = 0; i < ref_y.size(); ++i) {
          const float want = round_to_dtype(ref_y[i], t);
          if (std::memcmp(&want, &gpu_y[i], sizeof(float)) != 0) ++bad;
        }
        CHECK(bad == 0);
        if (t == DType::f16) CHECK(cuda_decode(*gpu, shape, ref_bytes, t, 1) == gpu_y);  // bytes at an odd address
      }
    }
  }
}

TEST_CASE("sign on CUDA, fft complex / real: bits near 0, scales and decodes within the named bounds", "[cuda][sign][fft]") {
  require_gpu();
  using group_format::CodeLayout;
  using group_format::GroupAxis;
  using sign_format::Reconstruction;
  struct Case {
    KeyValues kv;
    cmp::Setup st;
  };
  const std::vector<Case> cases{
      {{{"fft", "real"}}, {SignFft::real, GroupAxis::channel, CodeLayout::dense, DType::f16, Reconstruction::zero_one, 32}},
      {{{"fft", "complex"}, {"layout", "release"}},
       {SignFft::complex, GroupAxis::channel, CodeLayout::release, DType::f16, Reconstruction::zero_one, 32}},
      {{{"fft", "real"}, {"axis", "token"}, {"scale_dtype", "fp32"}},
       {SignFft::real, GroupAxis::token, CodeLayout::dense, DType::f32, Reconstruction::zero_one, 32}},
      {{{"fft", "complex"}, {"reconstruction", "symmetric"}, {"group", "7"}},
       {SignFft::complex, GroupAxis::channel, CodeLayout::dense, DType::f16, Reconstruction::symmetric, 7}},
      {{{"fft", "real"}, {"reconstruction", "symmetric"}, {"layout", "release"}},
       {SignFft::real, GroupAxis::channel, CodeLayout::release, DType::f16, Reconstruction::symmetric, 32}},
      {{{"fft", "complex"}, {"axis", "token"}, {"group", "5"}},
       {SignFft::complex, GroupAxis::token, CodeLayout::dense, DType::f16, Reconstruction::zero_one, 5}},
  };
  // Power-of-two widths with whole groups (fused tiles), and tails, odd and large-prime widths (cuFFT).
  const std::vector<BlockShape> shapes{{2, 64, 64}, {1, 256, 128}, {3, 32, 16}, {1, 96, 32}, {1, 37, 32}, {2, 64, 60},
                                       {1, 33, 97}, {1, 16, 131},  {2, 64, 1},  {1, 5, 2},   {2, 45, 17}};
  const PluginRegistry& ref_registry = test::builtin_registry(CpuImplementation::reference);
  const PluginRegistry& opt_registry = test::builtin_registry(CpuImplementation::optimized);
  const bool avx = simd::avx512_kernels();
  std::uint64_t seed = 82000;
  for (const auto& cs : cases) {
    const auto block = quantizer_block("sign", cs.kv);
    const auto ref = ref_registry.make_quantizer(block);
    const auto opt = opt_registry.make_quantizer(block);
    const auto gpu = test::builtin_registry().make_quantizer(block);
    const cmp::Setup st = cmp::setup_of(dynamic_cast<const SignQuantizer&>(*gpu).params());
    REQUIRE((st.fft == cs.st.fft && st.axis == cs.st.axis && st.layout == cs.st.layout && st.scale_dtype == cs.st.scale_dtype &&
             st.reconstruction == cs.st.reconstruction && st.group == cs.st.group));
    for (const auto& shape : shapes) {
      std::string why;
      if (shape.channels == 131) {  // prime > 127: cuFFT's Bluestein path, refused (sign.h SignQuantizer::supports)
        CHECK_FALSE(gpu->supports(Device::cuda, shape, &why));
        CHECK(why.find("Bluestein") != std::string::npos);
        continue;
      }
      REQUIRE(gpu->supports(Device::cuda, shape, &why));
      const KernelTier tier = gpu->tier(Device::cuda, shape);
      CHECK_FALSE(tier.exact);
      const bool tile = cmp::bound_of_tier(tier.name) == cmp::FftBound::tile;
      if (!tile) CHECK(tier.name == "sign:cuda+cufft");
      for (DType t : {DType::f32, DType::f16, DType::bf16}) {
        ++seed;
        INFO(block.dump() << ", shape " << shape.str() << ", input " << dtype_str(t) << ", tier " << tier.name << ", seed " << seed);
        const HostInput in = as_dtype(block_values(shape, seed), t);
        const auto ref_bytes = encode(*ref, shape, in.values);
        const auto gpu_bytes = cuda_encode(*gpu, shape, in, t, ref_bytes.size());
        const auto ref_y = decode(*ref, shape, ref_bytes);
        const auto gpu_on_ref = cuda_decode(*gpu, shape, ref_bytes, t);
        const auto gpu_on_gpu = cuda_decode(*gpu, shape, gpu_bytes, t);
        const auto rep = cmp::compare(cs.st, shape, in.values, ref_bytes, gpu_bytes, tile ? cmp::FftBound::tile : cmp::FftBound::library,
                                      ref_y, gpu_on_ref, gpu_on_gpu, t);
        INFO(rep.str());
        CHECK(rep.ok());
        if (t == DType::f16) {
          // Bytes at an odd address (a composite's section): word stores and loads go byte by byte, same results.
          CHECK(cuda_encode(*gpu, shape, in, t, ref_bytes.size(), 1) == gpu_bytes);
          CHECK(cuda_decode(*gpu, shape, gpu_bytes, t, 1) == gpu_on_gpu);
        }
        if (tile && avx) {
          // The fused kernels perform the AVX-512 transform's operations: the CPU optimised path's bits exactly.
          CHECK(encode(*opt, shape, in.values) == gpu_bytes);
          if (t == DType::f32) CHECK(decode(*opt, shape, gpu_bytes) == gpu_on_gpu);
        }
        if (tile && t == DType::f16 && std::getenv("VIDKV_CUDA_SIGN_FFT") == nullptr) {
          // The same shape through cuFFT (VIDKV_CUDA_SIGN_FFT=cufft, sign_cuda.h): within the library bound.
          setenv("VIDKV_CUDA_SIGN_FFT", "cufft", 1);
          REQUIRE(gpu->tier(Device::cuda, shape).name == "sign:cuda+cufft");
          const auto cufft_bytes = cuda_encode(*gpu, shape, in, t, ref_bytes.size());
          const auto cufft_rep = cmp::compare(cs.st, shape, in.values, ref_bytes, cufft_bytes, cmp::FftBound::library, ref_y,
                                              cuda_decode(*gpu, shape, ref_bytes, t), cuda_decode(*gpu, shape, cufft_bytes, t), t);
          unsetenv("VIDKV_CUDA_SIGN_FFT");
          INFO("through cuFFT: " << cufft_rep.str());
          CHECK(cufft_rep.ok());
        }
      }
    }
  }
}

TEST_CASE("sign on CUDA, cuFFT plans: one cache serves several host threads on their own streams", "[cuda][sign][fft]") {
  require_gpu();
#ifdef VIDKV_WITH_CUDA
  const auto gpu = test::builtin_registry().make_quantizer(quantizer_block("sign", {{"fft", "real"}}));
  const BlockShape shape{2, 300, 60};  // cuFFT (n = 60), 600 token rows: batches 512, 64, 16, 8
  REQUIRE(gpu->tier(Device::cuda, shape).name == "sign:cuda+cufft");
  const HostInput in = as_dtype(block_values(shape, 83001), DType::f16);
  const std::size_t bytes = gpu->layout(shape, TokenContext{}).bytes();
  const auto want = cuda_encode(*gpu, shape, in, DType::f16, bytes);
  constexpr int kThreads = 4;
  std::vector<std::vector<std::uint8_t>> got(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i)
    threads.emplace_back([&, i] {
      try {
        cudaStream_t stream = nullptr;
        cuda_check(cudaStreamCreate(&stream), "cudaStreamCreate");
        for (int rep = 0; rep < 5; ++rep) got[std::size_t(i)] = cuda_encode_guarded(*gpu, shape, in, DType::f16, bytes, stream);
        cuda_check(cudaStreamDestroy(stream), "cudaStreamDestroy");
      } catch (const std::exception& e) {
        errors[std::size_t(i)] = e.what();
      }
    });
  for (auto& th : threads) th.join();
  for (int i = 0; i < kThreads; ++i) {
    INFO("thread " << i << ": " << errors[std::size_t(i)]);
    CHECK(errors[std::size_t(i)].empty());
    CHECK(unguard(got[std::size_t(i)], bytes) == want);
  }
#endif
}

TEST_CASE("sign on CUDA, channel subsets: the gathered block's bytes, a decode into the indexed channels only", "[cuda][sign]") {
  require_gpu();
#ifdef VIDKV_WITH_CUDA
  // 128 channels of fp16: rows of 256 bytes, the fused encode stages them in shared memory; 100 channels: rows of
  // 200 bytes, not 16-byte multiples, loaded element by element. k = 64 / 32: fused tiles (FFT), 60 / 30: cuFFT.
  struct Sub {
    std::int64_t channels;
    std::vector<std::int64_t> ks;
  };
  for (const Sub& sc : {Sub{128, {64, 60, 32}}, Sub{100, {32, 30}}})
  for (const KeyValues& kv : std::vector<KeyValues>{{}, {{"fft", "real"}}, {{"fft", "complex"}}, {{"fft", "real"}, {"axis", "token"}}}) {
    const BlockShape full{2, 64, sc.channels};
    const HostInput in = as_dtype(block_values(full, 84001), DType::f16);
    for (std::int64_t k : sc.ks) {
      const auto block = quantizer_block("sign", kv);
      INFO(block.dump() << ", " << k << " of " << full.channels << " channels");
      const auto q = test::builtin_registry().make_quantizer(block);
      const auto& sign = dynamic_cast<const SignQuantizer&>(*q);
      std::vector<std::int32_t> index;
      for (std::int32_t c = 1; std::int64_t(index.size()) < k; c += 2) index.push_back(c);  // the first k odd channels
      const BlockShape sub{full.heads, full.tokens, k};
      HostInput gathered;
      gathered.bytes.resize(std::size_t(sub.elements()) * 2);
      for (std::int64_t row = 0; row < full.heads * full.tokens; ++row)
        for (std::int64_t c = 0; c < k; ++c)
          std::memcpy(&gathered.bytes[std::size_t(row * k + c) * 2], &in.bytes[std::size_t(row * full.channels + index[std::size_t(c)]) * 2], 2);
      const std::size_t bytes = q->layout(sub, TokenContext{}).bytes();
      const auto want = cuda_encode(*q, sub, gathered, DType::f16, bytes);

      DeviceBuffer d_index(index.size() * sizeof(std::int32_t));
      copy_to_device(d_index.data(), index.data(), index.size() * sizeof(std::int32_t));
      DeviceBuffer d_in(in.bytes.size());
      copy_to_device(d_in.data(), in.bytes.data(), in.bytes.size());
      DeviceBuffer d_out(bytes);
      fill_device(d_out.data(), kPoison, bytes);
      const TensorView full_in{d_in.data(), DType::f16, Device::cuda, {full.heads, full.tokens, full.channels}};
      sign.encode_cuda_channels(full_in, d_index.as<std::int32_t>(), k, TokenContext{}, d_out.as<std::uint8_t>(), nullptr);
      std::vector<std::uint8_t> got(bytes);
      copy_to_host(got.data(), d_out.data(), bytes);
      CHECK(got == want);

      // Decode into the indexed channels of a poisoned full block.
      const auto want_y = cuda_decode(*q, sub, want, DType::f16);
      DeviceBuffer d_y(in.bytes.size());
      fill_device(d_y.data(), kPoison, d_y.bytes());
      const TensorView full_out{d_y.data(), DType::f16, Device::cuda, {full.heads, full.tokens, full.channels}};
      sign.decode_cuda_channels(d_out.as<std::uint8_t>(), d_index.as<std::int32_t>(), k, TokenContext{}, full_out, nullptr);
      std::vector<std::uint8_t> y(in.bytes.size());
      copy_to_host(y.data(), d_y.data(), y.size());
      std::vector<bool> selected(std::size_t(full.channels), false);
      for (std::int32_t c : index) selected[std::size_t(c)] = true;
      std::size_t wrong = 0, touched = 0;
      for (std::int64_t row = 0; row < full.heads * full.tokens; ++row) {
        for (std::int64_t c = 0; c < full.channels; ++c) {
          const std::size_t at = std::size_t(row * full.channels + c) * 2;
          if (!selected[std::size_t(c)]) {
            if (y[at] != kPoison || y[at + 1] != kPoison) ++touched;
            continue;
          }
          const std::size_t pos = std::size_t(std::find(index.begin(), index.end(), std::int32_t(c)) - index.begin());
          if (load_as_float(y.data(), DType::f16, at / 2) != want_y[std::size_t(row * k) + pos]) ++wrong;
        }
      }
      CHECK(wrong == 0);
      CHECK(touched == 0);
    }
  }
#endif
}
