#include <barrier>
#include <cmath>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

// Running stats made inside the case (on the input's device), so every call starts from the
// same state.
Tensor bn_train(const std::vector<Tensor>& v, int64_t c) {
  Tensor rm = zeros({c}, {v[0].dtype(), v[0].device()});
  Tensor rv = ones({c}, {v[0].dtype(), v[0].device()});
  return F::batch_norm(v[0], rm, rv, v.size() > 1 ? v[1] : Tensor(), v.size() > 2 ? v[2] : Tensor(),
                       true);
}

// A group of one rank: sync_batch_norm then is batch_norm, which the harness checks it against
// numerically (gradients) and across backends.
struct OneRankGroup final : nn::ProcessGroup {
  int rank() const override { return 0; }
  int world_size() const override { return 1; }
  Tensor all_gather(const Tensor& t) override { return t.clone().unsqueeze(0); }
  void all_reduce_sum(const Tensor&) override {}
};

Tensor sync_bn_one_rank(const std::vector<Tensor>& v, int64_t c) {
  Tensor rm = zeros({c}, {v[0].dtype(), v[0].device()});
  Tensor rv = ones({c}, {v[0].dtype(), v[0].device()});
  return F::sync_batch_norm(v[0], rm, rv, v.size() > 1 ? v[1] : Tensor(),
                            v.size() > 2 ? v[2] : Tensor(), 0.1, 1e-5,
                            std::make_shared<OneRankGroup>());
}

LUMEN_OP_CASES(norm){{
    {"layer_norm_affine",
     {Input::real({4, 6}), Input::real({6}), Input::real({6})},
     [](const auto& v) { return F::layer_norm(v[0], {6}, v[1], v[2]); }},
    {"layer_norm_plain",
     {Input::real({3, 5})},
     [](const auto& v) { return F::layer_norm(v[0], {5}); }},
    {"layer_norm_two_dims",
     {Input::real({2, 3, 4}), Input::real({3, 4}), Input::real({3, 4})},
     [](const auto& v) {
       return F::layer_norm(v[0], {3, 4}, v[1], v[2], 1e-3);
     }},
    {"layer_norm_weight_only",
     {Input::real({5, 7}), Input::real({7})},
     [](const auto& v) { return F::layer_norm(v[0], {7}, v[1]); }},
    {"batch_norm_train_2d",
     {Input::real({6, 3}), Input::real({3}), Input::real({3})},
     [](const auto& v) { return bn_train(v, 3); }},
    {"batch_norm_train_4d",
     {Input::real({3, 2, 3, 5}), Input::real({2}), Input::real({2})},
     [](const auto& v) { return bn_train(v, 2); }},
    {"batch_norm_train_plain",
     {Input::real({5, 4, 3})},
     [](const auto& v) { return F::batch_norm(v[0], {}, {}, {}, {}, true); }},
    {"sync_batch_norm_one_rank_2d",
     {Input::real({6, 3}), Input::real({3}), Input::real({3})},
     [](const auto& v) { return sync_bn_one_rank(v, 3); }},
    {"sync_batch_norm_one_rank_4d",
     {Input::real({3, 2, 3, 5}), Input::real({2}), Input::real({2})},
     [](const auto& v) { return sync_bn_one_rank(v, 2); }},
    {"sync_batch_norm_one_rank_plain",
     {Input::real({5, 4, 3})},
     [](const auto& v) { return sync_bn_one_rank({v[0]}, 4); }},
    {"batch_norm_eval",
     {Input::real({4, 3, 2}), Input::real({3}), Input::real({3})},
     [](const auto& v) {
       Tensor rm = from_vector<double>({0.5, -1.0, 0.0}).to(v[0].dtype()).to(v[0].device());
       Tensor rv = from_vector<double>({2.0, 0.5, 1.0}).to(v[0].dtype()).to(v[0].device());
       return F::batch_norm(v[0], rm, rv, v[1], v[2], false);
     }},
    {"rms_norm_affine",
     {Input::real({4, 6}), Input::real({6})},
     [](const auto& v) { return F::rms_norm(v[0], {6}, v[1], 1e-6); }},
    {"rms_norm_two_dims_default_eps",
     {Input::real({2, 3, 4})},
     [](const auto& v) {
       return F::rms_norm(v[0], {3, 4});
     }},
    {"group_norm_4d",
     {Input::real({2, 6, 3, 2}), Input::real({6}), Input::real({6})},
     [](const auto& v) { return F::group_norm(v[0], 3, v[1], v[2]); }},
    {"group_norm_plain_3d",
     {Input::real({3, 4, 5})},
     [](const auto& v) { return F::group_norm(v[0], 2, {}, {}, 1e-3); }},
    {"group_norm_2d",
     {Input::real({4, 6}), Input::real({6}), Input::real({6})},
     [](const auto& v) { return F::group_norm(v[0], 2, v[1], v[2]); }},
}};

