#include "vidkv/quantization/group_kernels.h"

#include <cmath>

#include "vidkv/quantization/cpu_dispatch.h"

namespace vidkv::group_kernels {

namespace {
constexpr int kLanes = 16;  // one AVX-512 register of floats, two AVX2 ones
}

VIDKV_CPU_CLONES
void min_max(const float* x, std::int64_t n, float* mn_out, float* mx_out) {
  float mn = x[0], mx = x[0];
  if (n >= 2 * kLanes) {
    float lo[kLanes], hi[kLanes];
    for (int l = 0; l < kLanes; ++l) lo[l] = hi[l] = x[l];
    std::int64_t j = kLanes;
    for (; j + kLanes <= n; j += kLanes)
      for (int l = 0; l < kLanes; ++l) {
        const float v = x[j + l];
        lo[l] = v < lo[l] ? v : lo[l];
        hi[l] = v > hi[l] ? v : hi[l];
      }
    for (; j < n; ++j) {
      lo[0] = x[j] < lo[0] ? x[j] : lo[0];
      hi[0] = x[j] > hi[0] ? x[j] : hi[0];
    }
    for (int w = kLanes / 2; w >= 1; w /= 2)  // tree reduction: log2(kLanes) vector steps
      for (int l = 0; l < w; ++l) {
        lo[l] = lo[l + w] < lo[l] ? lo[l + w] : lo[l];
        hi[l] = hi[l + w] > hi[l] ? hi[l + w] : hi[l];
      }
    mn = lo[0];
    mx = hi[0];
    if (mn != 0.0f && mx != 0.0f) {
      *mn_out = mn;
      *mx_out = mx;
      return;
    }
    mn = mx = x[0];
  }
  for (std::int64_t j = 1; j < n; ++j) {
    mn = x[j] < mn ? x[j] : mn;
    mx = x[j] > mx ? x[j] : mx;
  }
  *mn_out = mn;
  *mx_out = mx;
}

VIDKV_CPU_CLONES
void column_min_max(const float* __restrict x, std::int64_t rows, std::int64_t width, std::int64_t stride,
                    float* __restrict mn, float* __restrict mx) {
  for (std::int64_t c = 0; c < width; ++c) mn[c] = mx[c] = x[c];
  for (std::int64_t r = 1; r < rows; ++r) {
    const float* row = x + r * stride;
    for (std::int64_t c = 0; c < width; ++c) {
      const float v = row[c];
      mn[c] = v < mn[c] ? v : mn[c];
      mx[c] = v > mx[c] ? v : mx[c];
    }
  }
}

VIDKV_CPU_CLONES
void column_abs_sum(const float* __restrict x, std::int64_t rows, std::int64_t width, std::int64_t stride,
                    double* __restrict sums) {
  for (std::int64_t r = 0; r < rows; ++r) {
    const float* row = x + r * stride;
    for (std::int64_t c = 0; c < width; ++c) sums[c] += std::fabs(static_cast<double>(row[c]));
  }
}

}  // namespace vidkv::group_kernels
