// Exact byte accounting of a packed block: every section that encode() writes, by name and kind.
//
// effective_bits = 8 * bytes / elements counts everything stored (codes, scales, zero points, channel masks,
// protected-token masks, full-precision residual); nominal_bits follows the paper's convention (code bits only:
// 1.5-bit keys = half 2-bit + half 1-bit, ternary = log2(3); a full-precision residual's code is its 16 bits). Both as defined in core/bits_accounting.h, which also
// sums layouts and accounts K and V together (compression ratio).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace vidkv {

enum class SectionKind { codes, scales, zero_points, channel_mask, token_mask, residual, header };
const char* section_kind_name(SectionKind k);

struct PackedSection {
  std::string name;  // e.g. "high.codes", "low.scales"
  SectionKind kind = SectionKind::codes;
  std::size_t bytes = 0;
};

class PackedLayout {
 public:
  PackedLayout() = default;
  // `elements`: fp values the layout represents; `nominal_bits`: code bits per element (paper convention).
  PackedLayout(std::int64_t elements, double nominal_bits) : elements_(elements), nominal_bits_(nominal_bits) {}

  // Appends a section; sections are laid out back to back in the order added.
  PackedLayout& add(std::string name, SectionKind kind, std::size_t bytes);
  // Appends all sections of `child` (names prefixed "prefix."), adds its elements and mixes its nominal bits in,
  // weighted by elements. Used by composite quantizers and lifecycles.
  PackedLayout& append_child(const std::string& prefix, const PackedLayout& child);
  // Adds `child` sections but not its elements (the child re-encodes elements already counted).
  PackedLayout& append_sections(const std::string& prefix, const PackedLayout& child);

  std::size_t bytes() const;
  std::int64_t elements() const { return elements_; }
  double nominal_bits() const { return nominal_bits_; }
  double effective_bits() const;  // bits_accounting.h: 8 * bytes() / elements(), 0 when elements() == 0
  std::size_t bytes_of(SectionKind kind) const;
  std::size_t offset_of(std::size_t section) const;
  const std::vector<PackedSection>& sections() const { return sections_; }
  std::string str() const;  // one line per section, for `--verbose` and debugging

 private:
  std::int64_t elements_ = 0;
  double nominal_bits_ = 0;
  std::vector<PackedSection> sections_;
};

}  // namespace vidkv
