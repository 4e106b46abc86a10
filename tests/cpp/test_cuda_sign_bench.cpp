// A hidden benchmark (tag [.cuda-bench]: never run by ctest, which does not list hidden tests; asserts nothing about
// speed): sign's CUDA encode and decode at the shapes of the presets' sign parts, both FFT paths, as GB/s of fp16
// input and as a fraction of the device-to-device copy bandwidth measured in the same run. For the lead's choice
// between the fused tiles and cuFFT (sign_cuda.h); the figures come from `vidkv bench --backend cuda`.
//   ./build/bin/vidkv_tests "[.cuda-bench]"
// Timing: CUDA events around each of 20 calls after 3 warm-up calls, the median; each call works on the next of 4
// copies of the buffers (64 or 128 MiB of fp16 input in all, beyond the H200's 50 MiB L2), the copy likewise.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "catch.h"
#include "quantizer_test_helpers.h"
#include "vidkv/core/cuda/cuda_device.h"
#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/execution.h"

#ifdef VIDKV_WITH_CUDA
#include <cuda_runtime.h>
#endif

using namespace vidkv;
using namespace vidkv::test;

#ifdef VIDKV_WITH_CUDA
namespace {

constexpr int kSets = 4;  // buffer sets rotated through, so that the timed calls do not hit the L2

// Median milliseconds of `reps` calls f(k) on the default stream, k the buffer set of the call.
template <class F>
double median_ms(F f, int reps = 20) {
  for (int i = 0; i < 3; ++i) f(i % kSets);
  cudaEvent_t start, stop;
  cuda_check(cudaEventCreate(&start), "cudaEventCreate");
  cuda_check(cudaEventCreate(&stop), "cudaEventCreate");
  std::vector<double> ms;
  for (int i = 0; i < reps; ++i) {
    cuda_check(cudaEventRecord(start), "cudaEventRecord");
    f(i % kSets);
    cuda_check(cudaEventRecord(stop), "cudaEventRecord");
    cuda_check(cudaEventSynchronize(stop), "cudaEventSynchronize");
    float t = 0;
    cuda_check(cudaEventElapsedTime(&t, start, stop), "cudaEventElapsedTime");
    ms.push_back(t);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace
#endif

TEST_CASE("sign on CUDA: encode / decode throughput against the copy bandwidth", "[.cuda-bench]") {
  std::string why;
  if (cuda_device_count(&why) == 0) VIDKV_SKIP("no CUDA device: " << why);
#ifdef VIDKV_WITH_CUDA
  struct Row {
    const char* what;
    KeyValues kv;
    BlockShape shape;
    bool force_cufft;
  };
  const std::vector<Row> rows{
      {"k1.5 low keys, fft real, fused", {{"fft", "real"}}, {4, 32768, 64}, false},
      {"k1.5 low keys, fft real, cuFFT", {{"fft", "real"}}, {4, 32768, 64}, true},
      {"vidkv-1 keys, fft real, fused", {{"fft", "real"}}, {4, 32768, 128}, false},
      {"vidkv-1 keys, fft real, cuFFT", {{"fft", "real"}}, {4, 32768, 128}, true},
      {"release keys, fft complex, fused", {{"fft", "complex"}, {"layout", "release"}}, {4, 32768, 64}, false},
      {"vidkv-1 values, fft off", {}, {4, 32768, 128}, false},
  };
  std::printf("%-36s %10s %10s %10s %10s %10s\n", "sign block [4 x 32768 x n] fp16", "tier", "enc GB/s", "dec GB/s",
              "e+d GB/s", "e+d/copy");
  for (const Row& row : rows) {
    const auto q = make("sign", row.kv);
    if (row.force_cufft) setenv("VIDKV_CUDA_SIGN_FFT", "cufft", 1);
    const std::string tier = q->tier(Device::cuda, row.shape).name;
    const std::size_t in_bytes = static_cast<std::size_t>(row.shape.elements()) * 2;
    const std::size_t packed = q->layout(row.shape, TokenContext{}).bytes();
    const auto x = gaussian(static_cast<std::size_t>(row.shape.elements()), 1234);
    std::vector<std::uint16_t> half(x.size());
    for (std::size_t i = 0; i < x.size(); ++i) half[i] = float_to_half_bits(x[i]);
    std::vector<DeviceBuffer> d_in, d_out, d_packed;
    std::vector<TensorView> in, out;
    for (int k = 0; k < kSets; ++k) {
      d_in.emplace_back(in_bytes);
      d_out.emplace_back(in_bytes);
      d_packed.emplace_back(packed);
      copy_to_device(d_in.back().data(), half.data(), in_bytes);
      in.push_back(TensorView{d_in.back().data(), DType::f16, Device::cuda, {row.shape.heads, row.shape.tokens, row.shape.channels}});
      out.push_back(TensorView{d_out.back().data(), DType::f16, Device::cuda, {row.shape.heads, row.shape.tokens, row.shape.channels}});
    }
    const double enc = median_ms([&](int k) {
      q->encode_view(in[std::size_t(k)], TokenContext{}, d_packed[std::size_t(k)].as<std::uint8_t>(), Execution::cuda());
    });
    const double dec = median_ms([&](int k) {
      q->decode_view(d_packed[std::size_t(k)].as<std::uint8_t>(), TokenContext{}, out[std::size_t(k)], Execution::cuda());
    });
    const double copy = median_ms([&](int k) { copy_device_to_device(d_out[std::size_t(k)].data(), d_in[std::size_t(k)].data(), in_bytes); });
    synchronize();
    if (row.force_cufft) unsetenv("VIDKV_CUDA_SIGN_FFT");
    const double gb = double(in_bytes) / 1e9;
    // Copy bandwidth as GB/s of the tensor copied; encode + decode as GB/s of the fp16 input per round trip.
    std::printf("%-36s %10s %10.0f %10.0f %10.0f %10.2f\n", row.what, tier.substr(5).c_str(), gb / (enc / 1e3), gb / (dec / 1e3),
                gb / ((enc + dec) / 1e3), copy / (enc + dec));
  }
  std::printf("copy = cudaMemcpyAsync device to device of the same fp16 block, median of 20\n");
#endif
}