// By hand: rms_norm of the row (1, 2, 3, 4): mean of squares 7.5; group_norm of one sample with
// channels (1, 3), (2, 6) in one group of values {1, 3, 2, 6} (mean 3, biased variance 3.5) and
// channels (0, 4), (-1, 1) in the other ({0, 4, -1, 1}: mean 1, variance 3.5).
TEST(Norm, RmsNormAndGroupNormMatchHandComputation) {
  Tensor x = from_vector<double>({1, 2, 3, 4}, {1, 4});
  Tensor w = from_vector<double>({1, 2, 0.5, -1});
  std::vector<double> y = F::rms_norm(x, {4}, w, 0.0).to_vector<double>();
  const double r = std::sqrt(7.5);
  EXPECT_NEAR(y[0], 1 / r, 1e-15);
  EXPECT_NEAR(y[1], 4 / r, 1e-15);
  EXPECT_NEAR(y[2], 1.5 / r, 1e-15);
  EXPECT_NEAR(y[3], -4 / r, 1e-15);
  // Default eps: the dtype's machine epsilon.
  EXPECT_NEAR(F::rms_norm(x, {4}).to_vector<double>()[0],
              1 / std::sqrt(7.5 + 2.220446049250313e-16), 1e-16);

  Tensor g = from_vector<double>({1, 3, 2, 6, 0, 4, -1, 1}, {1, 4, 2});
  Tensor gw = from_vector<double>({1, 2, 3, 4}), gb = from_vector<double>({0, 0, 1, -1});
  std::vector<double> z = F::group_norm(g, 2, gw, gb, 0.0).to_vector<double>();
  const double s = std::sqrt(3.5);
  std::vector<double> want = {(1 - 3) / s,          (3 - 3) / s,         2 * (2 - 3) / s,
                              2 * (6 - 3) / s,      3 * (0 - 1) / s + 1, 3 * (4 - 1) / s + 1,
                              4 * (-1 - 1) / s - 1, 4 * (1 - 1) / s - 1};
  for (size_t i = 0; i < 8; ++i) EXPECT_NEAR(z[i], want[i], 1e-14) << i;
}

// 16-bit inputs compute in f32 and come back in their dtype; under autocast the result is f32.
// The default eps is f32's for them too: on small values (mean square 1e-4) bf16's own epsilon
// (2^-7) would shrink the output by a factor of about 9.
TEST(Norm, RmsNormAndGroupNormSixteenBitAndAutocast) {
  Generator gen(9);
  Tensor x = randn({4, 8}, {}, &gen);
  Tensor h = x.to(DType::f16);
  Tensor small = (x * 0.01).to(DType::bf16);
  std::vector<float> got = F::rms_norm(small, {8}).to(DType::f32).to_vector<float>();
  std::vector<float> want = F::rms_norm(small.to(DType::f32), {8}).to_vector<float>();
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 0.01 * (1 + std::abs(want[i]))) << i;
  EXPECT_EQ(F::rms_norm(h, {8}).dtype(), DType::f16);
  EXPECT_EQ(F::group_norm(h, 4).dtype(), DType::f16);
  AutocastGuard autocast(DType::f16);
  EXPECT_EQ(F::rms_norm(h, {8}).dtype(), DType::f32);
  EXPECT_EQ(F::group_norm(h, 2).dtype(), DType::f32);
}

