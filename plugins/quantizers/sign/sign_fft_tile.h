// sign: the channel-axis FFT of ONE token (row) as straight-line scalar code, for power-of-two n in [16, 128]:
// the fused CUDA kernels of sign.cu run it one token per thread, in registers, and mixed_channel_fused_kernels.cuh's
// encode half a token per thread (forward_half_first_pass / forward_half_finish). It performs, value for value, the
// operations of the AVX-512 transforms of sign_fft_avx512.cpp (same radix-2 decimation-in-frequency graph, same
// real-FFT split, same twiddle tables rounded once from double, the same FMAs and separately rounded products), so
// its results are bit-identical to fft_forward_rows_avx512 / fft_inverse_rows_avx512 (tests/cpp/
// test_sign_cuda_helpers.cpp checks that on the CPU) and the error bound derived there, fft_avx512_error_factor(n),
// holds for it as it stands:
//   forward |X^_k - X_k| <= F(n) u sum_j |x_j|;  inverse |x^_j - x_j| <= F(n) u (2/n) sum |Y| (stored bins),
//   F(n) = 10.01 (log2 n + 2), u = 2^-24.
// Component orders (sign_fft.h): real [Re X0, Re X1, Im X1, ..., Re X(n/2)] (n reals), complex [Re X0, Im X0, ...]
// (2n reals); the inverse divides by n and keeps the real part (complex: of the full, non-Hermitian spectrum).
//
// Rounding: on the device every operation is an explicit round-to-nearest intrinsic (__fadd_rn, __fmul_rn,
// __fmaf_rn), which nvcc never contracts; on the host plain + - * (the callers are compiled with
// -ffp-contract=off or for a target without FMA instructions) and std::fma. C++17, no exceptions, header only.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "vidkv/core/host_device.h"

#if defined(__CUDACC__)
#define VIDKV_FFT_INLINE __host__ __device__ __forceinline__
#else
#define VIDKV_FFT_INLINE inline __attribute__((always_inline))
#endif

