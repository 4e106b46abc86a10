// Test helper: the exact (double) DFT oracles of the sign quantizer's channel FFT, in sign_fft.h's component order,
// written out from its description. Used by the tests of every FFT implementation (FFTW batched, AVX-512, the CUDA
// helpers) against their derived bounds (sign_fft_tolerance.h).
//   complex: Re X_0, Im X_0, ..., Re X_{n-1}, Im X_{n-1}
//   real:    X_0, (Re X_k, Im X_k) for k = 1 .. ceil(n/2) - 1, then X_{n/2} when n is even
#pragma once

#include <complex>
#include <cstdint>
#include <vector>

#include "vidkv/plugins/quantizers/sign/sign_fft.h"

namespace vidkv::test::sign_fft_exact {

inline constexpr double kPi = 3.14159265358979323846;

// X_k = sum_j x_j exp(-2 pi i j k / n), the angle reduced exactly (j k mod n).
inline std::vector<std::complex<double>> exact_dft(const float* x, std::int64_t n) {
  std::vector<std::complex<double>> X(static_cast<std::size_t>(n));
  for (std::int64_t k = 0; k < n; ++k) {
    std::complex<double> acc = 0;
    for (std::int64_t j = 0; j < n; ++j) acc += double(x[j]) * std::polar(1.0, -2.0 * kPi * double((j * k) % n) / double(n));
    X[std::size_t(k)] = acc;
  }
  return X;
}

// The exact forward transform of a row of n values, in the kind's component order.
inline std::vector<double> exact_forward(SignFft kind, const float* x, std::int64_t n) {
  const auto X = exact_dft(x, n);
  std::vector<double> out;
  if (kind == SignFft::complex) {
    for (const auto& v : X) out.push_back(v.real()), out.push_back(v.imag());
    return out;
  }
  out.push_back(X[0].real());
  for (std::int64_t k = 1; 2 * k < n; ++k) out.push_back(X[std::size_t(k)].real()), out.push_back(X[std::size_t(k)].imag());
  if (n % 2 == 0 && n > 1) out.push_back(X[std::size_t(n / 2)].real());
  return out;
}

// Re(IDFT(Y)) / n of a row of components (real kind: Y is the Hermitian completion of the stored bins).
inline std::vector<double> exact_inverse(SignFft kind, const float* c, std::int64_t n) {
  std::vector<std::complex<double>> Y(static_cast<std::size_t>(n));
  if (kind == SignFft::complex) {
    for (std::int64_t k = 0; k < n; ++k) Y[std::size_t(k)] = {c[2 * k], c[2 * k + 1]};
  } else {
    Y[0] = c[0];
    for (std::int64_t k = 1; 2 * k < n; ++k) {
      Y[std::size_t(k)] = {c[2 * k - 1], c[2 * k]};
      Y[std::size_t(n - k)] = std::conj(Y[std::size_t(k)]);
    }
    if (n % 2 == 0 && n > 1) Y[std::size_t(n / 2)] = c[n - 1];
  }
  std::vector<double> x(static_cast<std::size_t>(n));
  for (std::int64_t j = 0; j < n; ++j) {
    std::complex<double> acc = 0;
    for (std::int64_t k = 0; k < n; ++k) acc += Y[std::size_t(k)] * std::polar(1.0, 2.0 * kPi * double((j * k) % n) / double(n));
    x[std::size_t(j)] = acc.real() / double(n);
  }
  return x;
}

}  // namespace vidkv::test::sign_fft_exact
