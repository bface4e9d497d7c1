// nn::init against torch.nn.init's documented formulas: bounds, moments on large tensors,
// fans, gains, determinism under a seed, and in-place writes into leaves that require grad.
#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "nn/init.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace init = nn::init;
using Fans = std::pair<int64_t, int64_t>;

struct Moments {
  double min, max, mean, var;
};

Moments moments_of(const Tensor& t) {
  std::vector<double> v = t.to_vector<double>();
  Moments m{*std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()), 0, 0};
  m.mean = std::accumulate(v.begin(), v.end(), 0.0) / static_cast<double>(v.size());
  for (double x : v) m.var += (x - m.mean) * (x - m.mean);
  m.var /= static_cast<double>(v.size());
  return m;
}

// Sample moments of n draws: the mean within 6 standard errors of 0, the variance within
// `rel` of the theoretical one (the relative standard error of a sample variance is
// sqrt((kurtosis - 1) / n): 0.25% for a uniform and 0.4% for a normal at n = 2^17).
void expect_moments(const Moments& m, double mean, double var, double rel = 0.02) {
  const double n = 131072;
  EXPECT_NEAR(m.mean, mean, 6 * std::sqrt(var / n));
  EXPECT_NEAR(m.var, var, rel * var);
}

TEST(NnInit, CalculateGainMatchesTorch) {
  for (const char* linear : {"linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                             "conv_transpose2d", "conv_transpose3d", "sigmoid"})
    EXPECT_EQ(init::calculate_gain(linear), 1.0) << linear;
  EXPECT_DOUBLE_EQ(init::calculate_gain("tanh"), 5.0 / 3.0);
  EXPECT_DOUBLE_EQ(init::calculate_gain("relu"), std::sqrt(2.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu"), std::sqrt(2.0 / (1.0 + 0.01 * 0.01)));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", 0.2), std::sqrt(2.0 / 1.04));
  EXPECT_DOUBLE_EQ(init::calculate_gain("leaky_relu", std::sqrt(5.0)), std::sqrt(1.0 / 3.0));
  EXPECT_DOUBLE_EQ(init::calculate_gain("selu"), 0.75);
  EXPECT_THROW_MSG(init::calculate_gain("swish"), "unsupported nonlinearity 'swish'", "relu");
}

TEST(NnInit, FansAsTorch) {
  EXPECT_EQ(init::calculate_fan_in_and_fan_out(zeros({5, 3})), Fans(3, 5));
  // Conv weight [out, in, kH, kW]: the receptive field multiplies both fans.
  EXPECT_EQ(init::calculate_fan_in_and_fan_out(zeros({16, 4, 3, 5})), Fans(4 * 15, 16 * 15));
  EXPECT_EQ(init::calculate_correct_fan(zeros({16, 4, 3}), "fan_in"), 12);
  EXPECT_EQ(init::calculate_correct_fan(zeros({16, 4, 3}), "fan_out"), 48);
  EXPECT_THROW_MSG(init::calculate_fan_in_and_fan_out(zeros({7})), "fewer than 2 dimensions",
                   "[7]");
  EXPECT_THROW_MSG(init::calculate_correct_fan(zeros({2, 2}), "fan_avg"), "'fan_avg'", "fan_in",
                   "fan_out");
  EXPECT_THROW_MSG(init::kaiming_uniform_(zeros({4})), "fewer than 2 dimensions");
}

TEST(NnInit, KaimingUniformBoundAndVariance) {
  manual_seed(11);
  Tensor w = empty({256, 512});
  init::kaiming_uniform_(w);  // a = 0, leaky_relu: gain sqrt(2), fan_in 512
  const double bound = std::sqrt(2.0) * std::sqrt(3.0 / 512);
  Moments m = moments_of(w);
  EXPECT_GE(m.min, -bound);
  EXPECT_LE(m.max, bound);
  EXPECT_LT(m.min, -0.999 * bound);  // the whole interval is used
  EXPECT_GT(m.max, 0.999 * bound);
  expect_moments(m, 0.0, bound * bound / 3.0);  // = gain^2 / fan_in = 2 / 512

  // fan_out and another nonlinearity: bound = (5/3) sqrt(3 / 256).
  init::kaiming_uniform_(w, 0.0, "fan_out", "tanh");
  const double tanh_bound = 5.0 / 3.0 * std::sqrt(3.0 / 256);
  m = moments_of(w);
  EXPECT_GE(m.min, -tanh_bound);
  EXPECT_LE(m.max, tanh_bound);
  expect_moments(m, 0.0, tanh_bound * tanh_bound / 3.0);
}

TEST(NnInit, KaimingNormalVariance) {
  manual_seed(12);
  Tensor w = empty({128, 256, 2, 2});  // fan_in 1024, 2^17 elements
  init::kaiming_normal_(w, 0.0, "fan_in", "relu");
  expect_moments(moments_of(w), 0.0, 2.0 / 1024, 0.03);
  init::kaiming_normal_(w, 0.0, "fan_out", "relu");  // fan_out 512
  expect_moments(moments_of(w), 0.0, 2.0 / 512, 0.03);
}

TEST(NnInit, XavierUniformAndNormal) {
  manual_seed(13);
  Tensor w = empty({256, 512});
  init::xavier_uniform_(w, 2.0);
  const double bound = 2.0 * std::sqrt(6.0 / (256 + 512));
  Moments m = moments_of(w);
  EXPECT_GE(m.min, -bound);
  EXPECT_LE(m.max, bound);
  EXPECT_LT(m.min, -0.999 * bound);
  expect_moments(m, 0.0, bound * bound / 3.0);
  init::xavier_normal_(w);
  expect_moments(moments_of(w), 0.0, 2.0 / (256 + 512), 0.03);
}

TEST(NnInit, UniformNormalAndConstants) {
  manual_seed(14);
  Tensor t = empty({512, 256});
  init::uniform_(t, -1.0, 3.0);
  Moments m = moments_of(t);
  EXPECT_GE(m.min, -1.0);
  EXPECT_LT(m.max, 3.0);
  expect_moments(m, 1.0, 16.0 / 12.0);
  init::normal_(t, 2.0, 0.5);
  expect_moments(moments_of(t), 2.0, 0.25, 0.03);

  Tensor c = empty({3, 2});
  EXPECT_EQ(init::constant_(c, 1.5).to_vector<double>(), std::vector<double>(6, 1.5));
  EXPECT_EQ(init::zeros_(c).to_vector<double>(), std::vector<double>(6, 0.0));
  EXPECT_EQ(init::ones_(c).to_vector<double>(), std::vector<double>(6, 1.0));
  // Integer tensors take constants but not random draws.
  Tensor i = empty({2}, {.dtype = DType::i64});
  EXPECT_EQ(init::constant_(i, 4).to_vector<int64_t>(), std::vector<int64_t>({4, 4}));
  EXPECT_THROW_MSG(init::uniform_(i), "uniform_", "floating", "i64");
  EXPECT_THROW_MSG(init::normal_(c, 0.0, -1.0), "std >= 0");
  EXPECT_THROW_MSG(init::uniform_(c, 2.0, 1.0), "a <= b");
}

TEST(NnInit, WritesInPlaceIntoLeavesThatRequireGrad) {
  Tensor w = zeros({4, 8}).requires_grad_();
  const void* storage = w.data_ptr();
  init::kaiming_uniform_(w, std::sqrt(5.0));  // grad mode is on here
  EXPECT_EQ(w.data_ptr(), storage);
  EXPECT_TRUE(w.requires_grad());
  EXPECT_TRUE(w.is_leaf());
  EXPECT_EQ(w.grad_fn(), nullptr);
  Moments m = moments_of(w);
  EXPECT_LE(std::max(-m.min, m.max), 1.0 / std::sqrt(8.0));  // a = sqrt(5): 1 / sqrt(fan_in)
  EXPECT_GT(m.max - m.min, 0.0);
  init::ones_(w);
  EXPECT_EQ(w.to_vector<double>(), std::vector<double>(32, 1.0));
  // Gradients still flow to it afterwards.
  (w * 3.0).sum().backward();
  EXPECT_EQ(w.grad().to_vector<double>(), std::vector<double>(32, 3.0));
}

TEST(NnInit, DeterministicUnderASeed) {
  Tensor a = empty({6, 5}), b = empty({6, 5}), c = empty({6, 5});
  manual_seed(99);
  init::kaiming_uniform_(a);
  init::normal_(c);
  manual_seed(99);
  init::kaiming_uniform_(b);
  EXPECT_EQ(a.to_vector<double>(), b.to_vector<double>());
  init::normal_(b);
  EXPECT_EQ(c.to_vector<double>(), b.to_vector<double>());
  manual_seed(100);
  init::kaiming_uniform_(b);
  EXPECT_NE(a.to_vector<double>(), b.to_vector<double>());

  // An explicit generator leaves the global one alone and is itself reproducible.
  Generator g1(5), g2(5);
  manual_seed(99);
  init::xavier_normal_(b, 1.0, &g1);
  init::kaiming_uniform_(c);
  EXPECT_EQ(a.to_vector<double>(), c.to_vector<double>());
  init::xavier_normal_(c, 1.0, &g2);
  EXPECT_EQ(b.to_vector<double>(), c.to_vector<double>());
}

TEST(NnInit, OtherDtypesAndEmptyTensors) {
  manual_seed(3);
  Tensor d = empty({64, 32}, {.dtype = DType::f64});
  init::uniform_(d, -0.25, 0.25);
  EXPECT_EQ(d.dtype(), DType::f64);
  Moments m = moments_of(d);
  EXPECT_GE(m.min, -0.25);
  EXPECT_LT(m.max, 0.25);
  Tensor h = empty({64, 32}, {.dtype = DType::f16});
  init::xavier_uniform_(h);
  m = moments_of(h);
  const double bound = std::sqrt(6.0 / 96);
  EXPECT_LE(std::max(-m.min, m.max), bound * (1 + 1e-3));  // f16 rounding
  // No elements: nothing to draw, as PyTorch (which warns).
  Tensor e = empty({0, 3});
  EXPECT_NO_THROW(init::kaiming_uniform_(e));
  EXPECT_EQ(e.numel(), 0);
}

}  // namespace
}  // namespace lumen::testing