namespace vidkv::sign_fft_tile {

constexpr int kMinN = 16;
constexpr int kMaxN = 128;

// True for the widths this file handles: a power of two in [kMinN, kMaxN].
VIDKV_HOST_DEVICE constexpr bool applies(std::int64_t n) { return n >= kMinN && n <= kMaxN && (n & (n - 1)) == 0; }

// The twiddle tables of sign_fft_avx512.cpp (struct Twiddles there), entry h + j for h a power of two < kMaxN,
// j < h: re/im = cos / -sin(pi j / h) rounded once from double (exactly 1, 0 at j = 0 and 0, -1 at 4 j = 2 h);
// half = w / 2 (the forward split's factor), inv = w / (2h) (the inverse split's W_n^k / n at n = 2h). All
// scalings are by powers of two, so exact. 3 KiB: passed to kernels by value (kernel parameter space).
struct Twiddles {
  float re[kMaxN];
  float im[kMaxN];
  float half_re[kMaxN];
  float half_im[kMaxN];
  float inv_re[kMaxN];
  float inv_im[kMaxN];
};

inline Twiddles make_twiddles() {
  Twiddles t{};
  const double pi = 3.14159265358979323846264338327950288;
  t.re[0] = 1.0f;
  t.im[0] = 0.0f;
  for (int h = 1; h < kMaxN; h *= 2)
    for (int j = 0; j < h; ++j) {
      float c = static_cast<float>(std::cos(pi * j / h)), s = static_cast<float>(-std::sin(pi * j / h));
      if (j == 0) c = 1.0f, s = 0.0f;
      if (4 * j == 2 * h) c = 0.0f, s = -1.0f;
      t.re[h + j] = c;
      t.im[h + j] = s;
      t.half_re[h + j] = 0.5f * c;
      t.half_im[h + j] = 0.5f * s;
      t.inv_re[h + j] = c / static_cast<float>(2 * h);
      t.inv_im[h + j] = s / static_cast<float>(2 * h);
    }
  return t;
}

// The tables made once per process, for the host code that passes them to kernels (sign.cu's fused tile kernels and
// mixed_channel's fused kernels).
inline const Twiddles& twiddles() {
  static const Twiddles t = make_twiddles();
  return t;
}

// Calls f(std::integral_constant<int, N>, std::bool_constant<Complex>) for a width n = 2N in {16, 32, 64, 128} (the
// kernels' template arguments: N the half length, Complex the complex FFT's tiles) and returns true; returns false
// without calling f for any other n (the caller reports it).
template <class F>
bool dispatch_width(std::int64_t n, bool complex, F&& f) {
  auto with_kind = [&](auto half) {
    if (complex) {
      f(half, std::true_type{});
    } else {
      f(half, std::false_type{});
    }
  };
  switch (n) {
    case 16: with_kind(std::integral_constant<int, 8>{}); return true;
    case 32: with_kind(std::integral_constant<int, 16>{}); return true;
    case 64: with_kind(std::integral_constant<int, 32>{}); return true;
    case 128: with_kind(std::integral_constant<int, 64>{}); return true;
    default: return false;
  }
}

// Correctly rounded fp32 operations, never contracted.
VIDKV_FFT_INLINE float add(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fadd_rn(a, b);
#else
  return a + b;
#endif
}
VIDKV_FFT_INLINE float sub(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fsub_rn(a, b);
#else
  return a - b;
#endif
}
VIDKV_FFT_INLINE float mul(float a, float b) {
#if defined(__CUDA_ARCH__)
  return __fmul_rn(a, b);
#else
  return a * b;
#endif
}
// a * b + c, rounded once (_mm512_fmadd_ps).
VIDKV_FFT_INLINE float fma(float a, float b, float c) {
#if defined(__CUDA_ARCH__)
  return __fmaf_rn(a, b, c);
#else
  return std::fma(a, b, c);
#endif
}
// a * b - c (_mm512_fmsub_ps) and -(a * b) + c (_mm512_fnmadd_ps), rounded once: negation is exact.
VIDKV_FFT_INLINE float fms(float a, float b, float c) { return fma(a, b, -c); }
VIDKV_FFT_INLINE float fnma(float a, float b, float c) { return fma(-a, b, c); }

// i < 2^bits with its `bits` low bits reversed, bits <= 7. Written without a loop: nvcc then folds it for the
// constant arguments of the unrolled loops (a loop here stays a runtime loop and sends the arrays it indexes to
// local memory).
VIDKV_HOST_DEVICE constexpr int bit_reverse(int i, int bits) {
  const int r = ((i & 1) << 6) | ((i & 2) << 4) | ((i & 4) << 2) | (i & 8) | ((i & 16) >> 2) | ((i & 32) >> 4) | ((i & 64) >> 6);
  return r >> (7 - bits);
}
static_assert(bit_reverse(1, 3) == 4 && bit_reverse(6, 3) == 3 && bit_reverse(1, 6) == 32 && bit_reverse(0, 1) == 0,
              "bit reversal");
VIDKV_HOST_DEVICE constexpr int log2_int(int n) {
  int b = 0;
  while ((1 << b) < n) ++b;
  return b;
}

// t = d * w (forward) or d * conj(w) (Conj), as sign_fft_avx512.cpp's twiddle().
template <bool Conj>
VIDKV_FFT_INLINE void twiddle(float dr, float di, float wr, float wi, float* tr, float* ti) {
  if constexpr (!Conj) {
    *tr = fms(dr, wr, mul(di, wi));
    *ti = fma(dr, wi, mul(di, wr));
  } else {
    *tr = fma(dr, wr, mul(di, wi));
    *ti = fms(di, wr, mul(dr, wi));
  }
}

// Radix-2 DIF butterfly of span h at offset j (sign_fft_avx512.cpp's butterfly()).
template <bool Inverse>
VIDKV_FFT_INLINE void butterfly(float& ar, float& ai, float& br, float& bi, int h, int j, const Twiddles& tw) {
  const float dr = sub(ar, br), di = sub(ai, bi);
  ar = add(ar, br);
  ai = add(ai, bi);
  if (j == 0) {
    br = dr;
    bi = di;
  } else if (4 * j == 2 * h) {  // w = -i (forward), +i (inverse)
    br = Inverse ? sub(0.0f, di) : di;
    bi = Inverse ? dr : sub(0.0f, dr);
  } else {
    twiddle<Inverse>(dr, di, tw.re[h + j], tw.im[h + j], &br, &bi);
  }
}

// In-place radix-2 DIF DFT of length N on split planes, result in bit-reversed order (sign_fft_avx512.cpp's dif():
// the same butterflies on the same values; the order in which independent butterflies run does not change bits).
template <int N, bool Inverse>
VIDKV_FFT_INLINE void dif(float* re, float* im, const Twiddles& tw) {
  if constexpr (N == 2) {
    butterfly<Inverse>(re[0], im[0], re[1], im[1], 1, 0, tw);
  } else {
    constexpr int q = N / 4;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int j = 0; j < q; ++j) {
      float r0 = re[j], i0 = im[j], r1 = re[j + q], i1 = im[j + q];
      float r2 = re[j + 2 * q], i2 = im[j + 2 * q], r3 = re[j + 3 * q], i3 = im[j + 3 * q];
      butterfly<Inverse>(r0, i0, r2, i2, 2 * q, j, tw);
      butterfly<Inverse>(r1, i1, r3, i3, 2 * q, j + q, tw);
      butterfly<Inverse>(r0, i0, r1, i1, q, j, tw);
      butterfly<Inverse>(r2, i2, r3, i3, q, j, tw);
      re[j] = r0, im[j] = i0, re[j + q] = r1, im[j + q] = i1;
      re[j + 2 * q] = r2, im[j + 2 * q] = i2, re[j + 3 * q] = r3, im[j + 3 * q] = i3;
    }
    if constexpr (q > 1) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
      for (int k = 0; k < 4; ++k) dif<q, Inverse>(re + k * q, im + k * q, tw);
    }
  }
}

