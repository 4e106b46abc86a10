// identity on CUDA (identity_cuda.h).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/identity/identity_cuda.h"
#include "vidkv/quantization/cuda/group_cuda.cuh"
#include "vidkv/quantization/cuda/group_cuda_io.cuh"

namespace vidkv::identity_cuda {

namespace {
__global__ void encode_values(DType storage, const void* in, DType in_dtype, std::int64_t n, std::uint8_t* out) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) group_format::put_scalar(out, i, storage, load_as_float(in, in_dtype, static_cast<std::size_t>(i)));
}
__global__ void decode_values(DType storage, const std::uint8_t* in, std::int64_t n, void* out, DType out_dtype) {
  const std::int64_t i = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) store_from_float(out, out_dtype, static_cast<std::size_t>(i), group_format::get_scalar(in, i, storage));
}

// Fast path: 32 elements per thread through 16-byte loads and stores (buffers 16-byte aligned, whole 32s), the
// hardware conversions of group_cuda_io.cuh (same bits as put_scalar / get_scalar for finite values).
template <DType In, DType Out>
__global__ void convert32(const void* in, std::int64_t n32, void* out) {
  const std::int64_t k = static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= n32) return;
  float x[32];
  group_cuda::load32<In>(in, 32 * k, x);
  group_cuda::store32<Out>(out, 32 * k, x);
}

// Runs convert32 when it applies; false otherwise.
bool convert_fast(DType in_dtype, const void* in, std::int64_t n, DType out_dtype, void* out, cudaStream_t st) {
  if (n % 32 != 0 || !group_cuda::aligned(in, 16) || !group_cuda::aligned(out, 16)) return false;
  group_cuda::dispatch_dtype(in_dtype, [&](auto in_tag) {
    group_cuda::dispatch_dtype(out_dtype, [&](auto out_tag) {
      convert32<decltype(in_tag)::value, decltype(out_tag)::value>
          <<<group_cuda::blocks_for(n / 32), group_cuda::kThreads, 0, st>>>(in, n / 32, out);
    });
  });
  return true;
}

}  // namespace

void encode(DType storage, const void* in, DType in_dtype, std::int64_t elements, std::uint8_t* out, void* stream) {
  if (elements == 0) return;
  if (convert_fast(in_dtype, in, elements, storage, out, static_cast<cudaStream_t>(stream))) return check_launch("identity encode");
  encode_values<<<group_cuda::blocks_for(elements), group_cuda::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      storage, in, in_dtype, elements, out);
  check_launch("identity encode");
}

void decode(DType storage, const std::uint8_t* in, std::int64_t elements, void* out, DType out_dtype, void* stream) {
  if (elements == 0) return;
  if (convert_fast(storage, in, elements, out_dtype, out, static_cast<cudaStream_t>(stream))) return check_launch("identity decode");
  decode_values<<<group_cuda::blocks_for(elements), group_cuda::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      storage, in, elements, out, out_dtype);
  check_launch("identity decode");
}

}  // namespace vidkv::identity_cuda