TEST(Norm, RMSNormAndGroupNormModules) {
  nn::RMSNorm rms(10);
  EXPECT_EQ(rms.repr(), "RMSNorm((10,), eps=None, elementwise_affine=True)");
  EXPECT_EQ(nn::RMSNorm(Shape{3, 4}, {.eps = 1e-6, .elementwise_affine = false}).repr(),
            "RMSNorm((3, 4), eps=1e-06, elementwise_affine=False)");
  EXPECT_EQ(rms.state_dict().count("weight"), 1u);
  nn::GroupNorm gn(4, 32);
  EXPECT_EQ(gn.repr(), "GroupNorm(4, 32, eps=1e-05, affine=True)");
  EXPECT_EQ(gn.state_dict().size(), 2u);
  Tensor x = randn({2, 32, 3});
  EXPECT_EQ(gn(x).to_vector<float>(), F::group_norm(x, 4, gn.weight, gn.bias).to_vector<float>());
  EXPECT_EQ(rms(randn({2, 10})).shape(), (Shape{2, 10}));

  EXPECT_THROW_MSG(nn::GroupNorm(3, 10), "num_channels (10) must be a positive multiple of",
                   "num_groups (3)");
  EXPECT_THROW_MSG(gn(randn({2, 16})), "GroupNorm: expected an input [N, 32, *]", "[2, 16]");
  EXPECT_THROW_MSG(F::group_norm(randn({2, 6}), 4), "6 channels do not split into num_groups = 4");
  EXPECT_THROW_MSG(F::group_norm(randn({6}), 2), "at least 2 dims", "[6]");
  EXPECT_THROW_MSG(F::group_norm(randn({1, 4}), 4), "expected more than 1 value per group",
                   "[1, 4]");
  EXPECT_EQ(F::group_norm(randn({2, 4}), 4).shape(), (Shape{2, 4}));  // as PyTorch: allowed
  EXPECT_THROW_MSG(F::group_norm(randn({2, 6}), 2, ones({5})), "weight has shape [5]", "needs [6]");
  EXPECT_THROW_MSG(F::rms_norm(randn({2, 6}), {5}), "normalized_shape [5]", "[2, 6]");
  EXPECT_THROW_MSG(nn::RMSNorm(Shape{}), "at least one dim");
  EXPECT_THROW_MSG(F::rms_norm(randn({2, 6}), {6}, {}, -1.0), "eps must be >= 0, got -1");
}

TEST(Norm, LayerNormRowsHaveMeanZeroVarianceOne) {
  Generator gen(6);
  Tensor x = randn({5, 37}, {}, &gen) * 4.0 + 3.0;
  std::vector<double> y = F::layer_norm(x, {37}).to_vector<double>();
  for (int r = 0; r < 5; ++r) {
    double m = 0, v = 0;
    for (int j = 0; j < 37; ++j) m += y[r * 37 + j];
    m /= 37;
    for (int j = 0; j < 37; ++j) v += (y[r * 37 + j] - m) * (y[r * 37 + j] - m);
    v /= 37;
    EXPECT_NEAR(m, 0.0, 1e-6) << "row " << r;
    EXPECT_NEAR(v, 1.0, 1e-5) << "row " << r;  // var / (var + eps), var ~ 16
  }
}

TEST(Norm, LayerNormMatchesHandComputation) {
  // Row [1, 2, 3, 6]: mean 3, biased var (4 + 1 + 0 + 9) / 4 = 3.5.
  Tensor x = from_vector<double>({1, 2, 3, 6, 0, 0, 1, -1}, {2, 4});
  Tensor w = from_vector<double>({1, 2, 0.5, -1});
  Tensor b = from_vector<double>({0, 1, 0, 3});
  const double eps = 1e-5;
  std::vector<double> y = F::layer_norm(x, {4}, w, b, eps).to_vector<double>();
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(),
                      bv = b.to_vector<double>();
  double stats[2][2] = {{3.0, 3.5}, {0.0, 0.5}};
  for (int r = 0; r < 2; ++r)
    for (int j = 0; j < 4; ++j) {
      double want = (xv[r * 4 + j] - stats[r][0]) / std::sqrt(stats[r][1] + eps) * wv[j] + bv[j];
      EXPECT_NEAR(y[r * 4 + j], want, 1e-14) << r << ", " << j;
    }
}

