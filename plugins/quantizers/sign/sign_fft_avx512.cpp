// sign: AVX-512 channel-axis FFT (sign_fft_avx512.h) for power-of-two n in [16, 128], 16 rows (tokens) per tile.
//
// Why: FFTW runs one row at a time (~65 ns per 64-point real transform here), a third of the key quantizer's
// time; with the rows in the 16 lanes of a zmm register every butterfly serves 16 tokens at once.
//
// Layout: a 16-row tile is transposed in 16 x 16 blocks (transpose16: 4 levels of 16 shuffles) so that one vector
// holds one column of the 16 rows, written straight into the plane the transform reads (load_columns' column map);
// the transforms then work lane-wise on whole vectors, and the results are transposed back from where they are
// (store_columns' column map: bit-reversed planes, Hermitian completion). A last partial tile (rows % 16) is
// copied into a zero-padded stack tile and back. Measured (n = 64 real, this machine): 16 ns per transform on
// rows that stay in L2, 25 ns on 32768 rows (8 MB each way, memory-bound), FFTW about 75-80 ns.
//
// Real forward (n = 2N): z_j = x_{2j} + i x_{2j+1} (j < N), Z = DFT_N(z) by a radix-2 decimation-in-frequency
// FFT on split re / im planes (output in bit-reversed order, read through kBitRev), then with W = exp(-2 pi i / n)
//   Fe_k = (Z_k + conj Z_{N-k}) / 2,  Fo_k = -i (Z_k - conj Z_{N-k}) / 2     (DFTs of the even / odd samples)
//   X_k = Fe_k + W^k Fo_k,  X_{N-k} = conj(Fe_k - W^k Fo_k)  (k = 1 .. N/2),  X_0 = Re Z_0 + Im Z_0,  X_N = Re Z_0 - Im Z_0.
// Complex forward: the real forward Hermitian-completed, X_{n-k} = conj X_k (Im X_0 = Im X_N = 0).
// Real inverse: Fe_k = (X_k + conj X_{N-k}) / n, Fo_k = (X_k - conj X_{N-k}) conj(W^k) / n (the 1/2 of the
// split and the 1/N of the inverse, folded: exact, powers of two), Z_k = Fe_k + i Fo_k, z = unnormalised
// inverse DFT_N(Z), x_{2j} = Re z_j, x_{2j+1} = Im z_j: the c2r transform divided by n, as FFTW's c2r * (1/n).
// Complex inverse: Re of the complex inverse = the real inverse of the Hermitian part H_k = (Y_k + conj Y_{n-k})/2
// (k = 0 .. N; H_0 = Re Y_0, H_N = Re Y_N), so it is a cheap pre-step of the real inverse.
//
// Twiddles: kTwiddles.re/im[h + j] = cos / -sin(pi j / h) for h a power of two < kFftAvx512MaxN and j < h,
// computed in double and rounded once to float (exact 1, 0, -1 at j = 0 and 4 j = 2 h): the DIF stage of span h
// uses w = W_{2h}^j = entry h + j, and the real split's W_n^k = W_{2N}^k = entry N + k.
//
// Error bound (fft_avx512_error_factor; u = 2^-24, gamma_2 = 2u / (1 - 2u)). Every computed output is a sum over
// the inputs of one contribution per path through the butterfly graph, each step of a path either a complex
// add / sub, rounded per component (a 2x2 perturbation of norm <= u), or a product by a rounded twiddle w^ with
// |w^ - w| <= u (each of cos, sin rounded once, relative <= u; the double values' own error ~1e-16 is far below
// the 1.001 margin) and |fl(w^ b) - w^ b| <= sqrt(2) gamma_2 |w^| |b| (Higham, Accuracy and Stability of
// Numerical Algorithms, 2nd ed., Lemma 3.5; the FMA form used here has the smaller bound 2u, Jeannerod et al. 2017),
// i.e. at most u + sqrt(2) gamma_2 (1 + u) + u <= 5u per radix-2 stage (one add + one twiddle product), and so
// (1 + 5u)^m - 1 <= 5 u m * 1.001 for a path of m <= 10 such stages. The paths of the forward real transform have
// log2(N) = log2(n) - 1 DIF stages and the split (one add, one twiddle product, one add: <= 2 stages' worth), so
// m <= log2(n) + 1; each input x_j reaches X_k along 4 paths of weight 1/2 (via Z_k and Z_{N-k}, each via Fe and
// Fo), and sum_j |z_j| <= sum_j |x_j|, hence |X^_k - X_k| <= 2 * 5u * (log2 n + 1) * 1.001 * sum_j |x_j|. The
// inverse has the mirror-image paths (weight 1/n each, 4 per stored bin, 2 for bins 0 and N), giving
// |x^_j - x_j| <= 10u (log2 n + 1) * 1.001 * (2/n) sum_{k=0..N} |X_k|; the complex inverse's Hermitian pre-step adds
// one add (m <= log2 n + 2) and each Y_k enters one H bin with weight 1/2, giving (2/n) sum_{k<n} |Y_k| with
// log2 n + 2. One factor covers all four: 10 * 1.001 * (log2 n + 2).
#include "vidkv/plugins/quantizers/sign/sign_fft_avx512.h"

