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
# VIDKV_ENABLE_MPI: `mpirun -np N vidkv run` spreads one experiment over N processes (docs/distributed.md), through
# Boost.MPI over the system MPI (Debian/Ubuntu libboost-mpi-dev, Open MPI). On when both are found; an MPI-less
# build runs the same experiments in one process, and splits them for job arrays with `vidkv run --shard i/N`.
find_package(MPI QUIET COMPONENTS CXX)
find_package(Boost 1.71 QUIET CONFIG COMPONENTS mpi serialization)
if(MPI_CXX_FOUND AND TARGET Boost::mpi)
  set(_vidkv_mpi_default ON)
else()
  set(_vidkv_mpi_default OFF)
endif()
option(VIDKV_ENABLE_MPI "Build vidkv run for mpirun (Boost.MPI)" ${_vidkv_mpi_default})
option(VIDKV_ENABLE_PYTHON "Build the pybind11 module and embed Python in the vidkv binary" OFF)
option(VIDKV_BUILD_TESTS "Build the Catch2 tests" ON)
option(VIDKV_WERROR "Treat warnings as errors" OFF)
# VIDKV_NATIVE: compile for the build machine (-march=native). Off by default: the default build runs on any
# x86-64 and picks AVX2 / AVX-512 kernels at run time (quantization/cpu_dispatch.h). Contraction of
# a * b + c into FMA stays off everywhere in a native build so the optimised CPU paths and the metrics keep the
# reference's rounding (docs/performance.md).
option(VIDKV_NATIVE "Compile for the build machine's instruction set (-march=native)" OFF)
if(VIDKV_NATIVE)
  add_compile_options($<$<COMPILE_LANGUAGE:CXX>:-march=native> $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>)
  add_compile_definitions(VIDKV_NATIVE_BUILD=1)
endif()

# VIDKV_SANITIZE: a -fsanitize= list for every target, e.g. "address,undefined" (scripts/test_sanitizers.sh builds
# build-asan/ with it and runs the C++ suite). Undefined behaviour aborts (no recovery) so a test cannot pass over it.
set(VIDKV_SANITIZE "" CACHE STRING "Sanitizers for every target (-fsanitize=LIST), e.g. address,undefined")
if(VIDKV_SANITIZE)
  add_compile_options(-fsanitize=${VIDKV_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${VIDKV_SANITIZE})
endif()
# VIDKV_BUILD_FUZZERS: the libFuzzer targets of fuzz/ (clang only; they add -fsanitize=fuzzer,address themselves).
option(VIDKV_BUILD_FUZZERS "Build the libFuzzer targets in fuzz/ (needs clang)" OFF)
if(VIDKV_BUILD_FUZZERS)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "VIDKV_BUILD_FUZZERS needs clang (-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang)")
  endif()
  # Coverage feedback for libFuzzer in every library the targets link (the targets add -fsanitize=fuzzer).
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()