// The real forward's split (sign_fft_avx512.cpp's forward_split()): Z (bit-reversed) -> x[c], c < 2N.
template <int N>
VIDKV_FFT_INLINE void forward_split(const float* re, const float* im, float* x, const Twiddles& tw) {
  constexpr int n = 2 * N;
  constexpr int bits = log2_int(N);
  x[0] = add(re[0], im[0]);
  x[n - 1] = sub(re[0], im[0]);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 1; 2 * k <= N; ++k) {
    const int p = bit_reverse(k, bits), q = bit_reverse(N - k, bits);
    const float ar = re[p], ai = im[p], br = re[q], bi = im[q];
    const float er = add(ar, br), ei = sub(ai, bi);
    const float or_ = add(ai, bi), oi = sub(br, ar);
    float tr, ti;
    twiddle<false>(or_, oi, tw.half_re[N + k], tw.half_im[N + k], &tr, &ti);
    x[2 * k - 1] = fma(0.5f, er, tr);
    x[2 * k] = fma(0.5f, ei, ti);
    if (2 * k != N) {
      x[2 * (N - k) - 1] = fms(0.5f, er, tr);
      x[2 * (N - k)] = fnma(0.5f, ei, ti);
    }
  }
}

// The real inverse's split (sign_fft_avx512.cpp's inverse_split()): x (real order) -> Z (natural order), / n.
template <int N>
VIDKV_FFT_INLINE void inverse_split(const float* x, float* re, float* im, const Twiddles& tw) {
  constexpr int n = 2 * N;
  const float s = 1.0f / static_cast<float>(n);  // exact: n is a power of two
  re[0] = mul(add(x[0], x[n - 1]), s);
  im[0] = mul(sub(x[0], x[n - 1]), s);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 1; 2 * k <= N; ++k) {
    const float ar = x[2 * k - 1], ai = x[2 * k], br = x[2 * (N - k) - 1], bi = x[2 * (N - k)];
    const float er = add(ar, br), ei = sub(ai, bi);
    const float dr = sub(ar, br), di = add(ai, bi);
    float for_, foi;
    twiddle<true>(dr, di, tw.inv_re[N + k], tw.inv_im[N + k], &for_, &foi);
    re[k] = fms(s, er, foi);
    im[k] = fma(s, ei, for_);
    if (2 * k != N) {
      re[N - k] = fma(s, er, foi);
      im[N - k] = fnma(s, ei, for_);
    }
  }
}

