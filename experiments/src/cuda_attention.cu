// Attention metrics on the device (cuda_attention.h): one block per (query head, query).
#include <cuda_runtime.h>

#include <cmath>

#include "vidkv/core/cuda/device_memory.h"
#include "vidkv/core/error.h"
#include "vidkv/experiments/src/cuda_attention.h"

namespace vidkv::attention_cuda {

namespace {

constexpr int kThreads = 256;
constexpr int kTopK = 32;

// Fixed-tree block sum (every thread gets the result).
__device__ double block_sum(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) red[threadIdx.x] += red[threadIdx.x + w];
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();
  return r;
}

__device__ double block_max(double v, double* red) {
  red[threadIdx.x] = v;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (static_cast<int>(threadIdx.x) < w) red[threadIdx.x] = fmax(red[threadIdx.x], red[threadIdx.x + w]);
    __syncthreads();
  }
  const double r = red[0];
  __syncthreads();
  return r;
}

// a comes before b in the top-k order: larger probability first, then the lower index.
__device__ bool before(double pa, std::int64_t a, double pb, std::int64_t b) { return pa > pb || (pa == pb && a < b); }

// The k first indices of p[0, n) in the top-k order, into sel[0, k) (shared). Round r picks the first element
// that comes after pick r - 1.
__device__ void top_k(const double* p, std::int64_t n, int k, std::int64_t* sel, double* red_p, std::int64_t* red_i) {
  double prev_p = 0;
  std::int64_t prev = -1;
  for (int r = 0; r < k; ++r) {
    double best_p = -1;
    std::int64_t best = -1;
    for (std::int64_t j = threadIdx.x; j < n; j += kThreads) {
      const double pj = p[j];
      if (prev >= 0 && !before(prev_p, prev, pj, j)) continue;  // already picked
      if (best < 0 || before(pj, j, best_p, best)) {
        best_p = pj;
        best = j;
      }
    }
    red_p[threadIdx.x] = best_p;
    red_i[threadIdx.x] = best;
    __syncthreads();
    for (int w = kThreads / 2; w > 0; w /= 2) {
      if (static_cast<int>(threadIdx.x) < w) {
        const std::int64_t o = red_i[threadIdx.x + w];
        if (o >= 0 && (red_i[threadIdx.x] < 0 || before(red_p[threadIdx.x + w], o, red_p[threadIdx.x], red_i[threadIdx.x]))) {
          red_p[threadIdx.x] = red_p[threadIdx.x + w];
          red_i[threadIdx.x] = o;
        }
      }
      __syncthreads();
    }
    prev_p = red_p[0];
    prev = red_i[0];
    if (threadIdx.x == 0) sel[r] = prev;
    __syncthreads();
  }
}

