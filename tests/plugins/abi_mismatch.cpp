// A plugin library that claims the next plugin ABI version: the loader must refuse it, naming both versions
// (tests/cpp/test_plugin_loading.cpp). It defines the two entry points by hand instead of VIDKV_PLUGIN_ENTRY.
#include "vidkv/core/plugin_abi.h"

extern "C" __attribute__((visibility("default"))) int vidkv_plugin_abi_version() { return VIDKV_PLUGIN_ABI_VERSION + 1; }
extern "C" __attribute__((visibility("default"))) void vidkv_register_plugins(vidkv::PluginRegistry&) {}
