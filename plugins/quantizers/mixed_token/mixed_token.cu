// mixed_token on CUDA (mixed_token_cuda.h): token rows gathered into / scattered from the two child blocks.
#include <cuda_runtime.h>

#include <algorithm>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_cuda.h"
#include "vidkv/plugins/quantizers/mixed_token/mixed_token_split.h"

namespace vidkv::mixed_token_cuda {

namespace {

constexpr int kThreads = 256;
constexpr unsigned kMaxBlocks = 132 * 8;  // a few waves' worth on an H200 (132 multiprocessors); threads loop over rows

// Block (x: units of a row, y: rows); each thread moves unit u of rows first, first + stride, ... (RowWalk). A
// warp covers consecutive units of consecutive rows: coalesced on the full block and, within each row, on the
// child block. kGather: in -> (kept, rest); else (kept, rest) -> out.
template <class U, bool kGather>
__global__ void move_rows(Split s, const U* full_in, U* full_out, const U* kept_in, const U* rest_in, U* kept_out,
                          U* rest_out, std::int64_t units_per_row) {
  const std::int64_t rows = s.heads * s.tokens;
  const std::int64_t first = static_cast<std::int64_t>(blockIdx.x) * blockDim.y + threadIdx.y;
  const std::int64_t stride = static_cast<std::int64_t>(gridDim.x) * blockDim.y;
  if (first >= rows) return;
  mixed_token_split::RowWalk w(s.tokens, first, stride);
  for (std::int64_t row = first; row < rows; row += stride, w.next()) {
    bool kept;
    const std::int64_t child = w.child_row(s.slots, s.kept, &kept);
    for (std::int64_t u = threadIdx.x; u < units_per_row; u += blockDim.x) {
      if constexpr (kGather) {
        (kept ? kept_out : rest_out)[child * units_per_row + u] = full_in[row * units_per_row + u];
      } else {
        full_out[row * units_per_row + u] = (kept ? kept_in : rest_in)[child * units_per_row + u];
      }
    }
  }
}

// mixed_token_format::token_slots on the device: one block of kScanThreads threads takes kScanThreads mask bytes
// (8 tokens each) per pass, scans their bit counts in shared memory, and writes the slots of its 8 tokens.
constexpr int kScanThreads = 1024;
__global__ void token_slots(const std::uint8_t* mask, std::int64_t tokens, std::int32_t* slots) {
  __shared__ std::int32_t scan[kScanThreads];
  const std::int64_t bytes = (tokens + 7) / 8;
  std::int64_t kept_before = 0;
  for (std::int64_t b0 = 0; b0 < bytes; b0 += kScanThreads) {
    const std::int64_t b = b0 + threadIdx.x;
    unsigned byte = b < bytes ? mask[b] : 0u;
    if (b == bytes - 1 && tokens % 8 != 0) byte &= (1u << (tokens % 8)) - 1u;  // bits past the last token
    const auto count = static_cast<std::int32_t>(__popc(byte));
    scan[threadIdx.x] = count;
    __syncthreads();
    for (int offset = 1; offset < kScanThreads; offset <<= 1) {  // inclusive scan (Hillis-Steele)
      const std::int32_t v = threadIdx.x >= static_cast<unsigned>(offset) ? scan[threadIdx.x - offset] : 0;
      __syncthreads();
      scan[threadIdx.x] += v;
      __syncthreads();
    }
    std::int64_t kept = kept_before + scan[threadIdx.x] - count;  // protected tokens before this byte's first token
    for (int i = 0; i < 8; ++i) {
      const std::int64_t t = b * 8 + i;
      if (t >= tokens) break;
      if ((byte >> i) & 1u) {
        slots[t] = static_cast<std::int32_t>(kept++);
      } else {
        slots[t] = static_cast<std::int32_t>(-1 - (t - kept));
      }
    }
    kept_before += scan[kScanThreads - 1];
    __syncthreads();  // scan[] is rewritten by the next pass
  }
}

bool aligned16(const void* p) { return (reinterpret_cast<std::uintptr_t>(p) & 15u) == 0; }

// Calls f(U{}) with U = uint4 when every row and buffer allows 16-byte units, else the element type.
template <class F>
void dispatch(const Split& s, int element_bytes, const void* a, const void* b, const void* c, F&& f) {
  if (s.row_bytes % 16 == 0 && aligned16(a) && aligned16(b) && aligned16(c)) return f(uint4{});
  if (element_bytes == 2) return f(std::uint16_t{});
  return f(std::uint32_t{});
}

template <class U, bool kGather>
void launch(const Split& s, const void* full_in, void* full_out, const void* kept_in, const void* rest_in, void* kept_out,
            void* rest_out, cudaStream_t st) {
  const std::int64_t units = s.row_bytes / static_cast<std::int64_t>(sizeof(U)), rows = s.heads * s.tokens;
  if (units == 0 || rows == 0) return;
  const auto bx = static_cast<unsigned>(std::min<std::int64_t>(units, kThreads)), by = kThreads / bx;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>(kMaxBlocks, (rows + by - 1) / by));
  move_rows<U, kGather><<<blocks, dim3(bx, by), 0, st>>>(
      s, static_cast<const U*>(full_in), static_cast<U*>(full_out), static_cast<const U*>(kept_in),
      static_cast<const U*>(rest_in), static_cast<U*>(kept_out), static_cast<U*>(rest_out), units);
}

}  // namespace

void slots_from_mask(const std::uint8_t* mask, std::int64_t tokens, std::int32_t* slots, void* stream) {
  if (tokens == 0) return;
  token_slots<<<1, kScanThreads, 0, static_cast<cudaStream_t>(stream)>>>(mask, tokens, slots);
  check_launch("mixed_token (token slots)");
}

void gather(const Split& s, const void* in, int element_bytes, void* kept, void* rest, void* stream) {
  dispatch(s, element_bytes, in, kept, rest, [&](auto unit) {
    launch<decltype(unit), true>(s, in, nullptr, nullptr, nullptr, kept, rest, static_cast<cudaStream_t>(stream));
  });
  check_launch("mixed_token gather");
}

void scatter(const Split& s, const void* kept, const void* rest, int element_bytes, void* out, void* stream) {
  dispatch(s, element_bytes, out, kept, rest, [&](auto unit) {
    launch<decltype(unit), false>(s, nullptr, out, kept, rest, nullptr, nullptr, static_cast<cudaStream_t>(stream));
  });
  check_launch("mixed_token scatter");
}

}  // namespace vidkv::mixed_token_cuda
