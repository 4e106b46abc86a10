// Which transform the optimised CPU path uses for a channel FFT (today: the sign quantizer's `fft: real` and
// `fft: complex`, algorithms.md 3.3, plugins/quantizers/sign/sign_fft.h). The scalar reference always uses FFTW's
// per-row plans: the oracle.
//
//   avx512        the hand-written AVX-512 transforms (sign_fft_avx512.h) where they apply: power-of-two widths
//                 16..128 on a CPU with AVX-512 F/BW/DQ/VL, VIDKV_CPU_KERNELS not "portable"; FFTW's per-row plans
//                 elsewhere. Within the tolerance derived in sign_fft_avx512.cpp. The default.
//   fftw-batched  FFTW's batched plans (fftwf_plan_many_dft_r2c / c2r over 64-token chunks, plans cached per
//                 thread, sign_fft_fftw_batched.h); within the library bound of sign_fft_tolerance.h.
//   fftw          FFTW's per-row plans, the reference's transform: the same bits as the reference.
//
// The tier that runs is named by Quantizer::tier() ("sign:avx512+fft-avx512", "...+fft-fftw-batched", no suffix for
// FFTW's per-row plans), written to provenance.json and, when inexact, to the resume fingerprint.
//
// Read by sign_kernels::choose_transform (plugins/quantizers/sign/sign_kernels.h: the table of transforms), the one
// place sign's CPU transform is picked. Chosen per process: a ScopedCpuFftTier in force (what `vidkv bench` uses to
// time every tier in one run), else the environment variable VIDKV_SIGN_FFT (avx512, fftw-batched or fftw; unset or
// empty: avx512), read at every call.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace vidkv {

enum class CpuFftTier : std::uint8_t { avx512, fftw_batched, fftw };

// "avx512", "fftw-batched", "fftw".
const char* cpu_fft_tier_name(CpuFftTier tier);
// The inverse of cpu_fft_tier_name; anything else throws ConfigError naming `what` and the valid names.
CpuFftTier parse_cpu_fft_tier(const std::string& name, const std::string& what);
// Every tier, in the order above.
std::vector<CpuFftTier> all_cpu_fft_tiers();

// The tier in force (see above). Throws ConfigError when VIDKV_SIGN_FFT holds another value.
CpuFftTier cpu_fft_tier();

// Sets the tier of the whole process for its lifetime, then restores the one before (scopes nest). Not for use
// while another thread encodes or decodes: the bench sets it between timed passes.
class ScopedCpuFftTier {
 public:
  explicit ScopedCpuFftTier(CpuFftTier tier);
  ~ScopedCpuFftTier();
  ScopedCpuFftTier(const ScopedCpuFftTier&) = delete;
  ScopedCpuFftTier& operator=(const ScopedCpuFftTier&) = delete;

 private:
  int previous_;
};

}  // namespace vidkv
