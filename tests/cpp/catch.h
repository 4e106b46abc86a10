// Catch2 v2 (Debian 12) and v3 (Ubuntu 24.04) behind one include. Tests use REQUIRE/CHECK/SECTION/GENERATE and
// Approx-free comparisons (explicit tolerances), which both versions share, plus VIDKV_SKIP for visible skips.
#pragma once

#if VIDKV_CATCH_MAJOR >= 3
#include <catch2/catch_all.hpp>
// v2 puts Approx in the global namespace; v3 keeps it in Catch.
using Catch::Approx;
// Reports the test as skipped (ctest shows it as skipped through the return code), never as passed.
#define VIDKV_SKIP(msg) SKIP(msg)
// A string matcher for CHECK_THROWS_WITH: the message holds `text` (v3 renamed v2's Contains, which in v3 matches
// a range's elements and does not compile here).
#define VIDKV_CONTAINS(text) Catch::Matchers::ContainsSubstring(text)
#else
#include <catch2/catch.hpp>
#include <cstdlib>
#include <iostream>
// Catch2 v2 has no SKIP: print the reason and exit with the code that ctest maps to "skipped" (SKIP_RETURN_CODE 4).
#define VIDKV_SKIP(msg)                                   \
  do {                                                    \
    std::cout << "SKIPPED: " << msg << std::endl;         \
    std::exit(4);                                         \
  } while (0)
#define VIDKV_CONTAINS(text) Catch::Matchers::Contains(text)
#endif
