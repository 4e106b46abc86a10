// The versioned C entry point of a plugin library (a shared library built against an installed VidKV with
// vidkv_add_plugin(), docs/writing-a-plugin.md), loaded at run time by load_plugin_library() (plugin_library.h).
//
// A plugin library defines, once, with the macro below:
//
//   VIDKV_PLUGIN_ENTRY(registry) {
//     registry.add<MyQuantizer>("my_quant", "one-line summary");
//   }
//
// which expands to the two C symbols the loader looks up:
//   int  vidkv_plugin_abi_version(void)                     -> VIDKV_PLUGIN_ABI_VERSION as the library was compiled
//   void vidkv_register_plugins(vidkv::PluginRegistry& r)   -> adds the library's plugins to r
// The loader calls vidkv_plugin_abi_version() first and refuses the library, naming both versions, when it differs
// from the VIDKV_PLUGIN_ABI_VERSION of the loading program: the plugin interfaces are C++ classes (Quantizer,
// ChannelSelector, TokenProtector, PluginRegistry, ConfigNode, PackedLayout, TokenContext) whose layout and virtual
// tables must match exactly.
//
// VIDKV_PLUGIN_ABI_VERSION is raised whenever a header of core/ that a plugin compiles against changes a class
// layout, a virtual function or an inline function's behaviour. The same compiler family and C++ standard library
// (libstdc++ of GCC >= 11, as Debian 12 / Ubuntu 24.04 ship) are assumed on both sides; the version does not
// detect a different standard library.
#pragma once

#include "vidkv/core/plugin_registry.h"

// 2: Quantizer::token_separable (2026-12-04). 3: Execution::after_independent_kernel, encode_cuda / decode_cuda take
// the Execution (2026-12-07). 4: Quantizer::reads_context_keys and TokenProtector::reads_context_keys (2026-12-07).
// cmake/VidKVInstall.cmake reads the number at the end of the next line.
#define VIDKV_PLUGIN_ABI_VERSION 4

#define VIDKV_PLUGIN_ENTRY(registry_name)                                                                          \
  extern "C" __attribute__((visibility("default"))) int vidkv_plugin_abi_version() { return VIDKV_PLUGIN_ABI_VERSION; } \
  extern "C" __attribute__((visibility("default"))) void vidkv_register_plugins(::vidkv::PluginRegistry& registry_name)

namespace vidkv {

// The ABI version this program was compiled with (VIDKV_PLUGIN_ABI_VERSION).
int plugin_abi_version();

}  // namespace vidkv
