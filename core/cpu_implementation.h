// Which CPU implementation a quantizer runs: the scalar reference (the oracle, algorithms.md written out one
// element at a time) or the optimised path (vectorisable loops over contiguous rows, codes packed a word at a
// time, no per-element address arithmetic). Both write the same packed bytes through the same *_format.h
// definitions, with one exception whose header names the tolerance: the AVX-512 FFT of sign's fft real / complex
// (sign_fft_avx512.cpp; docs/performance.md, "Equivalence").
//
// The choice belongs to the registry that builds the plugins (PluginRegistry::implementation()), so a composite's
// children follow their parent and a config never has to repeat it: `vidkv run --implementation reference`,
// builtin_registry(CpuImplementation::reference) in tests and benches (`vidkv bench --implementation reference`).
// The default everywhere is optimized.
#pragma once

#include <cstdint>
#include <string>

namespace vidkv {

enum class CpuImplementation : std::uint8_t { reference, optimized };

const char* cpu_implementation_name(CpuImplementation i);
// "reference" or "optimized"; anything else throws ConfigError naming the valid values.
CpuImplementation parse_cpu_implementation(const std::string& name);

}  // namespace vidkv
