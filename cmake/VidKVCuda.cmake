# CUDA setup: Hopper (sm_90) by default, overridable with -DCMAKE_CUDA_ARCHITECTURES; cuFFT for FFT quantizers.
if(VIDKV_ENABLE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  enable_language(CUDA)
  # CUDA sources are C++17 (CMake 3.25 cannot ask nvcc for C++20): headers they include (core/error.h, the packed
  # format headers) stay C++17-clean; host-only headers may use C++20.
  set(CMAKE_CUDA_STANDARD 17)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  find_package(CUDAToolkit REQUIRED)
endif()
