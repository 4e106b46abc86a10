// Whether two LayerCaches hold the same thing: the same tokens, counters, materialized values and packed bytes,
// block for block (require_same_cache), or the same tokens and materialized values however their blocks are cut
// (require_same_values). Shared by the tests of copies and restores (test_lifecycle_state.cpp), of the exact-token
// window against the full exact store (test_lifecycle_cache.cpp) and of the kivi value merge
// (test_kivi_value_merge.cpp).
#pragma once

#include <cstddef>
#include <vector>

#include "catch.h"
#include "vidkv/core/cache_lifecycle.h"

namespace vidkv::test {

inline void require_same_values(const LayerCache& a, const LayerCache& b) {
  REQUIRE(a.tokens() == b.tokens());
  std::vector<float> ak, av, bk, bv;
  a.materialize(ak, av);
  b.materialize(bk, bv);
  CHECK(ak == bk);
  CHECK(av == bv);
}

inline void require_same_cache(const LayerCache& a, const LayerCache& b) {
  require_same_values(a, b);
  CHECK(a.key_quantized() == b.key_quantized());
  CHECK(a.value_quantized() == b.value_quantized());
  CHECK(a.requantizations() == b.requantizations());
  REQUIRE(a.key_block_count() == b.key_block_count());
  REQUIRE(a.value_block_count() == b.value_block_count());
  for (std::size_t i = 0; i < a.key_block_count(); ++i) CHECK(a.key_block_bytes(i) == b.key_block_bytes(i));
  for (std::size_t i = 0; i < a.value_block_count(); ++i) CHECK(a.value_block_bytes(i) == b.value_block_bytes(i));
  CHECK(a.key_layout().bytes() == b.key_layout().bytes());
  CHECK(a.value_layout().bytes() == b.value_layout().bytes());
}

}  // namespace vidkv::test
