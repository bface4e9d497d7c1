#include <cmath>
#include <limits>

#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

LUMEN_OP_CASES(pool){{
    {"max_pool2d_basic",
     {Input::real({2, 3, 6, 6})},
     [](const auto& v) {
       return F::max_pool2d(v[0], {2, 2});
     }},
    {"max_pool2d_odd_padded",
     {Input::real({1, 2, 7, 5})},
     [](const auto& v) {
       return F::max_pool2d(v[0], {3, 3}, {{2, 2}}, {1, 1});
     }},
    {"max_pool2d_overlap_dilated",
     {Input::real({2, 2, 7, 8})},
     [](const auto& v) {
       return F::max_pool2d(v[0], {2, 3}, {{1, 2}}, {1, 1}, {2, 1});
     }},
    {"max_pool2d_unbatched",
     {Input::real({3, 5, 5})},
     [](const auto& v) {
       return F::max_pool2d(v[0], {2, 2}, {{1, 1}});
     }},
    {"avg_pool2d_basic",
     {Input::real({2, 3, 6, 4})},
     [](const auto& v) {
       return F::avg_pool2d(v[0], {2, 2});
     }},
    {"avg_pool2d_padded",
     {Input::real({1, 2, 7, 5})},
     [](const auto& v) {
       return F::avg_pool2d(v[0], {3, 3}, {{2, 2}}, {1, 1});
     }},
    {"avg_pool2d_exclude_pad",
     {Input::real({2, 1, 5, 7})},
     [](const auto& v) {
       return F::avg_pool2d(v[0], {3, 2}, {{2, 1}}, {1, 1}, false);
     }},
    {"avg_pool2d_unbatched",
     {Input::real({2, 5, 6})},
     [](const auto& v) {
       return F::avg_pool2d(v[0], {3, 3}, {{1, 1}});
     }},
}};

using V = std::vector<double>;

Tensor grid(int64_t h, int64_t w, double scale = 1, double shift = 0) {
  return (arange(0, static_cast<double>(h * w), 1, {.dtype = DType::f64}) * scale + shift)
      .reshape({1, 1, h, w});
}

TEST(Pool, MaxPoolHandValues) {
  Tensor x = grid(4, 4);  // x[i, j] = 4 i + j
  EXPECT_EQ(F::max_pool2d(x, {2, 2}).to_vector<double>(), (V{5, 7, 13, 15}));
  // Dilation 2: window (0, 0) reads x[0,0], x[0,2], x[2,0], x[2,2] -> 10.
  EXPECT_EQ(F::max_pool2d(x, {2, 2}, {{1, 1}}, {0, 0}, {2, 2}).to_vector<double>(),
            (V{10, 11, 14, 15}));
  // Padding is -inf, not 0: on an all-negative input x[i, j] = -(4 i + j) - 1, a 3x3 window
  // with padding 1 and stride 2 picks its top-left in-image element.
  Tensor neg = grid(4, 4, -1, -1);
  EXPECT_EQ(F::max_pool2d(neg, {3, 3}, {{2, 2}}, {1, 1}).to_vector<double>(), (V{-1, -2, -5, -6}));
  // Stride defaults to the kernel; a 3x3 kernel on 7x7 gives 2x2.
  EXPECT_EQ(F::max_pool2d(grid(7, 7), {3, 3}).shape(), (Shape{1, 1, 2, 2}));
  EXPECT_EQ(F::max_pool2d(grid(7, 7), {3, 3}).to_vector<double>(), (V{16, 19, 37, 40}));
}

TEST(Pool, MaxPoolPropagatesNaN) {
  Tensor x = from_vector<double>({1, std::nan(""), 3, 4}, {1, 1, 2, 2});
  EXPECT_TRUE(std::isnan(F::max_pool2d(x, {2, 2}).item()));
}