TEST(Norm, LayerNormGradientsOfWeightAndBias) {
  Tensor x = from_vector<double>({1, 2, 3, 6, 0, 0, 1, -1}, {2, 4});
  Tensor w = ones({4}, {.dtype = DType::f64}).requires_grad_();
  Tensor b = zeros({4}, {.dtype = DType::f64}).requires_grad_();
  F::layer_norm(x, {4}, w, b).sum().backward();
  // d sum / db_j = number of rows; d sum / dw_j = sum over rows of xhat_j.
  EXPECT_EQ(b.grad().to_vector<double>(), (std::vector<double>{2, 2, 2, 2}));
  std::vector<double> xhat = F::layer_norm(x, {4}).to_vector<double>();
  std::vector<double> gw = w.grad().to_vector<double>();
  for (int j = 0; j < 4; ++j) EXPECT_NEAR(gw[j], xhat[j] + xhat[4 + j], 1e-14);
}

TEST(Norm, BatchNormTrainingUpdatesRunningStatsLikePyTorch) {
  // Channel 0: 1, 2, 3, 6 (mean 3, biased var 3.5, unbiased 14/3);
  // channel 1: 0, 0, 1, -1 (mean 0, biased var 0.5, unbiased 2/3).
  Tensor x = from_vector<double>({1, 0, 2, 0, 3, 1, 6, -1}, {4, 2});
  Tensor rm = from_vector<double>({1.0, -2.0});
  Tensor rv = from_vector<double>({1.0, 4.0});
  Tensor w = from_vector<double>({2.0, 1.0}), b = from_vector<double>({0.0, 0.5});
  const double eps = 1e-5, momentum = 0.25;
  std::vector<double> y = F::batch_norm(x, rm, rv, w, b, true, momentum, eps).to_vector<double>();
  std::vector<double> rmv = rm.to_vector<double>(), rvv = rv.to_vector<double>();
  EXPECT_NEAR(rmv[0], 0.75 * 1.0 + 0.25 * 3.0, 1e-15);
  EXPECT_NEAR(rmv[1], 0.75 * -2.0 + 0.25 * 0.0, 1e-15);
  EXPECT_NEAR(rvv[0], 0.75 * 1.0 + 0.25 * 14.0 / 3.0, 1e-15);
  EXPECT_NEAR(rvv[1], 0.75 * 4.0 + 0.25 * 2.0 / 3.0, 1e-15);
  // The output uses the batch's biased variance.
  std::vector<double> xv = x.to_vector<double>();
  double mean[2] = {3.0, 0.0}, var[2] = {3.5, 0.5}, wv[2] = {2.0, 1.0}, bv[2] = {0.0, 0.5};
  for (int i = 0; i < 8; ++i) {
    int c = i % 2;
    EXPECT_NEAR(y[i], (xv[i] - mean[c]) / std::sqrt(var[c] + eps) * wv[c] + bv[c], 1e-14) << i;
  }
}

