// The channel-axis FFT of VidKV's 1-bit normal key channels (algorithms.md 3.3), fp32 through FFTW (any n).
//
// Per token, the n channel values x[0..n) are mapped to `fft_components(kind, n)` reals:
//   complex: the release's interleaving of the full n-point unnormalised forward FFT,
//            [Re X0, Im X0, Re X1, Im X1, ..., Re X(n-1), Im X(n-1)]  (2n reals)
//   real:    the n/2 + 1 bins of the real FFT without the identically zero imaginary parts, in this order:
//            [Re X0, Re X1, Im X1, Re X2, Im X2, ..., Re Xm, Im Xm, (Re X(n/2) if n is even)], m = ceil(n/2) - 1
//            (exactly n reals: 1 + 2m + (n even ? 1 : 0) = n)
// The inverse rebuilds the bins and applies the inverse FFT divided by n, keeping the real part: complex uses the
// full complex inverse on the (generally non-Hermitian after quantization) spectrum and takes Re; real uses the
// complex-to-real inverse, which is the same as Hermitian-completing the n/2 + 1 bins.
//
// FFTW plans are created once per (n, kind) in a process-wide cache (creation serialised by a mutex, FFTW's
// planner is not thread-safe; plans live until exit) with FFTW_ESTIMATE | FFTW_UNALIGNED and run through the
// new-array execute functions, so one plan serves every thread and buffer.
#pragma once

#include <cstdint>
#include <mutex>

namespace vidkv {

enum class SignFft : std::uint8_t { off, complex, real };

// Reals per token after the transform: n (off), 2n (complex), n (real).
std::int64_t fft_components(SignFft kind, std::int64_t n);

// in: rows * n fp32 (row-major, one row per token); out: rows * fft_components(kind, n) fp32. kind != off.
void fft_forward_rows(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);
// in: rows * fft_components(kind, n) fp32; out: rows * n fp32, Re of the inverse FFT divided by n. kind != off.
void fft_inverse_rows(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out);

// The one mutex around every FFTW plan creation and destruction in the process (the reference's cache here and
// the batched plans of sign_fft_fftw_batched.cpp): FFTW's planner is not thread-safe, only execution is.
std::mutex& fftw_planner_mutex();

}  // namespace vidkv
