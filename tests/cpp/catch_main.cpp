// Catch2 v2 needs its main() compiled in exactly one file; v3 links Catch2WithMain instead.
#if defined(VIDKV_CATCH2_V2_MAIN)
#define CATCH_CONFIG_MAIN
#include "catch.h"
#endif