// Forward transform of one token of n = 2N channels: load(c) gives channel c (c < n), store(c, v) receives
// component c (c < n for the real kind, 2n for Complex). Every load happens before the first store, so load and
// store may address the same row.
template <int N, bool Complex, class Load, class Store>
VIDKV_FFT_INLINE void forward_row(Load load, Store store, const Twiddles& tw) {
  constexpr int n = 2 * N;
  float re[N], im[N], x[n];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < N; ++j) {
    re[j] = load(2 * j);
    im[j] = load(2 * j + 1);
  }
  dif<N, false>(re, im, tw);
  forward_split<N>(re, im, x, tw);
  if constexpr (!Complex) {
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int c = 0; c < n; ++c) store(c, x[c]);
  } else {
    // Hermitian completion (sign_fft_avx512.cpp's forward_tile): X_0 = (x0, 0), X_N = (x[n-1], 0),
    // X_k = (x[2k-1], x[2k]) for 0 < k < N, X_{n-k} = conj X_k (imaginary part 0 - x, as _mm512_sub_ps(zero, .)).
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 0; k < n; ++k) {
      float r, i;
      if (k == 0) {
        r = x[0], i = 0.0f;
      } else if (k == N) {
        r = x[n - 1], i = 0.0f;
      } else if (k < N) {
        r = x[2 * k - 1], i = x[2 * k];
      } else {
        r = x[2 * (n - k) - 1], i = sub(0.0f, x[2 * (n - k)]);
      }
      store(2 * k, r);
      store(2 * k + 1, i);
    }
  }
}

// forward_row on two threads per token (or two calls on the host): half H in {0, 1} computes the components of the
// frequencies k with k % 2 == H (real order: x[2k-1], x[2k], and for H = 0 also x[0] and x[n-1]; complex order:
// bins k and n - k), with the same operations on the same values as forward_row, so bit-identical components. Why
// the halves are independent after the first pass: dif's first pass (butterflies of span N/2 and N/4) leaves four
// sub-blocks of N/4 positions that later passes never mix; in bit-reversed order the first two hold the even
// frequencies and the last two the odd ones, and forward_split pairs Z_k with Z_{N-k}, of k's parity (N even).
// Half 0 needs only the sums of the span-N/2 butterflies, half 1 only their twiddled differences.
//   forward_half_first_pass<N, H>(load, re, im, tw): every load (load(c), c < n, as forward_row's) and the first
//     pass; re / im [N / 2] receive the half's two sub-blocks.
//   forward_half_finish<N, Complex, H>(re, im, store, tw): the sub-blocks' remaining passes and the half's split;
//     store(c, v) as forward_row's, for the half's components only.
// Between the two calls the caller may let another thread's loads of the same row finish (store may then address
// the loaded row).
template <int N, int H, class Load>
VIDKV_FFT_INLINE void forward_half_first_pass(Load load, float* re, float* im, const Twiddles& tw) {
  static_assert(N >= 4 && H >= 0 && H <= 1, "a half of a transform of at least 8 channels");
  constexpr int q = N / 4;
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < q; ++j) {
    float r0 = load(2 * j), i0 = load(2 * j + 1), r1 = load(2 * (j + q)), i1 = load(2 * (j + q) + 1);
    const float r2 = load(2 * (j + 2 * q)), i2 = load(2 * (j + 2 * q) + 1);
    const float r3 = load(2 * (j + 3 * q)), i3 = load(2 * (j + 3 * q) + 1);
    float ar, ai, br, bi;  // the half's pair of the span-2q butterflies' outputs (butterfly(): a + b, or (a - b) w)
    if constexpr (H == 0) {
      ar = add(r0, r2), ai = add(i0, i2);
      br = add(r1, r3), bi = add(i1, i3);
    } else {
      float t0r = r0, t0i = i0, t2r = r2, t2i = i2, t1r = r1, t1i = i1, t3r = r3, t3i = i3;
      butterfly<false>(t0r, t0i, t2r, t2i, 2 * q, j, tw);
      butterfly<false>(t1r, t1i, t3r, t3i, 2 * q, j + q, tw);
      ar = t2r, ai = t2i, br = t3r, bi = t3i;
    }
    butterfly<false>(ar, ai, br, bi, q, j, tw);
    re[j] = ar, im[j] = ai, re[j + q] = br, im[j + q] = bi;
  }
}