#include <array>
#include <cmath>
#include <cstring>

#include "vidkv/quantization/simd/cpu_features.h"

#if defined(VIDKV_HAVE_AVX512_KERNELS) && defined(__AVX512F__)
#include <immintrin.h>
// GCC 12's avx512fintrin.h fills the unused source of unmasked shuffles / unpacks with _mm512_undefined_ps(),
// a self-initialised variable that -Wuninitialized reports at every inlined call (a false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
#endif

namespace vidkv {

double fft_avx512_error_factor(std::int64_t n) {
  const double log2n = std::log2(static_cast<double>(n));
  return 10.0 * 1.001 * (log2n + 2.0);
}

#if defined(VIDKV_HAVE_AVX512_KERNELS) && defined(__AVX512F__)

namespace {

constexpr int kLanes = 16;                             // rows per tile
constexpr int kMaxComponents = 2 * kFftAvx512MaxN;     // widest row (complex kind)

struct Twiddles {
  alignas(64) float re[kFftAvx512MaxN];
  alignas(64) float im[kFftAvx512MaxN];
  // The real split's factors with its exact power-of-two scalings folded in: half = w / 2 (forward),
  // inv[h + j] = w / (2h) (inverse: W_n^k / n at n = 2h = 2N), so that the split needs no separate products.
  alignas(64) float half_re[kFftAvx512MaxN];
  alignas(64) float half_im[kFftAvx512MaxN];
  alignas(64) float inv_re[kFftAvx512MaxN];
  alignas(64) float inv_im[kFftAvx512MaxN];
  Twiddles() {
    const double pi = 3.14159265358979323846264338327950288;
    re[0] = 1.0f;
    im[0] = 0.0f;
    for (int h = 1; h < kFftAvx512MaxN; h *= 2)
      for (int j = 0; j < h; ++j) {
        float c = static_cast<float>(std::cos(pi * j / h)), s = static_cast<float>(-std::sin(pi * j / h));
        if (j == 0) c = 1.0f, s = 0.0f;
        if (4 * j == 2 * h) c = 0.0f, s = -1.0f;
        re[h + j] = c;
        im[h + j] = s;
        half_re[h + j] = 0.5f * c;
        half_im[h + j] = 0.5f * s;
        inv_re[h + j] = c / static_cast<float>(2 * h);
        inv_im[h + j] = s / static_cast<float>(2 * h);
      }
  }
};

const Twiddles& twiddles() {
  static const Twiddles t;
  return t;
}

template <int N>
struct BitRev {
  std::array<int, N> v{};
  constexpr BitRev() {
    int bits = 0;
    while ((1 << bits) < N) ++bits;
    for (int i = 0; i < N; ++i) {
      int r = 0;
      for (int b = 0; b < bits; ++b) r |= ((i >> b) & 1) << (bits - 1 - b);
      v[static_cast<std::size_t>(i)] = r;
    }
  }
};
template <int N>
constexpr BitRev<N> kBitRev{};

inline __m512 unpacklo_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}
inline __m512 unpackhi_pd(__m512 a, __m512 b) {
  return _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)));
}

