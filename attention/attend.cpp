#include "vidkv/attention/attend.h"

#include <Eigen/Core>
#include <cmath>

#include "vidkv/core/error.h"

namespace vidkv {

std::vector<double> attend(const double* q, std::int64_t rows, const double* k, const double* v, std::int64_t tokens,
                           std::int64_t channels) {
  VIDKV_REQUIRE(tokens >= 1 && rows >= 1 && channels >= 1, ShapeError, "attend: ", rows, " queries over ", tokens,
                " tokens of ", channels, " channels");
  using Matrix = Eigen::Matrix<double, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  const Eigen::Map<const Matrix> Q(q, rows, channels), K(k, tokens, channels), V(v, tokens, channels);
  Matrix s = (Q * K.transpose()) / std::sqrt(static_cast<double>(channels));
  for (Eigen::Index r = 0; r < s.rows(); ++r) {
    const double m = s.row(r).maxCoeff();
    s.row(r) = (s.row(r).array() - m).exp().matrix();
    s.row(r) /= s.row(r).sum();
  }
  std::vector<double> out(static_cast<std::size_t>(rows * channels));
  Eigen::Map<Matrix>(out.data(), rows, channels) = s * V;
  return out;
}

}  // namespace vidkv
