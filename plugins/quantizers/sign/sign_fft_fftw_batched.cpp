// FFTW batched channel FFT of the sign quantizer (contract and bound: sign_fft_fftw_batched.h).
#include "vidkv/plugins/quantizers/sign/sign_fft_fftw_batched.h"

#include <fftw3.h>

#include <algorithm>
#include <cstring>
#include <map>
#include <mutex>
#include <tuple>

#include "vidkv/core/error.h"

namespace vidkv {

namespace {

// One thread's plans and the aligned buffers they were planned on (plans run through fftwf_execute on exactly
// these buffers, so they never need the new-array functions' alignment rules). Created / destroyed under the
// planner mutex shared with the reference's plan cache (FFTW's planner is not thread-safe).
struct BatchPlans {
  std::int64_t n = 0, batch = 0;
  float* real = nullptr;                // batch * n
  fftwf_complex* spectrum = nullptr;    // batch * (n/2 + 1)
  fftwf_plan r2c = nullptr, c2r = nullptr;

  BatchPlans(std::int64_t n_, std::int64_t batch_) : n(n_), batch(batch_) {
    const std::int64_t bins = n / 2 + 1;
    real = static_cast<float*>(fftwf_malloc(sizeof(float) * static_cast<std::size_t>(batch * n)));
    spectrum = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * static_cast<std::size_t>(batch * bins)));
    VIDKV_ASSERT(real && spectrum, "fftwf_malloc failed for a batch of ", batch, " rows of ", n);
    const int size = static_cast<int>(n);
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    // ESTIMATE: deterministic plans (the same bits on every run), and planning never touches the buffers.
    r2c = fftwf_plan_many_dft_r2c(1, &size, static_cast<int>(batch), real, nullptr, 1, size, spectrum, nullptr, 1,
                                  static_cast<int>(bins), FFTW_ESTIMATE);
    c2r = fftwf_plan_many_dft_c2r(1, &size, static_cast<int>(batch), spectrum, nullptr, 1, static_cast<int>(bins), real,
                                  nullptr, 1, size, FFTW_ESTIMATE);
    VIDKV_ASSERT(r2c && c2r, "FFTW could not plan a batch of ", batch, " real transforms of length ", n);
  }
  BatchPlans(const BatchPlans&) = delete;
  BatchPlans& operator=(const BatchPlans&) = delete;
  ~BatchPlans() {
    std::lock_guard<std::mutex> lock(fftw_planner_mutex());
    fftwf_destroy_plan(r2c);
    fftwf_destroy_plan(c2r);
    fftwf_free(real);
    fftwf_free(spectrum);
  }
};

BatchPlans& plans_for(std::int64_t n, std::int64_t batch) {
  thread_local std::map<std::pair<std::int64_t, std::int64_t>, BatchPlans> cache;
  auto it = cache.find({n, batch});
  if (it == cache.end())
    it = cache.emplace(std::piecewise_construct, std::forward_as_tuple(n, batch), std::forward_as_tuple(n, batch)).first;
  return it->second;
}

// Runs fn(plans, first_row, chunk_rows) over chunks of kFftwBatchRows rows.
template <class Fn>
void over_chunks(std::int64_t rows, std::int64_t n, const Fn& fn) {
  for (std::int64_t r0 = 0; r0 < rows; r0 += kFftwBatchRows) {
    const std::int64_t b = std::min(kFftwBatchRows, rows - r0);
    fn(plans_for(n, b), r0, b);
  }
}

}  // namespace

void fft_forward_rows_fftw_batched(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  VIDKV_ASSERT(kind != SignFft::off && n > 0, "fft_forward_rows_fftw_batched needs a transform and n > 0");
  const std::int64_t w = fft_components(kind, n), bins = n / 2 + 1;
  over_chunks(rows, n, [&](BatchPlans& p, std::int64_t r0, std::int64_t b) {
    std::memcpy(p.real, in + r0 * n, sizeof(float) * static_cast<std::size_t>(b * n));
    fftwf_execute(p.r2c);
    for (std::int64_t t = 0; t < b; ++t) {
      const float* f = reinterpret_cast<const float*>(p.spectrum + t * bins);  // Re X0, Im X0, Re X1, ...
      float* o = out + (r0 + t) * w;
      if (kind == SignFft::real) {
        // [Re X0, Re X1, Im X1, ..., (Re X(n/2))]: f[0], then the n - 1 floats f[2 .. n] (sign_fft.h).
        o[0] = f[0];
        std::memcpy(o + 1, f + 2, sizeof(float) * static_cast<std::size_t>(n - 1));
        continue;
      }
      // Complex: bins 0 .. n/2 as computed, the rest their conjugate mirrors.
      std::memcpy(o, f, sizeof(float) * static_cast<std::size_t>(2 * bins));
      for (std::int64_t k = bins; k < n; ++k) {
        o[2 * k] = f[2 * (n - k)];
        o[2 * k + 1] = -f[2 * (n - k) + 1];
      }
    }
  });
}

void fft_inverse_rows_fftw_batched(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  VIDKV_ASSERT(kind != SignFft::off && n > 0, "fft_inverse_rows_fftw_batched needs a transform and n > 0");
  const std::int64_t w = fft_components(kind, n), bins = n / 2 + 1;
  const float inv_n = 1.0f / static_cast<float>(n);
  over_chunks(rows, n, [&](BatchPlans& p, std::int64_t r0, std::int64_t b) {
    for (std::int64_t t = 0; t < b; ++t) {
      const float* c = in + (r0 + t) * w;
      float* f = reinterpret_cast<float*>(p.spectrum + t * bins);
      if (kind == SignFft::real) {
        f[0] = c[0];
        f[1] = 0.0f;
        std::memcpy(f + 2, c + 1, sizeof(float) * static_cast<std::size_t>(n - 1));
        if (n % 2 == 0) f[n + 1] = 0.0f;
        continue;
      }
      // Hermitian part H_k = (Y_k + conj(Y_{n-k})) / 2 (the halving is exact); c2r ignores Im H_0 (and Im H_{n/2}).
      for (std::int64_t k = 0; k < bins; ++k) {
        const std::int64_t m = (n - k) % n;
        f[2 * k] = (c[2 * k] + c[2 * m]) * 0.5f;
        f[2 * k + 1] = (c[2 * k + 1] - c[2 * m + 1]) * 0.5f;
      }
    }
    fftwf_execute(p.c2r);  // overwrites the spectra, rebuilt for every chunk
    for (std::int64_t i = 0; i < b * n; ++i) out[r0 * n + i] = p.real[i] * inv_n;
  });
}

}  // namespace vidkv