// The module's settable attributes, as PyTorch's: without tracking, training normalises with
// the batch and leaves the running statistics alone, and eval still uses them; momentum
// nullopt makes the running mean the plain average of the batches' means.
TEST(Norm, BatchNormTrackingAndMomentumCanBeChanged) {
  nn::BatchNorm1d bn(2, {.momentum = 0.5});
  bn.to(DType::f64);
  Tensor x = from_vector<double>({1, 0, 2, 0, 3, 1, 6, -1}, {4, 2});  // means 3, 0
  bn.forward(x);
  const std::vector<double> mean1 = bn.running_mean.to_vector<double>();
  EXPECT_EQ(mean1, (std::vector<double>{1.5, 0.0}));
  bn.track_running_stats = false;
  Tensor y = bn.forward(x * 2.0);
  EXPECT_EQ(bn.running_mean.to_vector<double>(), mean1);
  EXPECT_EQ(bn.num_batches_tracked.item<int64_t>(), 1);
  Tensor batch = F::batch_norm(x * 2.0, Tensor(), Tensor(), bn.weight, bn.bias, true, 0, bn.eps);
  EXPECT_EQ(y.to_vector<double>(), batch.to_vector<double>());
  bn.eval();
  std::vector<double> evaluated = bn.forward(x).to_vector<double>();
  std::vector<double> var = bn.running_var.to_vector<double>();
  EXPECT_NEAR(evaluated[0], (1 - 1.5) / std::sqrt(var[0] + bn.eps), 1e-12);
  bn.train();
  bn.track_running_stats = true;
  bn.momentum = std::nullopt;
  bn.reset_running_stats();
  bn.forward(x);
  bn.forward(x + 4.0);
  EXPECT_EQ(bn.running_mean.to_vector<double>(), (std::vector<double>{5.0, 2.0}));
  bn.momentum = 1.5;
  EXPECT_THROW_MSG(bn.forward(x), "BatchNorm1d: momentum must lie in [0, 1], got 1.5");
}

// Running statistics the kernel cannot write in place (another dtype, a strided view) are
// updated through a copy: the same values as buffers it writes directly.
TEST(Norm, BatchNormUpdatesRunningStatsOfAnyDtypeAndLayout) {
  Generator gen(3);
  Tensor x = randn({6, 3, 4}, {.dtype = DType::f64}, &gen);
  Tensor rm = from_vector<double>({0.5, -1.0, 2.0}), rv = from_vector<double>({1.0, 2.0, 0.5});
  Tensor rm_f32 = rm.to(DType::f32), rv_f32 = rv.to(DType::f32);
  Tensor rm_wide = zeros({3, 2}, {.dtype = DType::f64}),
         rv_wide = zeros({3, 2}, {.dtype = DType::f64});
  Tensor rm_view = rm_wide.select(1, 1), rv_view = rv_wide.select(1, 1);  // stride 2
  rm_view.copy_(rm);
  rv_view.copy_(rv);
  const int64_t v0 = rm_view.version();
  F::batch_norm(x, rm, rv, {}, {}, true);
  F::batch_norm(x, rm_f32, rv_f32, {}, {}, true);
  F::batch_norm(x, rm_view, rv_view, {}, {}, true);
  EXPECT_GT(rm_view.version(), v0);
  std::vector<double> want_m = rm.to_vector<double>(), want_v = rv.to_vector<double>();
  EXPECT_NE(want_m[0], 0.5);  // moved
  EXPECT_EQ(rm_view.to_vector<double>(), want_m);
  EXPECT_EQ(rv_view.to_vector<double>(), want_v);
  EXPECT_EQ(rm_wide.select(1, 0).to_vector<double>(), std::vector<double>(3, 0.0));  // untouched
  EXPECT_EQ(rm_f32.dtype(), DType::f32);
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(rm_f32.to_vector<double>()[i], want_m[i], 1e-6);
    EXPECT_NEAR(rv_f32.to_vector<double>()[i], want_v[i], 1e-6);
  }
}

TEST(Norm, BatchNormSpatialStatisticsAndEval) {
  // [N=2, C=2, L=3]: channel 0 holds 0..2 and 6..8, channel 1 holds 3..5 and 9..11.
  Tensor x = arange(12, {.dtype = DType::f64}).reshape({2, 2, 3});
  Tensor rm = zeros({2}, {.dtype = DType::f64}), rv = ones({2}, {.dtype = DType::f64});
  F::batch_norm(x, rm, rv, {}, {}, true);
  // Channel 0: mean 4, biased var (16+9+4+4+9+16)/6 = 29/3, unbiased 58/5. Channel 1: mean 7.
  EXPECT_NEAR(rm.to_vector<double>()[0], 0.4, 1e-15);
  EXPECT_NEAR(rm.to_vector<double>()[1], 0.7, 1e-15);
  EXPECT_NEAR(rv.to_vector<double>()[0], 0.9 + 0.1 * 58.0 / 5.0, 1e-14);
  EXPECT_NEAR(rv.to_vector<double>()[1], 0.9 + 0.1 * 58.0 / 5.0, 1e-14);

  // Eval: the running stats normalise, and stay as they are.
  std::vector<double> before_m = rm.to_vector<double>(), before_v = rv.to_vector<double>();
  Tensor w = from_vector<double>({3.0, -1.0}), b = from_vector<double>({1.0, 2.0});
  std::vector<double> y = F::batch_norm(x, rm, rv, w, b, false).to_vector<double>();
  EXPECT_EQ(rm.to_vector<double>(), before_m);
  EXPECT_EQ(rv.to_vector<double>(), before_v);
  for (int i = 0; i < 12; ++i) {
    int c = (i / 3) % 2;
    double want = (i - before_m[c]) / std::sqrt(before_v[c] + 1e-5) * w.to_vector<double>()[c] +
                  b.to_vector<double>()[c];
    EXPECT_NEAR(y[i], want, 1e-13) << i;
  }
}