// r[i] = row i of a 16 x 16 block -> r[c] = column c. Level 1: pairs of rows interleaved per 32 bits; level 2: per
// 64 bits, so u[4g + m] holds, in its 128-bit chunk q, column 4q + m of rows 4g .. 4g+3; levels 3 and 4 move
// 128-bit chunks (0x88: chunks 0, 2 of a then b; 0xdd: chunks 1, 3).
inline void transpose16(__m512* r) {
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int g = 0; g < 4; ++g) {
    u[4 * g + 0] = unpacklo_pd(t[4 * g], t[4 * g + 2]);
    u[4 * g + 1] = unpackhi_pd(t[4 * g], t[4 * g + 2]);
    u[4 * g + 2] = unpacklo_pd(t[4 * g + 1], t[4 * g + 3]);
    u[4 * g + 3] = unpackhi_pd(t[4 * g + 1], t[4 * g + 3]);
  }
  for (int m = 0; m < 4; ++m) {
    // P: columns m, 8+m of row groups 0, 1 (chunks [m/0, 8+m/0, m/1, 8+m/1]); Q: the same for row groups 2, 3;
    // P2, Q2: columns 4+m, 12+m.
    const __m512 p = _mm512_shuffle_f32x4(u[m], u[4 + m], 0x88), p2 = _mm512_shuffle_f32x4(u[m], u[4 + m], 0xdd);
    const __m512 q = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0x88), q2 = _mm512_shuffle_f32x4(u[8 + m], u[12 + m], 0xdd);
    r[m] = _mm512_shuffle_f32x4(p, q, 0x88);
    r[8 + m] = _mm512_shuffle_f32x4(p, q, 0xdd);
    r[4 + m] = _mm512_shuffle_f32x4(p2, q2, 0x88);
    r[12 + m] = _mm512_shuffle_f32x4(p2, q2, 0xdd);
  }
}

// dst(c) = column c (c < Width) of the 16 rows at `in`, rows `stride` floats apart; Width a multiple of 16. dst
// maps a column to where the transform wants it (e.g. the even / odd samples' planes), so no copy follows.
template <int Width, class Dst>
[[gnu::always_inline]] inline void load_columns(const float* in, std::int64_t stride, Dst dst) {
#pragma GCC unroll 16
  for (int c0 = 0; c0 < Width; c0 += kLanes) {
    __m512 b[kLanes];
    for (int r = 0; r < kLanes; ++r) b[r] = _mm512_loadu_ps(in + r * stride + c0);
    transpose16(b);
#pragma GCC unroll 16
    for (int r = 0; r < kLanes; ++r) dst(c0 + r) = b[r];
  }
}

// The inverse: row r of the 16 rows at `out` gets src(c) lane r for c < Width.
template <int Width, class Src>
[[gnu::always_inline]] inline void store_columns(Src src, float* out, std::int64_t stride) {
#pragma GCC unroll 16
  for (int c0 = 0; c0 < Width; c0 += kLanes) {
    __m512 b[kLanes];
#pragma GCC unroll 16
    for (int r = 0; r < kLanes; ++r) b[r] = src(c0 + r);
    transpose16(b);
    for (int r = 0; r < kLanes; ++r) _mm512_storeu_ps(out + r * stride + c0, b[r]);
  }
}

// t = d * w (forward) or d * conj(w) (Inverse), w = (wr, wi) broadcast.
template <bool Conj>
inline void twiddle(__m512 dr, __m512 di, __m512 wr, __m512 wi, __m512* tr, __m512* ti) {
  if constexpr (!Conj) {
    *tr = _mm512_fmsub_ps(dr, wr, _mm512_mul_ps(di, wi));
    *ti = _mm512_fmadd_ps(dr, wi, _mm512_mul_ps(di, wr));
  } else {
    *tr = _mm512_fmadd_ps(dr, wr, _mm512_mul_ps(di, wi));
    *ti = _mm512_fmsub_ps(di, wr, _mm512_mul_ps(dr, wi));
  }
}

// One radix-2 DIF butterfly of span h at offset j: a' = a + b, b' = (a - b) w^j, w = W_{2h} (Inverse: conj);
// the twiddles 1 (j = 0) and -+i (4j = 2h) are applied without products (h, j are compile-time after unrolling).
template <bool Inverse>
[[gnu::always_inline]] inline void butterfly(__m512& ar, __m512& ai, __m512& br, __m512& bi, int h, int j, const Twiddles& tw) {
  const __m512 dr = _mm512_sub_ps(ar, br), di = _mm512_sub_ps(ai, bi);
  ar = _mm512_add_ps(ar, br);
  ai = _mm512_add_ps(ai, bi);
  if (j == 0) {
    br = dr;
    bi = di;
  } else if (4 * j == 2 * h) {  // w = -i (forward), +i (inverse)
    br = Inverse ? _mm512_sub_ps(_mm512_setzero_ps(), di) : di;
    bi = Inverse ? dr : _mm512_sub_ps(_mm512_setzero_ps(), dr);
  } else {
    twiddle<Inverse>(dr, di, _mm512_set1_ps(tw.re[h + j]), _mm512_set1_ps(tw.im[h + j]), &br, &bi);
  }
}

