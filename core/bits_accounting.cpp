#include "vidkv/core/bits_accounting.h"

#include <limits>
#include <string>

#include "vidkv/core/error.h"

namespace vidkv {

double effective_bits(double bytes, double elements) { return elements != 0 ? 8.0 * bytes / elements : 0.0; }

double compression_ratio(double effective, DType input) {
  if (effective == 0) return std::numeric_limits<double>::infinity();
  return 8.0 * static_cast<double>(dtype_size(input)) / effective;
}

StoredBits StoredBits::of(const PackedLayout& layout) {
  return of(static_cast<double>(layout.bytes()), static_cast<double>(layout.elements()), layout.nominal_bits());
}

StoredBits StoredBits::of(double bytes, double elements, double nominal_bits) {
  return StoredBits{bytes, elements, nominal_bits * elements, nominal_bits};
}

StoredBits& StoredBits::operator+=(const StoredBits& other) {
  bytes += other.bytes;
  elements += other.elements;
  nominal_bit_elements += other.nominal_bit_elements;
  nominal_bits = elements != 0 ? nominal_bit_elements / elements : 0.0;
  return *this;
}

BitsAccount account_bits(const StoredBits& key, const StoredBits& value, DType input) {
  if (!(key.elements > 0) || !(value.elements > 0))
    throw ShapeError("bits accounting: keys hold " + std::to_string(key.elements) + " and values " +
                     std::to_string(value.elements) + " elements; bits per element need both > 0");
  BitsAccount a;
  a.key_nominal_bits = key.nominal_bits;
  a.value_nominal_bits = value.nominal_bits;
  a.key_effective_bits = key.effective_bits();
  a.value_effective_bits = value.effective_bits();
  const double elements = key.elements + value.elements;
  a.nominal_bits = (key.nominal_bit_elements + value.nominal_bit_elements) / elements;
  a.effective_bits = effective_bits(key.bytes + value.bytes, elements);
  a.compression_ratio = compression_ratio(a.effective_bits, input);
  return a;
}

}  // namespace vidkv
