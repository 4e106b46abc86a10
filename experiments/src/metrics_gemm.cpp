// The dense kernels of the optimised metric path (metrics_gemm.h), compiled twice: as part of vidkv_experiments
// for baseline x86-64 (namespace portable) and, from experiments/CMakeLists.txt, with -mavx2 -mfma and
// VIDKV_METRICS_GEMM_AVX2 (namespace avx2). Eigen picks its packet width at compile time, so each build gets its
// own GEMM; the macro below renames Eigen's namespace per build so the two sets of Eigen template instances never
// merge at link time (the same Eigen function compiled for AVX2 and for baseline would otherwise be one symbol).
// Nothing from the standard library that could be emitted out of line is used here for the same reason.
//
// Precision (the derivation of the tolerance is in tests/cpp/test_metrics.cpp):
//   - logits S = Q K^T and D = Q (K - K')^T are fp32 products of inner length dim (each entry within
//     gamma_dim ||q|| ||k|| of the exact value, gamma_n = n u / (1 - n u), u = 2^-24); D is computed from the
//     difference K - K' (rounded once) so the logit error ||s - s'|| does not come from a cancellation;
//   - the softmax in fp32, its sums in double (8 partial sums per row, added in lane order): e_j =
//     expf((S_j - max S) / sqrt(d)) and e'_j from S' = fl(S - D) the same way (Eigen's vectorised expf, within about
//     2 ulp); z = sum e, z' = sum e', sum_j e_j D_j, sum S^2 and sum D^2 in double; KL(p || p') =
//     sum_j p_j (s_j - s'_j) - (lse(s) - lse(s')), the reference's sum_j p_j (log p_j - log p'_j) written without a
//     logarithm per key, lse(s) = max S / sqrt(d) + log z; p_j = e_j fl(1 / z) in fp32. The roundings act like
//     logit errors of a few u (Qm (Km + Dm) / sqrt(d) + 1), next to the GEMM's d u Qm Km / sqrt(d);
//   - outputs: the four products [P - P'; P] V and [P; P'] (V - V') (P, P - P', P' in fp32, P stored once)
//     in fp32 over blocks of kKeyBlock keys, each block's result added in double, so a rounding error of the fp32
//     accumulation grows with the block (gamma_512), not with the context length. o - o' = (P - P') V + P' (V - V'),
//     o - o'_key_only = (P - P') V, o - o'_value_only = P (V - V'): every difference the metrics need is a product
//     of its own, never a difference of two nearly equal products.
#include "vidkv/experiments/src/metrics_gemm.h"

#include <cmath>

#if defined(VIDKV_METRICS_GEMM_AVX2)
#define Eigen vidkv_eigen_avx2
#define VIDKV_METRICS_GEMM_ISA avx2
#else
#define Eigen vidkv_eigen_portable
#define VIDKV_METRICS_GEMM_ISA portable
#endif
#define EIGEN_DONT_PARALLELIZE
#include <Eigen/Core>