// In-place radix-2 DIF DFT of length N on split planes (forward: exp(-2 pi i jk/N); Inverse: exp(+...),
// unnormalised); the result is in bit-reversed order. The stages of spans N/2 and N/4 are made in one pass over
// the four quarters (4 values in registers per step, the same butterflies and roundings as two radix-2 passes),
// then the quarters recursively, depth first, so that the small sub-transforms stay in registers. Everything is
// unrolled at compile time.
template <int N, bool Inverse>
[[gnu::always_inline]] inline void dif(__m512* re, __m512* im, const Twiddles& tw) {
  if constexpr (N == 2) {
    butterfly<Inverse>(re[0], im[0], re[1], im[1], 1, 0, tw);
  } else {
    constexpr int q = N / 4;
#pragma GCC unroll 64
    for (int j = 0; j < q; ++j) {
      __m512 r0 = re[j], i0 = im[j], r1 = re[j + q], i1 = im[j + q];
      __m512 r2 = re[j + 2 * q], i2 = im[j + 2 * q], r3 = re[j + 3 * q], i3 = im[j + 3 * q];
      butterfly<Inverse>(r0, i0, r2, i2, 2 * q, j, tw);
      butterfly<Inverse>(r1, i1, r3, i3, 2 * q, j + q, tw);
      butterfly<Inverse>(r0, i0, r1, i1, q, j, tw);
      butterfly<Inverse>(r2, i2, r3, i3, q, j, tw);
      re[j] = r0, im[j] = i0, re[j + q] = r1, im[j + q] = i1;
      re[j + 2 * q] = r2, im[j + 2 * q] = i2, re[j + 3 * q] = r3, im[j + 3 * q] = i3;
    }
    if constexpr (q > 1) {
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) dif<q, Inverse>(re + k * q, im + k * q, tw);
    }
  }
}

// The real forward's split: Z (bit-reversed in re / im) -> x[c] (c < n) = [Re X0, Re X1, Im X1, ..., Re XN].
template <int N>
[[gnu::always_inline]] inline void forward_split(const __m512* re, const __m512* im, __m512* x, const Twiddles& tw) {
  constexpr int n = 2 * N;
  const auto& rev = kBitRev<N>.v;
  const __m512 half = _mm512_set1_ps(0.5f);
  x[0] = _mm512_add_ps(re[0], im[0]);
  x[n - 1] = _mm512_sub_ps(re[0], im[0]);
#pragma GCC unroll 64
  for (int k = 1; 2 * k <= N; ++k) {
    const int p = rev[static_cast<std::size_t>(k)], q = rev[static_cast<std::size_t>(N - k)];
    const __m512 ar = re[p], ai = im[p], br = re[q], bi = im[q];
    // 2 Fe = (er, ei), 2 Fo = (or_, oi); t = W^k Fo = (W^k / 2)(2 Fo); X_k = Fe + t = fma(1/2, 2 Fe, t) (the
    // halving is exact, so each output still rounds once after the product, as Fe + t would).
    const __m512 er = _mm512_add_ps(ar, br), ei = _mm512_sub_ps(ai, bi);
    const __m512 or_ = _mm512_add_ps(ai, bi), oi = _mm512_sub_ps(br, ar);
    __m512 tr, ti;
    twiddle<false>(or_, oi, _mm512_set1_ps(tw.half_re[N + k]), _mm512_set1_ps(tw.half_im[N + k]), &tr, &ti);
    x[2 * k - 1] = _mm512_fmadd_ps(half, er, tr);
    x[2 * k] = _mm512_fmadd_ps(half, ei, ti);
    if (2 * k != N) {
      x[2 * (N - k) - 1] = _mm512_fmsub_ps(half, er, tr);
      x[2 * (N - k)] = _mm512_fnmadd_ps(half, ei, ti);
    }
  }
}