__global__ void attention_items(Problem pr, double* scratch, double* out) {
  __shared__ double red[kThreads];
  __shared__ std::int64_t red_i[kThreads];
  __shared__ std::int64_t top_a[kTopK], top_b[kTopK];
  extern __shared__ double outs[];  // 4 * dim: o, o(K',V'), o(K',V), o(K,V')
  const std::int64_t item = blockIdx.x;
  const std::int64_t qh = item / pr.count, qi = item % pr.count;
  double* res = out + item * kItemValues;
  const std::int64_t pos = pr.positions[qi];
  if (pos < 0 || pos >= pr.tokens) {
    if (threadIdx.x < kItemValues) res[threadIdx.x] = 0.0;
    return;
  }
  const std::int64_t d = pr.dim, n = pos + 1;
  const std::int64_t kv = qh / (pr.q_heads / pr.kv_heads);
  const float* q = pr.queries + (qh * pr.count + qi) * d;
  const float* K = pr.key + kv * pr.tokens * d;
  const float* Kh = pr.key_hat + kv * pr.tokens * d;
  const float* V = pr.value + kv * pr.tokens * d;
  const float* Vh = pr.value_hat + kv * pr.tokens * d;
  double* p = scratch + item * 2 * pr.tokens;
  double* ph = p + pr.tokens;
  const double inv_sqrt_d = 1.0 / sqrt(static_cast<double>(d));

  // Logits (the CPU's values: ascending c, no FMA), their error sums, then the maxima.
  double ld2 = 0, lr2 = 0, mx = -INFINITY, mxh = -INFINITY;
  for (std::int64_t j = threadIdx.x; j < n; j += kThreads) {
    double a = 0, b = 0;
    for (std::int64_t c = 0; c < d; ++c) {
      const double qc = q[c];
      a = __dadd_rn(a, __dmul_rn(qc, static_cast<double>(K[j * d + c])));
      b = __dadd_rn(b, __dmul_rn(qc, static_cast<double>(Kh[j * d + c])));
    }
    const double s = __dmul_rn(a, inv_sqrt_d), sh = __dmul_rn(b, inv_sqrt_d);
    p[j] = s;
    ph[j] = sh;
    ld2 += (s - sh) * (s - sh);
    lr2 += s * s;
    mx = fmax(mx, s);
    mxh = fmax(mxh, sh);
  }
  ld2 = block_sum(ld2, red);
  lr2 = block_sum(lr2, red);
  mx = block_max(mx, red);
  mxh = block_max(mxh, red);
  // Softmax: p_j = exp(s_j - max) / z.
  double z = 0, zh = 0;
  for (std::int64_t j = threadIdx.x; j < n; j += kThreads) {
    const double e = exp(p[j] - mx), eh = exp(ph[j] - mxh);
    p[j] = e;
    ph[j] = eh;
    z += e;
    zh += eh;
  }
  z = block_sum(z, red);
  zh = block_sum(zh, red);
  double kl = 0;
  for (std::int64_t j = threadIdx.x; j < n; j += kThreads) {
    const double pj = p[j] / z, phj = ph[j] / zh;
    p[j] = pj;
    ph[j] = phj;
    if (pj > 0) kl += pj * (log(pj) - log(fmax(phj, 1e-300)));
  }
  kl = block_sum(kl, red);  // also orders the writes of p, ph before the reads below
  const int k = static_cast<int>(n < kTopK ? n : kTopK);
  top_k(p, n, k, top_a, red, red_i);
  top_k(ph, n, k, top_b, red, red_i);
  // Outputs per channel, keys in ascending order (the CPU's order), no FMA.
  for (std::int64_t c = threadIdx.x; c < d; c += kThreads) {
    double o = 0, ob = 0, ok = 0, ov = 0;
    for (std::int64_t j = 0; j < n; ++j) {
      const double v = V[j * d + c], vh = Vh[j * d + c], pj = p[j], phj = ph[j];
      o = __dadd_rn(o, __dmul_rn(pj, v));
      ob = __dadd_rn(ob, __dmul_rn(phj, vh));
      ok = __dadd_rn(ok, __dmul_rn(phj, v));
      ov = __dadd_rn(ov, __dmul_rn(pj, vh));
    }
    outs[c] = o;
    outs[d + c] = ob;
    outs[2 * d + c] = ok;
    outs[3 * d + c] = ov;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    int common = 0;
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b) common += top_a[a] == top_b[b];
    double o_ref2 = 0, o_both2 = 0, o_k2 = 0, o_v2 = 0;
    for (std::int64_t c = 0; c < d; ++c) {  // ascending c, as the CPU
      const double o = outs[c], eb = o - outs[d + c], ek = o - outs[2 * d + c], ev = o - outs[3 * d + c];
      o_ref2 = __dadd_rn(o_ref2, __dmul_rn(o, o));
      o_both2 = __dadd_rn(o_both2, __dmul_rn(eb, eb));
      o_k2 = __dadd_rn(o_k2, __dmul_rn(ek, ek));
      o_v2 = __dadd_rn(o_v2, __dmul_rn(ev, ev));
    }
    res[0] = 1.0;
    res[1] = ld2;
    res[2] = lr2;
    res[3] = kl > 0 ? kl : 0.0;
    res[4] = static_cast<double>(common) / static_cast<double>(k);
    res[5] = o_ref2;
    res[6] = o_both2;
    res[7] = o_k2;
    res[8] = o_v2;
  }
}

}  // namespace

std::size_t scratch_bytes(const Problem& p) {
  return static_cast<std::size_t>(2 * p.q_heads * p.count * p.tokens) * sizeof(double);
}

void attention_sums(const Problem& p, double* scratch, double* out, void* stream) {
  const std::int64_t items = p.q_heads * p.count;
  if (items <= 0) return;
  const std::size_t shared = static_cast<std::size_t>(4 * p.dim) * sizeof(double);
  auto s = static_cast<cudaStream_t>(stream);
  VIDKV_REQUIRE(p.dim <= 1024, NotSupportedError, "attention metrics on cuda: head_dim ", p.dim, " > 1024");
  VIDKV_REQUIRE(p.kv_heads > 0 && p.q_heads % p.kv_heads == 0, ShapeError, "attention metrics on cuda: ", p.q_heads,
                " query heads are not a multiple of ", p.kv_heads, " KV heads");
  attention_items<<<static_cast<unsigned>(items), kThreads, shared, s>>>(p, scratch, out);
  check_launch("metrics: attention_items");
}

}  // namespace vidkv::attention_cuda
