// mixed_channel on CUDA, fused (mixed_channel_fused.h): the entry points. The kernels and their launchers are in
// mixed_channel_fused_kernels.cuh, compiled by bit width in mixed_channel_fused_bits{1,2,4,8}.cu.
#include <cuda_runtime.h>

#include <atomic>
#include <type_traits>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/env_switch.h"
#include "vidkv/core/error.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused.h"
#include "vidkv/plugins/quantizers/mixed_channel/mixed_channel_fused_kernels.cuh"

namespace vidkv::mixed_channel_fused {

namespace {

using group_format::CodeLayout;
using kernels::Args;
using kernels::kTile;

std::atomic<std::int64_t> fused_launches{0};
std::atomic<std::int64_t> first_launches{0};  // of those, first versions

// VIDKV_CUDA_FUSED_ENCODE=first / VIDKV_CUDA_FUSED_DECODE=first select the kernels' first versions (A / B
// measurements; the same bytes and values), counted in first_launches once launched. Read per launch: the tests
// switch them.
bool first_version(const char* variable) { return env_equals(variable, "first"); }

// Counts a launch that the launchers made (they throw instead where they launch nothing).
void count_launch(const kernels::Launch& l) {
  fused_launches.fetch_add(1, std::memory_order_relaxed);
  if (l.first_version) first_launches.fetch_add(1, std::memory_order_relaxed);
}

Args args_of(const Children& c, const mixed_channel_cuda::Split& s, std::int64_t first_row, const BlockShape& shape,
             const std::uint8_t* high_bytes, const std::uint8_t* low_bytes) {
  const std::int64_t k = s.high, n = s.channels - k;
  const BlockShape hs{shape.heads, shape.tokens, k}, ls{shape.heads, shape.tokens, n};
  Args a{};
  a.mask = s.mask;
  a.masks = s.masks;
  a.rows_per_mask = s.rows_per_mask;
  a.first_row = first_row;
  a.channels = static_cast<int>(s.channels);
  a.high = static_cast<int>(k);
  a.tokens = shape.tokens;
  a.high_grid = group_format::grid_of(c.high, hs, k);
  a.low_grid = group_format::grid_of(c.low, ls, fft_components(c.low.fft, n));
  auto* hb = const_cast<std::uint8_t*>(high_bytes);
  auto* lb = const_cast<std::uint8_t*>(low_bytes);
  a.high_sections = uniform_format::sections(c.high.layout, a.high_grid, c.high.bits, c.high.scale_dtype, hb);
  a.low_sections = sign_format::sections(c.low.layout, a.low_grid, c.low.scale_dtype, lb);
  if (c.low.layout != CodeLayout::release) a.low_sections.mins = nullptr;  // no zero points stored
  a.high_sd = c.high.scale_dtype;
  a.low_sd = c.low.scale_dtype;
  a.high_layout = c.high.layout;
  a.low_layout = c.low.layout;
  a.reconstruction = c.low.reconstruction;
  return a;
}

// Calls f(launch_encode<BITS> or launch_decode<BITS>'s BITS as an integral constant) for the uniform child's bits
// (refusal() has checked them).
template <class F>
void dispatch_bits(const Children& c, F&& f) {
  switch (c.high.bits) {
    case 1: f(std::integral_constant<unsigned, 1>{}); break;
    case 2: f(std::integral_constant<unsigned, 2>{}); break;
    case 4: f(std::integral_constant<unsigned, 4>{}); break;
    case 8: f(std::integral_constant<unsigned, 8>{}); break;
    default: VIDKV_THROW(CudaError, "mixed_channel (fused): no kernel for ", c.high.bits, "-bit uniform");
  }
}

// The grid of a part: one CTA per tile of kTile tokens of each head.
dim3 tiles_of(const BlockShape& shape) {
  return dim3(static_cast<unsigned>((shape.tokens + kTile - 1) / kTile), static_cast<unsigned>(shape.heads));
}

}  // namespace

void encode(const Children& c, const mixed_channel_cuda::Split& split, std::int64_t first_row, const BlockShape& shape,
            const void* in, DType in_dtype, std::uint8_t* high_bytes, std::uint8_t* low_bytes, void* stream) {
  if (shape.heads * shape.tokens == 0) return;
  const Args a = args_of(c, split, first_row, shape, high_bytes, low_bytes);
  const kernels::Launch l{tiles_of(shape), static_cast<cudaStream_t>(stream), first_version("VIDKV_CUDA_FUSED_ENCODE"),
                          "mixed_channel encode (fused split tile)"};
  const bool complex = c.low.fft == SignFft::complex;
  dispatch_bits(c, [&](auto bits) {
    kernels::launch_encode<decltype(bits)::value>(split.channels - split.high, complex, in, in_dtype, a, l);
  });
  count_launch(l);
  check_launch(l.what);
}

void decode(const Children& c, const mixed_channel_cuda::Split& split, std::int64_t first_row, const BlockShape& shape,
            const std::uint8_t* high_bytes, const std::uint8_t* low_bytes, void* out, DType out_dtype, void* stream) {
  if (shape.heads * shape.tokens == 0) return;
  const Args a = args_of(c, split, first_row, shape, high_bytes, low_bytes);
  const kernels::Launch l{tiles_of(shape), static_cast<cudaStream_t>(stream), first_version("VIDKV_CUDA_FUSED_DECODE"),
                          "mixed_channel decode (fused split tile)"};
  const bool complex = c.low.fft == SignFft::complex;
  dispatch_bits(c, [&](auto bits) {
    kernels::launch_decode<decltype(bits)::value>(split.channels - split.high, complex, out, out_dtype, a, l);
  });
  count_launch(l);
  check_launch(l.what);
}

std::int64_t launches() { return fused_launches.load(std::memory_order_relaxed); }
std::int64_t first_version_launches() { return first_launches.load(std::memory_order_relaxed); }

}  // namespace vidkv::mixed_channel_fused