// The real inverse's split: components x (real order) -> Z (natural order in re / im), scaled by 1/n.
template <int N>
[[gnu::always_inline]] inline void inverse_split(const __m512* x, __m512* re, __m512* im, const Twiddles& tw) {
  constexpr int n = 2 * N;
  const __m512 s = _mm512_set1_ps(1.0f / static_cast<float>(n));  // exact: n is a power of two
  re[0] = _mm512_mul_ps(_mm512_add_ps(x[0], x[n - 1]), s);
  im[0] = _mm512_mul_ps(_mm512_sub_ps(x[0], x[n - 1]), s);
#pragma GCC unroll 64
  for (int k = 1; 2 * k <= N; ++k) {
    const __m512 ar = x[2 * k - 1], ai = x[2 * k], br = x[2 * (N - k) - 1], bi = x[2 * (N - k)];
    // Fe = s (er, ei), Fo = (dr, di) conj(W^k) s with the exact s = 1/n folded into the factor (inv table) and
    // into fma(s, ., .): each output rounds once after the product, as Fe -+ i Fo would.
    const __m512 er = _mm512_add_ps(ar, br), ei = _mm512_sub_ps(ai, bi);
    const __m512 dr = _mm512_sub_ps(ar, br), di = _mm512_add_ps(ai, bi);
    __m512 for_, foi;
    twiddle<true>(dr, di, _mm512_set1_ps(tw.inv_re[N + k]), _mm512_set1_ps(tw.inv_im[N + k]), &for_, &foi);
    re[k] = _mm512_fmsub_ps(s, er, foi);
    im[k] = _mm512_fmadd_ps(s, ei, for_);
    if (2 * k != N) {
      re[N - k] = _mm512_fmadd_ps(s, er, foi);
      im[N - k] = _mm512_fnmadd_ps(s, ei, for_);
    }
  }
}

// One tile of 16 rows: in (rows in_stride floats apart) -> out (rows out_stride floats apart).
template <int N, bool Complex>
void forward_tile(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride) {
  constexpr int n = 2 * N;
  const Twiddles& tw = twiddles();
  __m512 re[N], im[N], x[n];
  load_columns<n>(in, in_stride, [&](int c) -> __m512& { return (c & 1) ? im[c >> 1] : re[c >> 1]; });
  dif<N, false>(re, im, tw);
  forward_split<N>(re, im, x, tw);
  if constexpr (!Complex) {
    store_columns<n>([&](int c) { return x[c]; }, out, out_stride);
  } else {
    // Hermitian completion: complex slot 2k, 2k+1 holds X_k; X_k = (x[2k-1], x[2k]) for 0 < k < N, X_{n-k} =
    // conj X_k, X_0 = (x[0], 0), X_N = (x[n-1], 0).
    const __m512 zero = _mm512_setzero_ps();
    store_columns<2 * n>(
        [&](int c) {
          const int k = c >> 1;
          const bool imag = c & 1;
          if (k == 0) return imag ? zero : x[0];
          if (k == N) return imag ? zero : x[n - 1];
          if (k < N) return imag ? x[2 * k] : x[2 * k - 1];
          return imag ? _mm512_sub_ps(zero, x[2 * (n - k)]) : x[2 * (n - k) - 1];
        },
        out, out_stride);
  }
}

template <int N, bool Complex>
void inverse_tile(const float* in, std::int64_t in_stride, float* out, std::int64_t out_stride) {
  constexpr int n = 2 * N;
  const Twiddles& tw = twiddles();
  __m512 re[N], im[N], x[Complex ? 2 * n : n];
  load_columns<Complex ? 2 * n : n>(in, in_stride, [&](int c) -> __m512& { return x[c]; });
  if constexpr (Complex) {
    // H_k = (Y_k + conj Y_{n-k}) / 2 in the real order, bottom up (H_k's slots 2k-1, 2k are <= Y_k's 2k, 2k+1).
    const __m512 half = _mm512_set1_ps(0.5f);
    const __m512 re_n = x[2 * N];
#pragma GCC unroll 64
    for (int k = 1; k < N; ++k) {
      const __m512 r = _mm512_mul_ps(half, _mm512_add_ps(x[2 * k], x[2 * (n - k)]));
      const __m512 i = _mm512_mul_ps(half, _mm512_sub_ps(x[2 * k + 1], x[2 * (n - k) + 1]));
      x[2 * k - 1] = r;
      x[2 * k] = i;
    }
    x[n - 1] = re_n;
  }
  inverse_split<N>(x, re, im, tw);
  dif<N, true>(re, im, tw);
  // z_j = x_{2j} + i x_{2j+1} sits at bit-reversed position rev[j].
  const auto& rev = kBitRev<N>.v;
  store_columns<n>([&](int c) { return (c & 1) ? im[rev[static_cast<std::size_t>(c >> 1)]] : re[rev[static_cast<std::size_t>(c >> 1)]]; },
                   out, out_stride);
}