TEST(Norm, BatchNormTrainingOutputHasZeroMeanUnitVariancePerChannel) {
  Generator gen(8);
  Tensor x = randn({8, 3, 5}, {}, &gen) * 2.0 - 1.0;
  std::vector<double> y = F::batch_norm(x, {}, {}, {}, {}, true).to_vector<double>();
  for (int c = 0; c < 3; ++c) {
    double m = 0, v = 0;
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 5; ++k) m += y[(n * 3 + c) * 5 + k];
    m /= 40;
    for (int n = 0; n < 8; ++n)
      for (int k = 0; k < 5; ++k) v += std::pow(y[(n * 3 + c) * 5 + k] - m, 2);
    v /= 40;
    EXPECT_NEAR(m, 0.0, 1e-6);
    EXPECT_NEAR(v, 1.0, 1e-4);
  }
}

TEST(Norm, HalfInputsNormaliseInFloat) {
  Generator gen(10);
  Tensor x = randn({4, 16}, {}, &gen);
  std::vector<double> want = F::layer_norm(x, {16}).to_vector<double>();
  std::vector<double> got = F::layer_norm(x.to(DType::f16), {16}).to_vector<double>();
  for (size_t i = 0; i < got.size(); ++i)
    EXPECT_NEAR(got[i], want[i], 5e-3 + 2e-3 * std::abs(want[i]));
  Tensor rm = zeros({16}), rv = ones({16});  // f32 running stats with f16 input
  std::vector<double> bn =
      F::batch_norm(x.to(DType::bf16), rm, rv, {}, {}, true).to_vector<double>();
  Tensor rm32 = zeros({16}), rv32 = ones({16});
  std::vector<double> bn_want = F::batch_norm(x, rm32, rv32, {}, {}, true).to_vector<double>();
  for (size_t i = 0; i < bn.size(); ++i)
    EXPECT_NEAR(bn[i], bn_want[i], 2e-2 + 1e-2 * std::abs(bn_want[i]));
  // The f32 buffers keep f32 statistics (updated in f32, not through a 16-bit copy).
  EXPECT_EQ(rm.dtype(), DType::f32);
  std::vector<double> m16 = rm.to_vector<double>(), m32 = rm32.to_vector<double>();
  std::vector<double> v16 = rv.to_vector<double>(), v32 = rv32.to_vector<double>();
  for (size_t c = 0; c < 16; ++c) {
    EXPECT_NEAR(m16[c], m32[c], 1e-2 * (1 + std::abs(m32[c])));
    EXPECT_NEAR(v16[c], v32[c], 1e-2 * (1 + std::abs(v32[c])));
  }
}

