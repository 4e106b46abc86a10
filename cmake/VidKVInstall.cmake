# `cmake --install build --prefix P`: P/lib/libvidkv_core.so, P/include/vidkv/core/*.h, P/bin/vidkv and
# P/lib/cmake/VidKV/ (VidKVConfig.cmake: find_package(VidKV) gives VidKV::core, VidKV::vidkv, vidkv_add_plugin()).
# In a wheel (`pip install .`, scikit-build-core defines SKBUILD; pyproject.toml) the same tree lies inside the
# package folder, site-packages/vidkv/{lib,include,bin,lib/cmake/VidKV}, so find_package(VidKV) works with
# -DCMAKE_PREFIX_PATH=$(python -c "import vidkv, os; print(os.path.dirname(vidkv.__file__))").
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
if(SKBUILD)
  set(CMAKE_INSTALL_LIBDIR vidkv/lib)
  set(CMAKE_INSTALL_INCLUDEDIR vidkv/include)
  set(CMAKE_INSTALL_BINDIR vidkv/bin)
endif()

file(STRINGS ${PROJECT_SOURCE_DIR}/core/plugin_abi.h _abi REGEX "^#define VIDKV_PLUGIN_ABI_VERSION [0-9]+")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" VIDKV_PLUGIN_ABI_VERSION "${_abi}")

target_include_directories(vidkv_core PUBLIC $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
install(TARGETS vidkv_core EXPORT VidKVTargets LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR})
set_target_properties(vidkv_core PROPERTIES EXPORT_NAME core)
file(GLOB _core_headers ${PROJECT_SOURCE_DIR}/core/*.h)
install(FILES ${_core_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vidkv/core)
file(GLOB _core_cuda_headers ${PROJECT_SOURCE_DIR}/core/cuda/*.h)
install(FILES ${_core_cuda_headers} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/vidkv/core/cuda)

install(TARGETS vidkv EXPORT VidKVTargets RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
# The installed command finds libvidkv_core.so beside it, in ../lib.
get_target_property(_rpath vidkv INSTALL_RPATH)
if(NOT _rpath)
  set(_rpath "")
endif()
set_target_properties(vidkv PROPERTIES INSTALL_RPATH "$ORIGIN/../lib;${_rpath}")

install(EXPORT VidKVTargets NAMESPACE VidKV:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/VidKV)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/VidKVConfig.cmake.in
                              ${PROJECT_BINARY_DIR}/VidKVConfig.cmake
                              INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/VidKV)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/VidKVConfigVersion.cmake COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/VidKVConfig.cmake ${PROJECT_BINARY_DIR}/VidKVConfigVersion.cmake
              ${PROJECT_SOURCE_DIR}/cmake/VidKVPlugin.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/VidKV)

if(SKBUILD)
  # The wheel also carries the presets (the command finds them through VIDKV_PRESETS_DIR, set by vidkv/_command.py).
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/experiments/presets/ DESTINATION vidkv/presets FILES_MATCHING PATTERN "*.yaml")
endif()
