#include <cmath>

#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

LUMEN_OP_CASES(softmax){{
    {"softmax_last", {Input::real({4, 7})}, [](const auto& v) { return softmax(v[0], -1); }},
    {"softmax_dim0", {Input::real({5, 3})}, [](const auto& v) { return softmax(v[0], 0); }},
    {"softmax_middle", {Input::real({2, 5, 3})}, [](const auto& v) { return softmax(v[0], 1); }},
    {"softmax_1d", {Input::real({9})}, [](const auto& v) { return v[0].softmax(0); }},
    {"log_softmax_last",
     {Input::real({3, 11})},
     [](const auto& v) { return log_softmax(v[0], -1); }},
    {"log_softmax_middle",
     {Input::real({3, 4, 5})},
     [](const auto& v) { return log_softmax(v[0], 1); }},
    {"log_softmax_dim0", {Input::real({6, 2})}, [](const auto& v) { return v[0].log_softmax(0); }},
}};

// Softmax along `dim` of a contiguous row-major array of `shape`, in double, the textbook way.
std::vector<double> reference(const std::vector<double>& x, const Shape& shape, int64_t dim,
                              bool log) {
  int64_t outer = 1, inner = 1, d = shape[dim];
  for (int64_t i = 0; i < dim; ++i) outer *= shape[i];
  for (size_t i = dim + 1; i < shape.size(); ++i) inner *= shape[i];
  std::vector<double> y(x.size());
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t in = 0; in < inner; ++in) {
      auto at = [&](int64_t j) { return o * d * inner + j * inner + in; };
      double m = x[at(0)];
      for (int64_t j = 1; j < d; ++j) m = std::max(m, x[at(j)]);
      double s = 0;
      for (int64_t j = 0; j < d; ++j) s += std::exp(x[at(j)] - m);
      for (int64_t j = 0; j < d; ++j)
        y[at(j)] = log ? x[at(j)] - m - std::log(s) : std::exp(x[at(j)] - m) / s;
    }
  return y;
}

TEST(Softmax, RowsSumToOneAndMatchDoubleReference) {
  Generator gen(3);
  Tensor x = randn({7, 13}, {}, &gen) * 3.0;
  Tensor y = softmax(x, 1);
  ASSERT_EQ(y.shape(), x.shape());
  ASSERT_EQ(y.dtype(), DType::f32);
  std::vector<double> want = reference(x.to_vector<double>(), {7, 13}, 1, false);
  std::vector<double> got = y.to_vector<double>();
  for (int64_t r = 0; r < 7; ++r) {
    double s = 0;
    for (int64_t j = 0; j < 13; ++j) {
      s += got[r * 13 + j];
      EXPECT_NEAR(got[r * 13 + j], want[r * 13 + j], 1e-6 * want[r * 13 + j] + 1e-9);
    }
    EXPECT_NEAR(s, 1.0, 1e-6) << "row " << r;
  }
}

TEST(Softmax, EveryDimMatchesReferenceInDouble) {
  Generator gen(5);
  Shape shape{3, 4, 5};
  Tensor x = randn(shape, {.dtype = DType::f64}, &gen);
  for (int64_t dim = 0; dim < 3; ++dim)
    for (bool log : {false, true}) {
      std::vector<double> want = reference(x.to_vector<double>(), shape, dim, log);
      std::vector<double> got =
          (log ? log_softmax(x, dim - 3) : softmax(x, dim)).to_vector<double>();
      for (size_t i = 0; i < got.size(); ++i)
        EXPECT_NEAR(got[i], want[i], 1e-14) << "dim " << dim << " log " << log << " at " << i;
    }
}

TEST(Softmax, NonContiguousInputGivesSameValues) {
  Generator gen(11);
  Tensor base = randn({6, 5}, {.dtype = DType::f64}, &gen);
  Tensor xt = base.t();  // [5, 6], strided
  ASSERT_FALSE(xt.is_contiguous());
  EXPECT_EQ(softmax(xt, 1).to_vector<double>(), softmax(xt.contiguous(), 1).to_vector<double>());
  EXPECT_EQ(log_softmax(xt, 0).to_vector<double>(),
            log_softmax(xt.contiguous(), 0).to_vector<double>());
}