TEST(Norm, Errors) {
  Tensor x = zeros({2, 3, 4});
  EXPECT_THROW_MSG(F::layer_norm(x, {3}), "layer_norm", "normalized_shape [3]", "[2, 3, 4]");
  EXPECT_THROW_MSG(F::layer_norm(x, {4}, zeros({3})), "layer_norm", "weight", "[3]", "[4]");
  EXPECT_THROW_MSG(F::layer_norm(x, {4}, {}, zeros({4}, {.dtype = DType::i32})), "bias", "i32");
  EXPECT_THROW_MSG(F::layer_norm(x, {}), "layer_norm", "non-empty");
  EXPECT_THROW_MSG(F::batch_norm(zeros({5}), {}, {}, {}, {}, true), "batch_norm", "[5]", "[N, C]");
  EXPECT_THROW_MSG(F::batch_norm(x, {}, {}, zeros({4}), {}, true), "batch_norm", "weight", "[4]",
                   "[3]");
  EXPECT_THROW_MSG(F::batch_norm(x, zeros({3}), {}, {}, {}, true), "running_mean", "running_var");
  EXPECT_THROW_MSG(F::batch_norm(x, zeros({2}), ones({2}), {}, {}, true), "running_mean", "[2]",
                   "[3]");
  EXPECT_THROW_MSG(F::batch_norm(x, {}, {}, {}, {}, false), "batch_norm", "eval", "[2, 3, 4]");
  EXPECT_THROW_MSG(F::batch_norm(zeros({1, 3}), {}, {}, {}, {}, true), "batch_norm",
                   "more than 1 value per channel", "[1, 3]");
  EXPECT_THROW_MSG(F::batch_norm(zeros({2, 3}, {.dtype = DType::i64}), {}, {}, {}, {}, true),
                   "batch_norm", "i64");
  auto one = std::make_shared<OneRankGroup>();
  EXPECT_THROW_MSG(F::sync_batch_norm(x, {}, {}, {}, {}, 0.1, 1e-5, nullptr), "sync_batch_norm",
                   "process group is null");
  EXPECT_THROW_MSG(F::sync_batch_norm(zeros({1, 3}), {}, {}, {}, {}, 0.1, 1e-5, one),
                   "sync_batch_norm", "more than 1 value per channel", "[1, 3]");
  EXPECT_THROW_MSG(F::sync_batch_norm(x, {}, {}, {}, zeros({2}), 0.1, 1e-5, one), "sync_batch_norm",
                   "bias", "[2]", "[3]");
}

// R ranks as threads of this process, so sync_batch_norm can be checked against batch_norm on
// the ranks' concatenated batch without MPI.
class ThreadGroup {
 public:
  explicit ThreadGroup(int world) : world_(world), slots_(world), barrier_(world) {}
  std::shared_ptr<nn::ProcessGroup> rank(int r) { return std::make_shared<Rank>(this, r); }

 private:
  struct Rank final : nn::ProcessGroup {
    Rank(ThreadGroup* group, int r) : g(group), r(r) {}
    int rank() const override { return r; }
    int world_size() const override { return g->world_; }
    Tensor all_gather(const Tensor& t) override {
      NoGradGuard no_grad;
      g->slots_[r] = t.clone();
      g->barrier_.arrive_and_wait();
      Tensor out = stack(g->slots_);
      g->barrier_.arrive_and_wait();  // nobody overwrites a slot before all have read
      return out;
    }
    void all_reduce_sum(const Tensor& t) override { t.copy_(all_gather(t).sum({0})); }
    ThreadGroup* g;
    int r;
  };
  int world_;
  std::vector<Tensor> slots_;
  std::barrier<> barrier_;
};

