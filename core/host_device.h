// Marks functions that compile for both the host and CUDA devices. Packed-format headers use it so that the CPU
// reference and the CUDA kernels share one definition of every bit layout.
#pragma once

#if defined(__CUDACC__)
#define VIDKV_HOST_DEVICE __host__ __device__
#else
#define VIDKV_HOST_DEVICE
#endif