// The 2x2 stride-2 fast path against a direct loop, on odd sizes (the last row and column are
// dropped) with many ties (values in {0, 1, 2}: the first tap in window order wins) and NaNs
// (a NaN wins, the last NaN of a window if several). The gradient shows which tap won.
TEST(Pool, MaxPool2x2MatchesDirectLoop) {
  const int64_t P = 6, H = 7, W = 9, OH = 3, OW = 4;
  std::vector<double> xs(P * H * W);
  uint32_t state = 12345;
  for (double& v : xs) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<double>((state >> 16) % 3);
  }
  for (size_t i : {5, 40, 41, 49, 50, 200, 333}) xs[i] = std::nan("");
  std::vector<double> want(P * OH * OW), want_grad(xs.size(), 0.0);
  for (int64_t p = 0; p < P; ++p)
    for (int64_t i = 0; i < OH; ++i)
      for (int64_t j = 0; j < OW; ++j) {
        int64_t arg = -1;
        for (int64_t a = 0; a < 2; ++a)
          for (int64_t k = 0; k < 2; ++k) {
            int64_t idx = (p * H + 2 * i + a) * W + 2 * j + k;
            if (arg < 0 || xs[idx] > xs[arg] || std::isnan(xs[idx])) arg = idx;
          }
        int64_t o = (p * OH + i) * OW + j;
        want[o] = xs[arg];
        want_grad[arg] += static_cast<double>(o + 1);
      }
  for (DType dt : {DType::f64, DType::f32}) {
    Tensor x = from_vector<double>(xs, {2, 3, H, W}).to(dt).requires_grad_();
    Tensor y = F::max_pool2d(x, {2, 2});
    std::vector<double> got = y.to(DType::f64).to_vector<double>();
    ASSERT_EQ(got.size(), want.size());
    for (size_t o = 0; o < want.size(); ++o) {
      if (std::isnan(want[o]))
        EXPECT_TRUE(std::isnan(got[o])) << o;
      else
        EXPECT_EQ(got[o], want[o]) << o;
    }
    y.backward(
        arange(1, static_cast<double>(want.size()) + 1, 1, {.dtype = dt}).reshape(y.shape()));
    EXPECT_EQ(x.grad().to(DType::f64).to_vector<double>(), want_grad) << dtype_name(dt);
  }
}

TEST(Pool, MaxPoolBackwardRoutesToArgmax) {
  // Overlapping windows that share their maximum send it every gradient.
  Tensor x = from_vector<double>({0, 0, 0, 0, 9, 0, 0, 0, 0}, {1, 1, 3, 3}).requires_grad_();
  F::max_pool2d(x, {2, 2}, {{1, 1}}).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (V{0, 0, 0, 0, 4, 0, 0, 0, 0}));
  Tensor y = grid(3, 3).requires_grad_();
  Tensor g = from_vector<double>({1, 2, 3, 4}, {1, 1, 2, 2});
  F::max_pool2d(y, {2, 2}, {{1, 1}}).backward(g);  // winners: x[1,1], x[1,2], x[2,1], x[2,2]
  EXPECT_EQ(y.grad().to_vector<double>(), (V{0, 0, 0, 0, 1, 2, 0, 3, 4}));
}

TEST(Pool, AvgPoolHandValues) {
  Tensor x = grid(4, 4);
  EXPECT_EQ(F::avg_pool2d(x, {2, 2}).to_vector<double>(), (V{2.5, 4.5, 10.5, 12.5}));
  // 3x3 windows, padding 1, stride 2: in-image sums 10 (4 taps), 24 (6), 51 (6), 90 (9).
  std::vector<double> inc = F::avg_pool2d(x, {3, 3}, {{2, 2}}, {1, 1}).to_vector<double>();
  std::vector<double> exc = F::avg_pool2d(x, {3, 3}, {{2, 2}}, {1, 1}, false).to_vector<double>();
  V want_inc{10 / 9.0, 24 / 9.0, 51 / 9.0, 90 / 9.0}, want_exc{10 / 4.0, 24 / 6.0, 51 / 6.0, 10};
  for (int i = 0; i < 4; ++i) {
    EXPECT_DOUBLE_EQ(inc[i], want_inc[i]);
    EXPECT_DOUBLE_EQ(exc[i], want_exc[i]);
  }
}