// Three ranks with 2, 5 and 3 samples (the merge weighs each rank by its count), and with 1, 0
// and 3 (a rank may hold one value per channel, or none, as in PyTorch): outputs, input
// gradients, running stats, and the ranks' weight and bias gradients summed, all as one
// process's batch_norm over their concatenation.
void expect_sync_equals_concatenated(const std::vector<int64_t>& sizes) {
  const int64_t c = 3, ranks = static_cast<int64_t>(sizes.size());
  std::vector<int64_t> offsets{0};
  for (int64_t n : sizes) offsets.push_back(offsets.back() + n);
  const int64_t total = offsets.back();
  Generator gen(11);
  Tensor x = randn({total, c, 4}, {}, &gen) * 2.0 + 1.5;
  Tensor gy = randn({total, c, 4}, {}, &gen);
  Tensor w0 = randn({c}, {}, &gen), b0 = randn({c}, {}, &gen);

  Tensor xr = x.clone().requires_grad_(), wr = w0.clone().requires_grad_(),
         br = b0.clone().requires_grad_();
  Tensor rm = full({c}, 0.3), rv = full({c}, 2.0);
  Tensor y = F::batch_norm(xr, rm, rv, wr, br, true, 0.1, 1e-5);
  (y * gy).sum().backward();

  ThreadGroup group(static_cast<int>(ranks));
  std::vector<Tensor> ys(ranks), gxs(ranks), gws(ranks), gbs(ranks), rms(ranks), rvs(ranks);
  std::vector<std::string> errors(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      try {
        Tensor xs = x.narrow(0, offsets[r], sizes[r]).clone().requires_grad_();
        Tensor w = w0.clone().requires_grad_(), b = b0.clone().requires_grad_();
        rms[r] = full({c}, 0.3);
        rvs[r] = full({c}, 2.0);
        Tensor yr = F::sync_batch_norm(xs, rms[r], rvs[r], w, b, 0.1, 1e-5, group.rank(r));
        (yr * gy.narrow(0, offsets[r], sizes[r])).sum().backward();
        ys[r] = yr.detach();
        gxs[r] = xs.grad().defined() ? xs.grad() : zeros_like(xs);
        gws[r] = w.grad();
        gbs[r] = b.grad();
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < ranks; ++r) ASSERT_EQ(errors[r], "") << "rank " << r;

  auto expect_close = [](const Tensor& got, const Tensor& want, const char* what) {
    std::vector<double> g = got.to_vector<double>(), w = want.to_vector<double>();
    ASSERT_EQ(g.size(), w.size()) << what;
    for (size_t i = 0; i < g.size(); ++i)
      ASSERT_NEAR(g[i], w[i], 2e-5 * (1 + std::abs(w[i]))) << what << " element " << i;
  };
  Tensor gw_sum = gws[0], gb_sum = gbs[0];
  for (int r = 1; r < ranks; ++r) {
    gw_sum = gw_sum + gws[r];
    gb_sum = gb_sum + gbs[r];
  }
  expect_close(cat(ys), y, "y");
  expect_close(cat(gxs), xr.grad(), "grad_x");
  expect_close(gw_sum, wr.grad(), "grad_weight");
  expect_close(gb_sum, br.grad(), "grad_bias");
  for (int r = 0; r < ranks; ++r) {
    expect_close(rms[r], rm, "running_mean");
    expect_close(rvs[r], rv, "running_var");
  }
}

TEST(Norm, SyncBatchNormOverRanksEqualsBatchNormOverTheirConcatenation) {
  {
    SCOPED_TRACE("2, 5, 3");
    expect_sync_equals_concatenated({2, 5, 3});
  }
  {
    SCOPED_TRACE("1, 0, 3");
    expect_sync_equals_concatenated({1, 0, 3});
  }
  // Each rank's own statistics would give other outputs.
  Generator gen(11);
  Tensor x = randn({10, 3, 4}, {}, &gen) * 2.0 + 1.5;
  Tensor whole = F::batch_norm(x, {}, {}, {}, {}, true).narrow(0, 0, 2);
  Tensor own = F::batch_norm(x.narrow(0, 0, 2), {}, {}, {}, {}, true);
  EXPECT_GT((own - whole).abs().max().item(), 0.1);
}

// A group whose ranks hold one value per channel between them cannot normalise: every rank
// fails together, after the gather.
TEST(Norm, SyncBatchNormNeedsTwoValuesOverTheGroup) {
  ThreadGroup group(2);
  std::vector<std::string> errors(2);
  std::vector<std::thread> threads;
  for (int r = 0; r < 2; ++r)
    threads.emplace_back([&, r] {
      try {
        F::sync_batch_norm(randn({r == 0 ? 1 : 0, 3}), {}, {}, {}, {}, 0.1, 1e-5, group.rank(r));
      } catch (const std::exception& e) {
        errors[r] = e.what();
      }
    });
  for (auto& t : threads) t.join();
  for (int r = 0; r < 2; ++r)
    EXPECT_NE(errors[r].find("more than 1 value per channel over the group's 2 ranks"),
              std::string::npos)
        << "rank " << r << ": " << errors[r];
}

}  // namespace
}  // namespace lumen::testing
