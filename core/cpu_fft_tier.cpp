#include "vidkv/core/cpu_fft_tier.h"

#include <atomic>
#include <cstdlib>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {
// The tier set by the innermost ScopedCpuFftTier, or -1: none (the environment decides).
std::atomic<int> g_scoped_tier{-1};
}  // namespace

const char* cpu_fft_tier_name(CpuFftTier tier) {
  switch (tier) {
    case CpuFftTier::avx512: return "avx512";
    case CpuFftTier::fftw_batched: return "fftw-batched";
    case CpuFftTier::fftw: return "fftw";
  }
  return "?";
}

CpuFftTier parse_cpu_fft_tier(const std::string& name, const std::string& what) {
  for (const CpuFftTier t : all_cpu_fft_tiers())
    if (name == cpu_fft_tier_name(t)) return t;
  VIDKV_THROW(ConfigError, what, ": unknown FFT tier '", name, "' (valid: avx512, fftw-batched, fftw)");
}

std::vector<CpuFftTier> all_cpu_fft_tiers() { return {CpuFftTier::avx512, CpuFftTier::fftw_batched, CpuFftTier::fftw}; }

CpuFftTier cpu_fft_tier() {
  const int scoped = g_scoped_tier.load(std::memory_order_relaxed);
  if (scoped >= 0) return static_cast<CpuFftTier>(scoped);
  const char* env = std::getenv("VIDKV_SIGN_FFT");
  if (env == nullptr || *env == '\0') return CpuFftTier::avx512;
  return parse_cpu_fft_tier(env, "environment variable VIDKV_SIGN_FFT");
}

ScopedCpuFftTier::ScopedCpuFftTier(CpuFftTier tier)
    : previous_(g_scoped_tier.exchange(static_cast<int>(tier), std::memory_order_relaxed)) {}

ScopedCpuFftTier::~ScopedCpuFftTier() { g_scoped_tier.store(previous_, std::memory_order_relaxed); }

}  // namespace vidkv