template <int N, bool Complex, int H, class Store>
VIDKV_FFT_INLINE void forward_half_finish(float* re, float* im, Store store, const Twiddles& tw) {
  constexpr int n = 2 * N, q = N / 4, bits = log2_int(N);
  if constexpr (q > 1) {
    dif<q, false>(re, im, tw);
    dif<q, false>(re + q, im + q, tw);
  }
  // Position p of the full bit-reversed array is re[p - H * N / 2] here.
  const auto at = [&](int p, const float* plane) { return plane[p - H * (N / 2)]; };
  const auto put = [&](int k, float r, float i) {  // bin k of the complex order and its conjugate n - k
    store(2 * k, r);
    store(2 * k + 1, i);
    if (k != 0 && k != N) {
      store(2 * (n - k), r);
      store(2 * (n - k) + 1, sub(0.0f, i));
    }
  };
  if constexpr (H == 0) {
    const float x0 = add(re[0], im[0]), xn = sub(re[0], im[0]);
    if constexpr (Complex) {
      put(0, x0, 0.0f);
      put(N, xn, 0.0f);
    } else {
      store(0, x0);
      store(n - 1, xn);
    }
  }
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int k = 1; 2 * k <= N; ++k) {
    if (k % 2 != H) continue;
    const int p = bit_reverse(k, bits), pq = bit_reverse(N - k, bits);
    const float ar = at(p, re), ai = at(p, im), br = at(pq, re), bi = at(pq, im);
    const float er = add(ar, br), ei = sub(ai, bi);
    const float or_ = add(ai, bi), oi = sub(br, ar);
    float tr, ti;
    twiddle<false>(or_, oi, tw.half_re[N + k], tw.half_im[N + k], &tr, &ti);
    const float x1 = fma(0.5f, er, tr), x2 = fma(0.5f, ei, ti);  // x[2k - 1], x[2k]
    if constexpr (Complex) put(k, x1, x2);
    else store(2 * k - 1, x1), store(2 * k, x2);
    if (2 * k != N) {
      const float y1 = fms(0.5f, er, tr), y2 = fnma(0.5f, ei, ti);  // x[2(N - k) - 1], x[2(N - k)]
      if constexpr (Complex) put(N - k, y1, y2);
      else store(2 * (N - k) - 1, y1), store(2 * (N - k), y2);
    }
  }
}

// Inverse of one token: load(c) gives decoded component c (c < n, or 2n for Complex), store(j, v) receives output
// channel j (j < n): Re of the inverse DFT divided by n. Every load happens before the first store.
template <int N, bool Complex, class Load, class Store>
VIDKV_FFT_INLINE void inverse_row(Load load, Store store, const Twiddles& tw) {
  constexpr int n = 2 * N;
  constexpr int bits = log2_int(N);
  float re[N], im[N], x[Complex ? 2 * n : n];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int c = 0; c < (Complex ? 2 * n : n); ++c) x[c] = load(c);
  if constexpr (Complex) {
    // H_k = (Y_k + conj Y_{n-k}) / 2 in the real order, bottom up (sign_fft_avx512.cpp's inverse_tile).
    const float re_n = x[2 * N];
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
    for (int k = 1; k < N; ++k) {
      const float r = mul(0.5f, add(x[2 * k], x[2 * (n - k)]));
      const float i = mul(0.5f, sub(x[2 * k + 1], x[2 * (n - k) + 1]));
      x[2 * k - 1] = r;
      x[2 * k] = i;
    }
    x[n - 1] = re_n;
  }
  inverse_split<N>(x, re, im, tw);
  dif<N, true>(re, im, tw);
#if defined(__CUDA_ARCH__)
#pragma unroll
#endif
  for (int j = 0; j < N; ++j) {  // z_j = x_{2j} + i x_{2j+1} sits at bit-reversed position
    const int p = bit_reverse(j, bits);
    store(2 * j, re[p]);
    store(2 * j + 1, im[p]);
  }
}

}  // namespace vidkv::sign_fft_tile
