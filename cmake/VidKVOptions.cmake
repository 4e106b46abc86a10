# Build options. VIDKV_ENABLE_CUDA defaults to ON when a CUDA compiler is found (the CUDA code compiles and links
# without a GPU; GPU tests skip at run time).
include(CheckLanguage)
check_language(CUDA)
if(CMAKE_CUDA_COMPILER)
  set(_vidkv_cuda_default ON)
else()
  set(_vidkv_cuda_default OFF)
endif()
option(VIDKV_ENABLE_CUDA "Build the CUDA backend" ${_vidkv_cuda_default})
option(VIDKV_ENABLE_PYTHON "Build the pybind11 module and embed Python in the vidkv binary" OFF)
option(VIDKV_BUILD_TESTS "Build the Catch2 tests" ON)
option(VIDKV_WERROR "Treat warnings as errors" OFF)
# VIDKV_NATIVE: compile for the build machine (-march=native). Off by default: the default build runs on any
# x86-64 and picks AVX2 / AVX-512 kernels at run time (plugins/quantizers/cpu_dispatch.h). Contraction of
# a * b + c into FMA stays off everywhere in a native build so the optimised CPU paths and the metrics keep the
# reference's rounding (docs/performance.md).
option(VIDKV_NATIVE "Compile for the build machine's instruction set (-march=native)" OFF)
if(VIDKV_NATIVE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=native> $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>)
  add_compile_definitions(VIDKV_NATIVE_BUILD=1)
endif()
