// mixed_token on CUDA (mixed_token_cuda.h): token rows gathered into / scattered from the two child blocks.
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_cuda.h"

namespace vidkv::mixed_token_cuda {

namespace {

constexpr int kThreads = 256;

unsigned blocks_for(std::int64_t threads) { return static_cast<unsigned>((threads + kThreads - 1) / kThreads); }

// Unit u of the row of token t of head h, in the split: its index in the kept or the rest block.
struct Place {
  bool kept;
  std::int64_t index;
};
__device__ inline Place place(const Split& s, std::int64_t units_per_row, std::int64_t v) {
  const std::int64_t row = v / units_per_row, u = v % units_per_row;
  const std::int64_t h = row / s.tokens, t = row % s.tokens;
  const std::int32_t slot = s.slots[t];
  if (slot >= 0) return {true, (h * s.kept + slot) * units_per_row + u};
  return {false, (h * (s.tokens - s.kept) + (-1 - slot)) * units_per_row + u};
}

template <class U>
__global__ void gather_units(Split s, const U* in, U* kept, U* rest, std::int64_t units_per_row, std::int64_t units) {
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= units) return;
  const Place p = place(s, units_per_row, v);
  (p.kept ? kept : rest)[p.index] = in[v];
}

template <class U>
__global__ void scatter_units(Split s, const U* kept, const U* rest, U* out, std::int64_t units_per_row, std::int64_t units) {
  const std::int64_t v = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (v >= units) return;
  const Place p = place(s, units_per_row, v);
  out[v] = (p.kept ? kept : rest)[p.index];
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Calls f(U{}) with U = uint4 when every row and buffer allows 16-byte units, else the element type.
template <class F>
void dispatch(const Split& s, int element_bytes, const void* a, const void* b, const void* c, F&& f) {
  if (s.row_bytes % 16 == 0 && aligned16(a) && aligned16(b) && aligned16(c)) return f(uint4{});
  if (element_bytes == 2) return f(std::uint16_t{});
  return f(std::uint32_t{});
}

}  // namespace

void gather(const Split& s, const void* in, int element_bytes, void* kept, void* rest, void* stream) {
  dispatch(s, element_bytes, in, kept, rest, [&](auto unit) {
    using U = decltype(unit);
    const std::int64_t per_row = s.row_bytes / static_cast<std::int64_t>(sizeof(U)), units = s.heads * s.tokens * per_row;
    if (units == 0) return;
    gather_units<U><<<blocks_for(units), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        s, static_cast<const U*>(in), static_cast<U*>(kept), static_cast<U*>(rest), per_row, units);
  });
  check_launch("mixed_token gather");
}

void scatter(const Split& s, const void* kept, const void* rest, int element_bytes, void* out, void* stream) {
  dispatch(s, element_bytes, out, kept, rest, [&](auto unit) {
    using U = decltype(unit);
    const std::int64_t per_row = s.row_bytes / static_cast<std::int64_t>(sizeof(U)), units = s.heads * s.tokens * per_row;
    if (units == 0) return;
    scatter_units<U><<<blocks_for(units), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        s, static_cast<const U*>(kept), static_cast<const U*>(rest), static_cast<U*>(out), per_row, units);
  });
  check_launch("mixed_token scatter");
}

}  // namespace vidkv::mixed_token_cuda
