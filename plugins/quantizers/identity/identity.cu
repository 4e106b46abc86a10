// identity on CUDA (identity_cuda.h).
#include <cuda_runtime.h>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/plugins/quantizers/group_cuda.cuh"
#include "vidkv/plugins/quantizers/identity/identity_cuda.h"

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
}  // namespace

void encode(DType storage, const void* in, DType in_dtype, std::int64_t elements, std::uint8_t* out, void* stream) {
  if (elements == 0) return;
  encode_values<<<group_cuda::blocks_for(elements), group_cuda::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      storage, in, in_dtype, elements, out);
  check_launch("identity encode");
}

void decode(DType storage, const std::uint8_t* in, std::int64_t elements, void* out, DType out_dtype, void* stream) {
  if (elements == 0) return;
  decode_values<<<group_cuda::blocks_for(elements), group_cuda::kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      storage, in, elements, out, out_dtype);
  check_launch("identity decode");
}

}  // namespace vidkv::identity_cuda
