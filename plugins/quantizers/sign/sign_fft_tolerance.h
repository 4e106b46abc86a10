// sign: the named error bound of a library FFT (cuFFT on the CUDA path of sign.cu, FFTW in the CPU reference) for
// any length n, and the tolerance the CUDA bytes and decodes are held to against the reference (kCufftTolerance,
// tests/cpp/sign_fft_compare.h). The fused CUDA kernels (power-of-two n in [16, 128], sign_fft_tile.h) perform
// the AVX-512 transforms' operations and use their componentwise bound (fft_avx512_error_factor) instead.
//
// Model (cuFFT documentation, "Accuracy and performance": Cooley-Tukey with building blocks for small prime radices
// where n factors into them, Bluestein's algorithm otherwise; FFTW: Cooley-Tukey with codelets, generic or Rader
// codelets for prime factors). u = 2^-24, all arithmetic fp32.
//
// 1. Cooley-Tukey, n = p_1 ... p_L (prime radices). The DFT matrix is a product of L stages A_i (a twiddle
//    diagonal times length-p_i DFTs), each a scaled unitary matrix, ||A_i||_2 = sqrt(p_i), prod ||A_i|| = sqrt(n)
//    = ||DFT_n||_2. If stage i is computed with ||fl(A_i y) - A_i y||_2 <= eta_i ||A_i||_2 ||y||_2, then (Higham,
//    Accuracy and Stability of Numerical Algorithms, 2nd ed., proof of Thm 24.2, which does not need radix 2)
//      ||X^ - X||_2 <= (prod_i (1 + eta_i) - 1) sqrt(n) ||x||_2.
//    A length-p DFT computed directly, each output a sum of p twiddled terms: a twiddle rounded once per component
//    (|w^ - w| <= u), a complex product (<= sqrt(2) gamma_2 |w||y|, Higham Lemma 3.5), the stage's own twiddle
//    (the same again), and p - 1 complex additions in any order (each rounds Re and Im: |error| <= u |sum|, so
//    <= gamma_{p-1} sum |terms|) give per output <= (p - 1 + 2 (1 + 2 sqrt(2)) + small) u sum_j |y_j|
//    <= (p + 7) u ||y||_1 <= (p + 7) u sqrt(p) ||y||_2, a vector of p outputs <= sqrt(p) of that; relative to
//    ||DFT_p||_2 ||y||_2 = sqrt(p) ||y||_2: eta(p) = sqrt(p) (p + 7) u. (Radix-4/8 codelets with internal
//    twiddles +-1, +-i, (+-1 +- i)/sqrt(2) are products of radix-2 stages and stay within their etas.)
//    The real-to-complex / complex-to-real transforms add one radix-2-like split stage: eta(2).
//    E_ct(n) = (1 + eta(2)) prod_i (1 + eta(p_i)) - 1.
// 2. Bluestein (n has a prime factor > 127, cuFFT's largest building block), m = 2^ceil(log2(2n - 1)):
//    X = c . (IDFT_m(B . DFT_m(c . x)) / m) with a unimodular chirp c and B = DFT_m(b) of the 2n - 1 chirp values
//    b: the gain is max|B| <= ||b||_1 = 2n - 1; the chirp products (2, <= 4u each), the pointwise product (<= 4u),
//    the 1/m (exact), two FFTs of size m (E_ct(m) each, relative) and the error of the computed B (<= E_ct(m)
//    sqrt(m (2n - 1)) per component, relative to 2n - 1 at most sqrt(2) E_ct(m) since m < 2 (2n - 1)) give
//      ||X^ - X||_2 <= ((2 + sqrt(2)) E_ct(m) + 12u) (2n - 1) ||x||_2 (first order).
//    Written as E(n) sqrt(n) ||x||_2: E_b(n) = ((2 + sqrt(2)) E_ct(m) + 12u) (2n - 1) / sqrt(n).
// 3. E(n) = E_ct(n) or E_b(n), times 1.01 for the second-order terms. Per component, |X^_k - X_k| <=
//    ||X^ - X||_2, so the bounds below are per component:
//      forward  |X^_k - X_k| <= E(n) sqrt(n) ||x||_2                                         (x: the token's row)
//      inverse  |x^_j - x_j| <= (E(n) + 3u) sqrt(2 / n) ||y||_2   (y: the token's stored components; the inverse
//               of a spectrum Y has gain 1/sqrt(n) in 2-norm, the Hermitian completion / part has ||H||_2 <=
//               sqrt(2) ||y||_2, and the Hermitian pre-step (an add and a product) and the product by 1/n add 3u).
// Both libraries are within these bounds of the exact DFT (tests: FFTW on the CPU, test_sign_cuda_helpers.cpp;
// cuFFT on the GPU, test_cuda_sign.cpp), so their outputs differ by at most twice the bound.
#pragma once

#include <cmath>
#include <cstdint>

namespace vidkv::sign_fft_tolerance {

constexpr double kU = 0x1p-24;        // fp32 unit roundoff
constexpr std::int64_t kMaxRadix = 127;  // cuFFT's largest Cooley-Tukey building block

// eta(p) of a prime-radix stage (see 1. above).
inline double stage_eta(std::int64_t p) { return std::sqrt(static_cast<double>(p)) * static_cast<double>(p + 7) * kU; }

// E_ct(n): Cooley-Tukey over the prime factors of n, plus the real split stage; 0 for n == 1 plus that stage.
inline double cooley_tukey_factor(std::int64_t n) {
  double prod = 1.0 + stage_eta(2);
  for (std::int64_t p = 2; n > 1; ++p) {
    if (p * p > n) p = n;  // what remains is prime
    while (n % p == 0) {
      prod *= 1.0 + stage_eta(p);
      n /= p;
    }
  }
  return prod - 1.0;
}

inline std::int64_t largest_prime_factor(std::int64_t n) {
  std::int64_t largest = 1;
  for (std::int64_t p = 2; n > 1; ++p) {
    if (p * p > n) p = n;
    while (n % p == 0) {
      largest = p;
      n /= p;
    }
  }
  return largest;
}

// E(n) of 3. above: the normwise relative error factor of a library transform of length n.
inline double library_fft_error_factor(std::int64_t n) {
  if (largest_prime_factor(n) <= kMaxRadix) return 1.01 * cooley_tukey_factor(n);
  std::int64_t m = 1;
  while (m < 2 * n - 1) m *= 2;
  const double e = ((2.0 + std::sqrt(2.0)) * cooley_tukey_factor(m) + 12.0 * kU) * static_cast<double>(2 * n - 1) /
                   std::sqrt(static_cast<double>(n));
  return 1.01 * e;
}

// Per component of a token's forward transform, given ||x||_2 of its n channel values.
inline double forward_bound(std::int64_t n, double row_l2) {
  return library_fft_error_factor(n) * std::sqrt(static_cast<double>(n)) * row_l2;
}

// Per output channel of a token's inverse, given ||y||_2 of its stored (decoded) components.
inline double inverse_bound(std::int64_t n, double components_l2) {
  return (library_fft_error_factor(n) + 3.0 * kU) * std::sqrt(2.0 / static_cast<double>(n)) * components_l2;
}

}  // namespace vidkv::sign_fft_tolerance
