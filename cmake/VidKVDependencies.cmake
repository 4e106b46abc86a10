# Third-party libraries. Each is found from the system (Debian 12 / Ubuntu 24.04 packages installed by
# scripts/setup.sh); a missing one stops configuration with the package to install.
find_package(PkgConfig REQUIRED)

pkg_check_modules(FFTW3F REQUIRED IMPORTED_TARGET fftw3f)

find_package(HDF5 REQUIRED COMPONENTS C)
if(NOT TARGET hdf5::hdf5)
  add_library(vidkv_hdf5 INTERFACE)
  target_include_directories(vidkv_hdf5 INTERFACE ${HDF5_INCLUDE_DIRS})
  target_link_libraries(vidkv_hdf5 INTERFACE ${HDF5_C_LIBRARIES})
  target_compile_definitions(vidkv_hdf5 INTERFACE ${HDF5_DEFINITIONS})
  add_library(hdf5::hdf5 ALIAS vidkv_hdf5)
endif()

find_package(yaml-cpp REQUIRED)
if(TARGET yaml-cpp::yaml-cpp)
  set(VIDKV_YAML_TARGET yaml-cpp::yaml-cpp)
else()
  set(VIDKV_YAML_TARGET yaml-cpp)
endif()

find_package(Threads REQUIRED)

# Eigen 3.3+ (header-only; Debian/Ubuntu libeigen3-dev): the matrix products of the trace metrics
# (experiments/src/metrics_gemm.cpp). Without its CMake package, a copy of the headers is taken from
# -DEIGEN3_INCLUDE_DIR=<folder holding Eigen/Core> (or found under the usual include folders).
find_package(Eigen3 3.3 QUIET NO_MODULE)
if(NOT TARGET Eigen3::Eigen)
  find_path(EIGEN3_INCLUDE_DIR NAMES Eigen/Core PATH_SUFFIXES eigen3)
  if(NOT EIGEN3_INCLUDE_DIR)
    message(FATAL_ERROR "Eigen 3.3+ not found: install libeigen3-dev (scripts/setup.sh does), or pass "
            "-DEIGEN3_INCLUDE_DIR=<folder holding Eigen/Core>")
  endif()
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${EIGEN3_INCLUDE_DIR}")
endif()
# The command line (CLI11, libcli11-dev) and the JSON of result files (nlohmann-json3-dev): header-only.
find_package(CLI11 CONFIG REQUIRED)
find_package(nlohmann_json 3 CONFIG REQUIRED)

# MPI (VIDKV_ENABLE_MPI, VidKVOptions.cmake): Boost.MPI and the MPI C++ bindings it is built on.
if(VIDKV_ENABLE_MPI)
  find_package(MPI REQUIRED COMPONENTS CXX)
  find_package(Boost 1.71 CONFIG COMPONENTS mpi serialization)
  if(NOT TARGET Boost::mpi)
    message(FATAL_ERROR "VIDKV_ENABLE_MPI: Boost.MPI not found: install libboost-mpi-dev (scripts/setup.sh does), or "
            "-DVIDKV_ENABLE_MPI=OFF")
  endif()
endif()

if(VIDKV_BUILD_TESTS)
  # Catch2 v2 (Debian 12) and v3 (Ubuntu 24.04) are both supported; tests/cpp/catch.h hides the difference.
  find_package(Catch2 REQUIRED)
  if(Catch2_VERSION VERSION_GREATER_EQUAL 3)
    set(VIDKV_CATCH_MAJOR 3)
  else()
    set(VIDKV_CATCH_MAJOR 2)
  endif()
endif()

if(VIDKV_ENABLE_PYTHON)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module Development.Embed)
  find_package(pybind11 CONFIG REQUIRED)
  # The `vidkv` executable embeds Python (vidkv live|record|report). With a static libpython the extension modules
  # it imports (numpy, torch, _vidkv) would need the executable to export every symbol, VidKV's included.
  if(Python3_LIBRARIES MATCHES "\\.a$")
    message(FATAL_ERROR "VIDKV_ENABLE_PYTHON needs a shared libpython; the one found for ${Python3_EXECUTABLE} is "
            "${Python3_LIBRARIES}: use a Python built with --enable-shared (Debian/Ubuntu python3-dev has one; "
            "pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared pyenv install VERSION), or -DVIDKV_ENABLE_PYTHON=OFF")
  endif()
endif()