TEST(Softmax, LargeLogitsDoNotOverflow) {
  Tensor x = from_vector<float>({1000.f, 1001.f, 1002.f, -1000.f});
  std::vector<double> y = softmax(x, 0).to_vector<double>();
  std::vector<double> ly = log_softmax(x, 0).to_vector<double>();
  // softmax(1000 + [0, 1, 2]) = softmax([0, 1, 2]); the -1000 entry underflows to 0.
  double s = 1 + std::exp(1.0) + std::exp(2.0);
  std::vector<double> want{1 / s, std::exp(1.0) / s, std::exp(2.0) / s, 0.0};
  for (int i = 0; i < 4; ++i) {
    EXPECT_TRUE(std::isfinite(y[i]));
    EXPECT_NEAR(y[i], want[i], 1e-6);
  }
  // log_softmax = x - (1002 + log(s e^-2)) = x - 1000 - log s; f32 keeps ~1e-4 at |y| ~ 1000.
  EXPECT_NEAR(ly[2], 2 - std::log(s), 1e-4);
  EXPECT_NEAR(ly[3], -2000 - std::log(s), 1e-3);  // finite, not -inf
}

TEST(Softmax, MinusInfinityEntriesGetZeroProbability) {
  Tensor x = from_vector<double>({0.0, -INFINITY, 0.0}, {1, 3});
  EXPECT_EQ(softmax(x, 1).to_vector<double>(), (std::vector<double>{0.5, 0.0, 0.5}));
}

TEST(Softmax, GradientOfRowSumIsZero) {
  // sum_j softmax_j = 1 for every x, so its gradient vanishes: dx = y (1 - sum y) = 0.
  Generator gen(2);
  Tensor x = randn({3, 6}, {.dtype = DType::f64}, &gen).requires_grad_();
  softmax(x, 1).sum().backward();
  for (double g : x.grad().to_vector<double>()) EXPECT_NEAR(g, 0.0, 1e-15);
  // d/dx sum_j log_softmax_j = 1 - D softmax.
  Tensor z = x.detach().requires_grad_();
  log_softmax(z, 1).sum().backward();
  std::vector<double> p = softmax(x.detach(), 1).to_vector<double>();
  std::vector<double> g = z.grad().to_vector<double>();
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], 1 - 6 * p[i], 1e-14);
}

TEST(Softmax, HalfComputesInFloat) {
  Generator gen(9);
  Tensor x = randn({4, 33}, {}, &gen);
  std::vector<double> want = softmax(x, 1).to_vector<double>();
  for (DType dt : {DType::f16, DType::bf16}) {
    Tensor y = softmax(x.to(dt), 1);
    EXPECT_EQ(y.dtype(), dt);
    std::vector<double> got = y.to_vector<double>();
    double tol = dt == DType::f16 ? 2e-3 : 1.6e-2;
    for (size_t i = 0; i < got.size(); ++i) EXPECT_NEAR(got[i], want[i], tol * want[i] + 1e-6);
  }
}

TEST(Softmax, ZeroDimTensorIsOne) {
  Tensor y = softmax(scalar_tensor(3.5, {.dtype = DType::f64}), 0);
  EXPECT_EQ(y.dim(), 0);
  EXPECT_EQ(y.item(), 1.0);
  EXPECT_EQ(log_softmax(scalar_tensor(3.5, {.dtype = DType::f64}), -1).item(), 0.0);
}

TEST(Softmax, Errors) {
  EXPECT_THROW_MSG(softmax(zeros({2, 3}, {.dtype = DType::i64}), 1), "softmax", "i64", "[2, 3]");
  EXPECT_THROW_MSG(log_softmax(zeros({2, 3}), 2), "log_softmax", "dim 2", "2 dims");
  EXPECT_THROW_MSG(softmax(Tensor(), 0), "softmax", "undefined");
}

}  // namespace
}  // namespace lumen::testing
