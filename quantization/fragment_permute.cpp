// Host permutations of a whole block between layout dense and the fragment layout (fragment_permute.h).
#include "vidkv/quantization/fragment_permute.h"

#include <cstring>
#include <vector>

#include "vidkv/core/error.h"

namespace vidkv::fragment_permute {

void dense_to_fragment(const BlockSections& s, std::uint8_t* bytes) {
  if (group_format::fragment_all_tail(s.grid)) return;  // dense's bytes already
  const std::size_t n = s.code_bytes();
  const std::vector<std::uint8_t> dense(bytes, bytes + s.moved_bytes());
  group_format::fragment_from_dense(s.grid, s.form, dense.data(), bytes);
  if (s.group_major())
    group_format::permute_group_major_meta(s.grid, s.meta_size, s.meta_sections, dense.data() + n, bytes + n, true);
}

void fragment_to_dense(const BlockSections& s, const std::uint8_t* fragment, std::uint8_t* dense, std::size_t total) {
  VIDKV_REQUIRE(total >= s.code_bytes() + s.meta_bytes(), ShapeError, "fragment_to_dense: a block of ", total,
                " bytes is shorter than its codes and metadata");
  if (group_format::fragment_all_tail(s.grid)) {
    std::memcpy(dense, fragment, total);
    return;
  }
  const std::size_t n = s.code_bytes();
  group_format::dense_from_fragment(s.grid, s.form, fragment, dense);
  if (s.group_major()) {
    group_format::permute_group_major_meta(s.grid, s.meta_size, s.meta_sections, fragment + n, dense + n, false);
    std::memcpy(dense + n + s.meta_bytes(), fragment + n + s.meta_bytes(), total - n - s.meta_bytes());
  } else {
    std::memcpy(dense + n, fragment + n, total - n);
  }
}

}  // namespace vidkv::fragment_permute
