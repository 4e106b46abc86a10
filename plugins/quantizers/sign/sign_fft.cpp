// The fftwf channel-axis transforms of the sign quantizer and their process-wide plan cache; the component orders
// (complex interleaving of the release, real n-reals variant) are defined in sign_fft.h.
#include "vidkv/plugins/quantizers/sign/sign_fft.h"

#include <fftw3.h>

#include <complex>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

// std::complex<float> is layout-compatible with fftwf_complex (FFTW manual, "Complex numbers").
fftwf_complex* as_fftw(std::complex<float>* p) { return reinterpret_cast<fftwf_complex*>(p); }

enum class PlanKind { c2c_forward, c2c_backward, r2c, c2r };

// One plan per (n, kind), created on first use and never destroyed (a handful per process).
fftwf_plan cached_plan(std::int64_t n, PlanKind kind) {
  static std::map<std::pair<std::int64_t, PlanKind>, fftwf_plan> plans;
  std::lock_guard<std::mutex> lock(fftw_planner_mutex());
  auto it = plans.find({n, kind});
  if (it != plans.end()) return it->second;
  const int size = static_cast<int>(n);
  const unsigned flags = FFTW_ESTIMATE | FFTW_UNALIGNED;  // ESTIMATE: never touches the arrays' contents
  auto* c_in = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * static_cast<std::size_t>(n)));
  auto* c_out = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * static_cast<std::size_t>(n)));
  auto* r = static_cast<float*>(fftwf_malloc(sizeof(float) * static_cast<std::size_t>(n)));
  fftwf_plan plan = nullptr;
  switch (kind) {
    case PlanKind::c2c_forward: plan = fftwf_plan_dft_1d(size, c_in, c_out, FFTW_FORWARD, flags); break;
    case PlanKind::c2c_backward: plan = fftwf_plan_dft_1d(size, c_in, c_out, FFTW_BACKWARD, flags); break;
    case PlanKind::r2c: plan = fftwf_plan_dft_r2c_1d(size, r, c_out, flags); break;
    case PlanKind::c2r: plan = fftwf_plan_dft_c2r_1d(size, c_in, r, flags); break;
  }
  fftwf_free(c_in);
  fftwf_free(c_out);
  fftwf_free(r);
  VIDKV_ASSERT(plan != nullptr, "FFTW could not plan a transform of length ", n);
  plans.emplace(std::make_pair(n, kind), plan);
  return plan;
}

}  // namespace

std::mutex& fftw_planner_mutex() {
  static std::mutex mutex;
  return mutex;
}

std::int64_t fft_components(SignFft kind, std::int64_t n) { return kind == SignFft::complex ? 2 * n : n; }

void fft_forward_rows(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  VIDKV_ASSERT(kind != SignFft::off && n > 0, "fft_forward_rows needs a transform and n > 0");
  const auto un = static_cast<std::size_t>(n);
  std::vector<std::complex<float>> spectrum(un);
  if (kind == SignFft::complex) {
    std::vector<std::complex<float>> signal(un);
    fftwf_plan plan = cached_plan(n, PlanKind::c2c_forward);
    for (std::int64_t t = 0; t < rows; ++t) {
      for (std::size_t c = 0; c < un; ++c) {
        signal[c] = {in[t * n + static_cast<std::int64_t>(c)], 0.0f};
      }
      fftwf_execute_dft(plan, as_fftw(signal.data()), as_fftw(spectrum.data()));
      float* o = out + t * 2 * n;
      for (std::size_t k = 0; k < un; ++k) {
        o[2 * k] = spectrum[k].real();
        o[2 * k + 1] = spectrum[k].imag();
      }
    }
    return;
  }
  std::vector<float> signal(un);
  fftwf_plan plan = cached_plan(n, PlanKind::r2c);
  for (std::int64_t t = 0; t < rows; ++t) {
    for (std::size_t c = 0; c < un; ++c) signal[c] = in[t * n + static_cast<std::int64_t>(c)];
    fftwf_execute_dft_r2c(plan, signal.data(), as_fftw(spectrum.data()));
    float* o = out + t * n;
    std::size_t i = 0;
    o[i++] = spectrum[0].real();
    for (std::size_t k = 1; 2 * k < un; ++k) {  // k = 1 .. ceil(n/2) - 1
      o[i++] = spectrum[k].real();
      o[i++] = spectrum[k].imag();
    }
    if (un % 2 == 0 && un > 1) o[i++] = spectrum[un / 2].real();
    VIDKV_ASSERT(i == un, "real FFT packing wrote ", i, " of ", n, " reals");
  }
}

void fft_inverse_rows(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  VIDKV_ASSERT(kind != SignFft::off && n > 0, "fft_inverse_rows needs a transform and n > 0");
  const auto un = static_cast<std::size_t>(n);
  const float inv_n = 1.0f / static_cast<float>(n);
  std::vector<std::complex<float>> spectrum(un);
  if (kind == SignFft::complex) {
    std::vector<std::complex<float>> signal(un);
    fftwf_plan plan = cached_plan(n, PlanKind::c2c_backward);
    for (std::int64_t t = 0; t < rows; ++t) {
      const float* c = in + t * 2 * n;
      for (std::size_t k = 0; k < un; ++k) {
        spectrum[k] = {c[2 * k], c[2 * k + 1]};
      }
      fftwf_execute_dft(plan, as_fftw(spectrum.data()), as_fftw(signal.data()));
      for (std::size_t j = 0; j < un; ++j) out[t * n + static_cast<std::int64_t>(j)] = signal[j].real() * inv_n;
    }
    return;
  }
  std::vector<float> signal(un);
  fftwf_plan plan = cached_plan(n, PlanKind::c2r);
  for (std::int64_t t = 0; t < rows; ++t) {
    const float* c = in + t * n;
    std::size_t i = 0;
    spectrum[0] = {c[i++], 0.0f};
    for (std::size_t k = 1; 2 * k < un; ++k) {
      const float re = c[i++];
      spectrum[k] = {re, c[i++]};
    }
    if (un % 2 == 0 && un > 1) {
      spectrum[un / 2] = {c[i++], 0.0f};
    }
    // c2r overwrites its input; `spectrum` is rebuilt for every token.
    fftwf_execute_dft_c2r(plan, as_fftw(spectrum.data()), signal.data());
    for (std::size_t j = 0; j < un; ++j) out[t * n + static_cast<std::int64_t>(j)] = signal[j] * inv_n;
  }
}

}  // namespace vidkv