TEST(Pool, AvgPoolBackwardSpreadsEvenly) {
  Tensor x = zeros({1, 1, 4, 4}, {.dtype = DType::f64}).requires_grad_();
  F::avg_pool2d(x, {2, 2}).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), V(16, 0.25));
  // Padded, divisor 9 including padding: corner x[0,0] is in window (0,0) only.
  Tensor y = zeros({1, 1, 4, 4}, {.dtype = DType::f64}).requires_grad_();
  F::avg_pool2d(y, {3, 3}, {{2, 2}}, {1, 1}).sum().backward();
  std::vector<double> gy = y.grad().to_vector<double>();
  EXPECT_DOUBLE_EQ(gy[0], 1 / 9.0);
  EXPECT_DOUBLE_EQ(gy[5], 4 / 9.0);  // x[1,1] is in all four windows
}

TEST(Pool, FloatAndHalfMatchDouble) {
  Tensor x = randn({2, 3, 9, 8}, {.dtype = DType::f64});
  V ref_max = F::max_pool2d(x, {3, 2}, {{2, 2}}, {1, 1}).to_vector<double>();
  V ref_avg = F::avg_pool2d(x, {3, 2}, {{2, 2}}, {1, 1}).to_vector<double>();
  for (DType dt : {DType::f32, DType::f16, DType::bf16}) {
    Tensor xd = x.to(dt);
    V mx = F::max_pool2d(xd, {3, 2}, {{2, 2}}, {1, 1}).to_vector<double>();
    V av = F::avg_pool2d(xd, {3, 2}, {{2, 2}}, {1, 1}).to_vector<double>();
    double tol = dt == DType::f32 ? 1e-6 : 2e-2;
    for (size_t i = 0; i < mx.size(); ++i) {
      ASSERT_NEAR(mx[i], ref_max[i], tol * (1 + std::abs(ref_max[i]))) << dt;
      ASSERT_NEAR(av[i], ref_avg[i], tol * (1 + std::abs(ref_avg[i]))) << dt;
    }
  }
}

TEST(Pool, ErrorsNameShapes) {
  EXPECT_THROW_MSG(F::max_pool2d(zeros({1, 1, 2, 2}), {3, 3}), "max_pool2d",
                   "larger than the padded input", "[1, 1, 2, 2]", "[3, 3]");
  EXPECT_THROW_MSG(F::avg_pool2d(zeros({1, 1, 4, 2}), {3, 3}), "avg_pool2d",
                   "larger than the padded input", "[1, 1, 4, 2]");
  EXPECT_THROW_MSG(F::max_pool2d(zeros({1, 1, 4, 4}), {2, 2}, {}, {2, 0}), "max_pool2d",
                   "padding [2, 0]", "half");
  EXPECT_THROW_MSG(F::max_pool2d(zeros({4, 4}), {2, 2}), "max_pool2d", "[4, 4]", "4-D");
  // A zero height or width (which the padding alone would let through) has no window to pool.
  EXPECT_THROW_MSG(F::max_pool2d(zeros({1, 1, 0, 4}), {2, 2}, {}, {1, 1}), "max_pool2d",
                   "non-empty height and width", "[1, 1, 0, 4]");
  EXPECT_THROW_MSG(F::avg_pool2d(zeros({1, 1, 4, 0}), {2, 2}, {}, {1, 1}), "avg_pool2d",
                   "non-empty height and width", "[1, 1, 4, 0]");
  EXPECT_THROW_MSG(F::avg_pool2d(zeros({1, 1, 4, 4}), {2, 2}, {{0, 1}}), "avg_pool2d",
                   "stride [0, 1]");
  EXPECT_THROW_MSG(F::max_pool2d(zeros({1, 1, 4, 4}, {.dtype = DType::i64}), {2, 2}), "max_pool2d",
                   "i64", "floating");
}

}  // namespace
}  // namespace lumen::testing
