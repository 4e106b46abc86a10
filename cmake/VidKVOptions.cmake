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