namespace vidkv::metrics_gemm::VIDKV_METRICS_GEMM_ISA {

namespace {

using Index = Eigen::Index;
using MatrixF = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixD = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MapF = Eigen::Map<MatrixF>;
using ConstMapF = Eigen::Map<const MatrixF>;

// Keys per fp32 output product; the blocks' results are added in double.
constexpr Index kKeyBlock = 512;

// Per-thread buffers, kept between calls (a layer's heads have one shape, so they are allocated once).
struct Scratch {
  MatrixF dk, dv, p, block;
  MatrixD d1, d2;
  Eigen::ArrayXf x, xh;  // a row's exp arguments, then (in place) e and e'
};

Scratch& scratch() {
  thread_local Scratch s;
  return s;
}

// max over rows of sum_c x[r][c]^2, in double ([rows, cols] row-major fp32).
double max_row_square_norm(const float* x, Index rows, Index cols) {
  double best = 0;
  for (Index r = 0; r < rows; ++r) {
    double lane[8] = {};
    Index c = 0;
    for (; c + 8 <= cols; c += 8)
      for (Index l = 0; l < 8; ++l) lane[l] += static_cast<double>(x[r * cols + c + l]) * x[r * cols + c + l];
    double sum = 0;
    for (; c < cols; ++c) sum += static_cast<double>(x[r * cols + c]) * x[r * cols + c];
    for (Index l = 0; l < 8; ++l) sum += lane[l];
    best = best < sum ? sum : best;
  }
  return best;
}

// acc[i] += x[i] for i < n (fp32 added to double).
void add_to(double* acc, const float* x, Index n) {
  for (Index i = 0; i < n; ++i) acc[i] += static_cast<double>(x[i]);
}

}  // namespace

void attention(const AttentionProblem& pr, float* logits, float* logit_diff, AttentionRowSums* out, KeyNorms* norms) {
  const Index m_rows = pr.rows, n_keys = pr.keys, dim = pr.dim;
  Scratch& w = scratch();
  const ConstMapF k(pr.key, n_keys, dim), kh(pr.key_hat, n_keys, dim), q(pr.queries, m_rows, dim);
  MapF s_all(logits, m_rows, n_keys), d_all(logit_diff, m_rows, n_keys);
  w.dk.resize(n_keys, dim);
  w.dk = k - kh;
  s_all.noalias() = q * k.transpose();
  d_all.noalias() = q * w.dk.transpose();
  norms->key = std::sqrt(max_row_square_norm(pr.key, n_keys, dim));
  norms->diff = std::sqrt(max_row_square_norm(w.dk.data(), n_keys, dim));

  const double inv_sqrt_d = 1.0 / std::sqrt(static_cast<double>(dim)), inv_d = 1.0 / static_cast<double>(dim);
  const float c = static_cast<float>(inv_sqrt_d);
  // rows [0, M): P - P'; [M, 2M): P; [2M, 3M): P'. [P - P'; P] V and [P; P'] (V - V') are two contiguous row
  // ranges of the one matrix, so P is written once.
  if (pr.outputs) w.p.resize(3 * m_rows, n_keys);
  w.x.resize(n_keys);
  w.xh.resize(n_keys);
  constexpr Index kLanes = 8;  // independent partial sums and maxima, vectorised by the compiler
  for (Index i = 0; i < m_rows; ++i) {
    const Index n = pr.keys_seen[i];
    const float* s_row = logits + i * n_keys;
    const float* d_row = logit_diff + i * n_keys;
    // Pass 1: sum S^2 and sum D^2 in double (scaled by 1/d after); the fp32 maxima of S and S' = fl(S - D).
    double r2[kLanes] = {}, d2[kLanes] = {};
    float mx_l[kLanes], mxh_l[kLanes];
    for (Index l = 0; l < kLanes; ++l) mx_l[l] = mxh_l[l] = -INFINITY;
    Index j = 0;
    for (; j + kLanes <= n; j += kLanes)
      for (Index l = 0; l < kLanes; ++l) {
        const float a = s_row[j + l], b = d_row[j + l], sh = a - b;
        r2[l] += static_cast<double>(a) * a;
        d2[l] += static_cast<double>(b) * b;
        mx_l[l] = mx_l[l] < a ? a : mx_l[l];
        mxh_l[l] = mxh_l[l] < sh ? sh : mxh_l[l];
      }
    for (; j < n; ++j) {
      const float a = s_row[j], b = d_row[j], sh = a - b;
      r2[0] += static_cast<double>(a) * a;
      d2[0] += static_cast<double>(b) * b;
      mx_l[0] = mx_l[0] < a ? a : mx_l[0];
      mxh_l[0] = mxh_l[0] < sh ? sh : mxh_l[0];
    }
    AttentionRowSums& r = out[i];
    r = AttentionRowSums{};
    float mx = -INFINITY, mxh = -INFINITY;
    for (Index l = 0; l < kLanes; ++l) {
      r.logit_r2 += r2[l];
      r.logit_d2 += d2[l];
      mx = mx < mx_l[l] ? mx_l[l] : mx;
      mxh = mxh < mxh_l[l] ? mxh_l[l] : mxh;
    }
    r.logit_r2 *= inv_d;
    r.logit_d2 *= inv_d;
    // Pass 2: e = exp((S - max S) c), e' = exp((S' - max S') c) in fp32 (Eigen's vectorised expf).
    float* x = w.x.data();
    float* xh = w.xh.data();
    for (j = 0; j < n; ++j) {
      x[j] = (s_row[j] - mx) * c;
      xh[j] = ((s_row[j] - d_row[j]) - mxh) * c;
    }
    w.x.head(n) = w.x.head(n).exp();
    w.xh.head(n) = w.xh.head(n).exp();
    // Pass 3: z = sum e, z' = sum e', sum e (S - S') in double.
    double z_l[kLanes] = {}, zh_l[kLanes] = {}, eds_l[kLanes] = {};
    for (j = 0; j + kLanes <= n; j += kLanes)
      for (Index l = 0; l < kLanes; ++l) {
        z_l[l] += static_cast<double>(x[j + l]);
        zh_l[l] += static_cast<double>(xh[j + l]);
        eds_l[l] += static_cast<double>(x[j + l]) * d_row[j + l];
      }
    for (; j < n; ++j) {
      z_l[0] += static_cast<double>(x[j]);
      zh_l[0] += static_cast<double>(xh[j]);
      eds_l[0] += static_cast<double>(x[j]) * d_row[j];
    }
    double z = 0, zh = 0, eds = 0;
    for (Index l = 0; l < kLanes; ++l) {
      z += z_l[l];
      zh += zh_l[l];
      eds += eds_l[l];
    }
    // lse(s) = max s + log z with max s = max S / sqrt(d) (in double: the same scaling as e's argument, whose
    // fp32 rounding the tolerance counts).
    r.kl = eds * inv_sqrt_d / z - ((static_cast<double>(mx) * inv_sqrt_d + std::log(z)) -
                                   (static_cast<double>(mxh) * inv_sqrt_d + std::log(zh)));
    if (pr.outputs) {
      // Pass 4: P - P', P and P' rows in fp32 (p = e * fl(1 / z)).
      const float rz = static_cast<float>(1.0 / z), rzh = static_cast<float>(1.0 / zh);
      float* dp = w.p.data() + i * n_keys;
      float* p = w.p.data() + (m_rows + i) * n_keys;
      float* ph = w.p.data() + (2 * m_rows + i) * n_keys;
      for (j = 0; j < n; ++j) {
        const float a = x[j] * rz, b = xh[j] * rzh;
        p[j] = a;
        ph[j] = b;
        dp[j] = a - b;
      }
      for (j = n; j < n_keys; ++j) dp[j] = p[j] = ph[j] = 0.0f;
    }
  }
  if (!pr.outputs) return;

  const ConstMapF v(pr.value, n_keys, dim), vh(pr.value_hat, n_keys, dim);
  w.dv.resize(n_keys, dim);
  w.dv = v - vh;
  w.d1.setZero(2 * m_rows, dim);  // rows [0, M): (P - P') V; [M, 2M): P V
  w.d2.setZero(2 * m_rows, dim);  // rows [0, M): P (V - V'); [M, 2M): P' (V - V')
  for (Index b0 = 0; b0 < n_keys; b0 += kKeyBlock) {
    const Index nb = std::min(kKeyBlock, n_keys - b0);
    w.block.noalias() = w.p.middleRows(0, 2 * m_rows).middleCols(b0, nb) * v.middleRows(b0, nb);
    add_to(w.d1.data(), w.block.data(), w.block.size());
    w.block.noalias() = w.p.middleRows(m_rows, 2 * m_rows).middleCols(b0, nb) * w.dv.middleRows(b0, nb);
    add_to(w.d2.data(), w.block.data(), w.block.size());
  }
  for (Index i = 0; i < m_rows; ++i) {
    AttentionRowSums& r = out[i];
    r.o_ref2 = w.d1.row(m_rows + i).squaredNorm();                       // o = P V
    r.o_k2 = w.d1.row(i).squaredNorm();                                  // (P - P') V
    r.o_v2 = w.d2.row(i).squaredNorm();                                  // P (V - V')
    r.o_both2 = (w.d1.row(i) + w.d2.row(m_rows + i)).squaredNorm();      // (P - P') V + P' (V - V')
  }
}

ErrorSumValues error_sums(const float* x, const float* y, std::int64_t n) {
  // 8 independent lanes per sum (vectorised by the compiler without reassociation), combined in lane order.
  constexpr int kLanes = 8;
  double r[kLanes] = {}, h[kLanes] = {}, d[kLanes] = {}, p[kLanes] = {};
  std::int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const double a = x[i + l], b = y[i + l];
      r[l] += a * a;
      h[l] += b * b;
      d[l] += (a - b) * (a - b);
      p[l] += a * b;
    }
  ErrorSumValues s;
  for (int l = 0; l < kLanes; ++l) {
    s.ref2 += r[l];
    s.hat2 += h[l];
    s.diff2 += d[l];
    s.dot += p[l];
  }
  for (; i < n; ++i) {
    const double a = x[i], b = y[i];
    s.ref2 += a * a;
    s.hat2 += b * b;
    s.diff2 += (a - b) * (a - b);
    s.dot += a * b;
  }
  return s;
}

}  // namespace vidkv::metrics_gemm::VIDKV_METRICS_GEMM_ISA