using TileFn = void (*)(const float*, std::int64_t, float*, std::int64_t);

template <bool Forward, bool Complex>
TileFn tile_fn(std::int64_t n) {
  switch (n) {
    case 16: return Forward ? &forward_tile<8, Complex> : &inverse_tile<8, Complex>;
    case 32: return Forward ? &forward_tile<16, Complex> : &inverse_tile<16, Complex>;
    case 64: return Forward ? &forward_tile<32, Complex> : &inverse_tile<32, Complex>;
    case 128: return Forward ? &forward_tile<64, Complex> : &inverse_tile<64, Complex>;
    default: return nullptr;
  }
}

// The next tile's input lines (for reading) and output lines (for writing, prefetchw), so that their transfers
// overlap this tile's arithmetic: a tile is one burst of loads, then only arithmetic, then one burst of stores,
// which the out-of-order window alone cannot overlap (measured: without it a 32768-row block costs about the
// in-cache time plus the time of a copy).
inline void prefetch_tile(const float* in, std::int64_t in_width, float* out, std::int64_t out_width) {
  constexpr std::int64_t kLine = 16;  // floats per 64-byte line
  for (std::int64_t i = 0; i < kLanes * in_width; i += kLine) _mm_prefetch(reinterpret_cast<const char*>(in + i), _MM_HINT_T0);
  // __builtin_prefetch(p, 1, 3) is what GCC's _m_prefetchw expands to; clang has no _m_prefetchw in immintrin.h.
  for (std::int64_t i = 0; i < kLanes * out_width; i += kLine) __builtin_prefetch(out + i, 1, 3);
}

// One tile ahead (measured at n = 64, 32768 rows: 26 ns per forward transform; 2 or 4 tiles ahead 31 / 33 ns,
// no output prefetch 43 ns: the stores' read-for-ownership is the larger part of the wait).
constexpr std::int64_t kAhead = kLanes;

// Full tiles straight from / to the caller's rows; a last partial tile through zero-padded stack tiles.
void run_rows(TileFn fn, const float* in, std::int64_t in_width, std::int64_t rows, float* out, std::int64_t out_width) {
  const std::int64_t full = rows - rows % kLanes;
  for (std::int64_t r = 0; r < full; r += kLanes) {
    if (r + kAhead < full) prefetch_tile(in + (r + kAhead) * in_width, in_width, out + (r + kAhead) * out_width, out_width);
    fn(in + r * in_width, in_width, out + r * out_width, out_width);
  }
  const std::int64_t rest = rows - full;
  if (rest == 0) return;
  alignas(64) float tile_in[kLanes * kMaxComponents];
  alignas(64) float tile_out[kLanes * kMaxComponents];
  std::memset(tile_in, 0, sizeof(float) * static_cast<std::size_t>(kLanes * in_width));
  std::memcpy(tile_in, in + full * in_width, sizeof(float) * static_cast<std::size_t>(rest * in_width));
  fn(tile_in, in_width, tile_out, out_width);
  std::memcpy(out + full * out_width, tile_out, sizeof(float) * static_cast<std::size_t>(rest * out_width));
}

}  // namespace

bool fft_avx512_applies(SignFft kind, std::int64_t n) {
  return kind != SignFft::off && n >= kFftAvx512MinN && n <= kFftAvx512MaxN && (n & (n - 1)) == 0 &&
         simd::avx512_kernels();
}

void fft_forward_rows_avx512(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  const bool complex = kind == SignFft::complex;
  run_rows(complex ? tile_fn<true, true>(n) : tile_fn<true, false>(n), in, n, rows, out, fft_components(kind, n));
}

void fft_inverse_rows_avx512(SignFft kind, const float* in, std::int64_t rows, std::int64_t n, float* out) {
  const bool complex = kind == SignFft::complex;
  run_rows(complex ? tile_fn<false, true>(n) : tile_fn<false, false>(n), in, fft_components(kind, n), rows, out, n);
}

#else

bool fft_avx512_applies(SignFft, std::int64_t) { return false; }
void fft_forward_rows_avx512(SignFft, const float*, std::int64_t, std::int64_t, float*) {}
void fft_inverse_rows_avx512(SignFft, const float*, std::int64_t, std::int64_t, float*) {}

#endif

}  // namespace vidkv
