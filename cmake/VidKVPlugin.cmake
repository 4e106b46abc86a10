# vidkv_add_plugin(NAME SOURCES...): a VidKV plugin library, libNAME.so, loadable at run time (core/plugin_abi.h,
# docs/writing-a-plugin.md). A MODULE library linked to VidKV::core (never to the built-in plugins or the
# experiment code: a plugin sees only core/), C++20, position-independent. Default symbol visibility, as the core
# library has: exceptions and type information cross the library boundary by name. Provided by find_package(VidKV)
# and inside the VidKV tree alike. Optimised even without a build type: a project configured without
# CMAKE_BUILD_TYPE (cmake -S . -B build, as docs/writing-a-plugin.md shows) compiles with no -O flag at all, and a
# plugin runs in every cell of a sweep (the skeleton measured 3x slower per cell), so the library gets -O2 then;
# an explicit build type (Debug, Release, ...) keeps its own flags.
function(vidkv_add_plugin name)
  if(ARGC LESS 2)
    message(FATAL_ERROR "vidkv_add_plugin(${name} SOURCES...): give at least one source file")
  endif()
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE VidKV::core)
  target_compile_features(${name} PRIVATE cxx_std_20)
  set_target_properties(${name} PROPERTIES PREFIX "lib" POSITION_INDEPENDENT_CODE ON)
  get_property(multi_config GLOBAL PROPERTY GENERATOR_IS_MULTI_CONFIG)
  if(NOT CMAKE_BUILD_TYPE AND NOT multi_config)
    target_compile_options(${name} PRIVATE -O2)
  endif()
endfunction()
