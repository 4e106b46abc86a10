# vidkv_add_plugin(NAME SOURCES...): a VidKV plugin library, libNAME.so, loadable at run time (core/plugin_abi.h,
# docs/writing-a-plugin.md). A MODULE library linked to VidKV::core (never to the built-in plugins or the
# experiment code: a plugin sees only core/), C++20, position-independent. Default symbol visibility, as the core
# library has: exceptions and type information cross the library boundary by name. Provided by find_package(VidKV)
# and inside the VidKV tree alike.
function(vidkv_add_plugin name)
  if(ARGC LESS 2)
    message(FATAL_ERROR "vidkv_add_plugin(${name} SOURCES...): give at least one source file")
  endif()
  add_library(${name} MODULE ${ARGN})
  target_link_libraries(${name} PRIVATE VidKV::core)
  target_compile_features(${name} PRIVATE cxx_std_20)
  set_target_properties(${name} PROPERTIES PREFIX "lib" POSITION_INDEPENDENT_CODE ON)
endfunction()
