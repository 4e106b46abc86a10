#include "vidkv/core/packed_layout.h"

#include <sstream>

#include "vidkv/core/bits_accounting.h"

namespace vidkv {

const char* section_kind_name(SectionKind k) {
  switch (k) {
    case SectionKind::codes: return "codes";
    case SectionKind::scales: return "scales";
    case SectionKind::zero_points: return "zero_points";
    case SectionKind::channel_mask: return "channel_mask";
    case SectionKind::token_mask: return "token_mask";
    case SectionKind::residual: return "residual";
    case SectionKind::header: return "header";
  }
  return "?";
}

PackedLayout& PackedLayout::add(std::string name, SectionKind kind, std::size_t bytes) {
  sections_.push_back({std::move(name), kind, bytes});
  return *this;
}

PackedLayout& PackedLayout::append_child(const std::string& prefix, const PackedLayout& child) {
  const std::int64_t total = elements_ + child.elements_;
  if (total > 0)
    nominal_bits_ = (nominal_bits_ * static_cast<double>(elements_) + child.nominal_bits_ * static_cast<double>(child.elements_)) /
                    static_cast<double>(total);
  elements_ = total;
  return append_sections(prefix, child);
}

PackedLayout& PackedLayout::append_sections(const std::string& prefix, const PackedLayout& child) {
  for (const auto& s : child.sections_) sections_.push_back({prefix.empty() ? s.name : prefix + "." + s.name, s.kind, s.bytes});
  return *this;
}

std::size_t PackedLayout::bytes() const {
  std::size_t n = 0;
  for (const auto& s : sections_) n += s.bytes;
  return n;
}

double PackedLayout::effective_bits() const {
  return vidkv::effective_bits(static_cast<double>(bytes()), static_cast<double>(elements_));
}

std::size_t PackedLayout::bytes_of(SectionKind kind) const {
  std::size_t n = 0;
  for (const auto& s : sections_)
    if (s.kind == kind) n += s.bytes;
  return n;
}

std::size_t PackedLayout::offset_of(std::size_t section) const {
  std::size_t n = 0;
  for (std::size_t i = 0; i < section && i < sections_.size(); ++i) n += sections_[i].bytes;
  return n;
}

std::string PackedLayout::str() const {
  std::ostringstream out;
  out << elements_ << " elements, " << bytes() << " bytes, nominal " << nominal_bits_ << " bits, effective "
      << effective_bits() << " bits\n";
  for (const auto& s : sections_) out << "  " << s.name << " (" << section_kind_name(s.kind) << "): " << s.bytes << " bytes\n";
  return out.str();
}

}  // namespace vidkv
