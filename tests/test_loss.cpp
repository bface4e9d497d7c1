#include <cmath>
#include <limits>

#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

LUMEN_OP_CASES(loss){{
    {"cross_entropy_mean",
     {Input::real({5, 4}), Input::index({5}, 4)},
     [](const auto& v) { return F::cross_entropy(v[0], v[1]); }},
    {"cross_entropy_sum_odd",
     {Input::real({3, 7}), Input::index({3}, 7)},
     [](const auto& v) { return F::cross_entropy(v[0], v[1], {.reduction = "sum"}); }},
    {"cross_entropy_spatial_none",
     {Input::real({2, 3, 5}), Input::index({2, 5}, 3)},
     [](const auto& v) { return F::cross_entropy(v[0], v[1], {.reduction = "none"}); }},
    {"cross_entropy_spatial_mean",
     {Input::real({3, 4, 2, 3}), Input::index({3, 2, 3}, 4)},
     [](const auto& v) { return F::cross_entropy(v[0], v[1]); }},
    {"cross_entropy_smoothing",
     {Input::real({4, 5}), Input::index({4}, 5)},
     [](const auto& v) { return F::cross_entropy(v[0], v[1], {.label_smoothing = 0.2}); }},
    // Class 1 is ignored: some of the 9 random targets hit it, the others count.
    {"cross_entropy_ignore_smoothing",
     {Input::real({9, 3}), Input::index({9}, 3)},
     [](const auto& v) {
       return F::cross_entropy(v[0], v[1], {.ignore_index = 1, .label_smoothing = 0.1});
     }},
    {"cross_entropy_unbatched",
     {Input::real({6}), Input::index({}, 6)},
     [](const auto& v) { return F::cross_entropy(v[0], v[1], {.reduction = "none"}); }},
    {"mse_loss_mean",
     {Input::real({3, 4}), Input::constant({3, 4})},
     [](const auto& v) { return F::mse_loss(v[0], v[1]); }},
    {"mse_loss_sum_both",
     {Input::real({7}), Input::real({7})},
     [](const auto& v) { return F::mse_loss(v[0], v[1], "sum"); }},
    {"mse_loss_none",
     {Input::real({2, 3, 3}), Input::constant({2, 3, 3})},
     [](const auto& v) { return F::mse_loss(v[0], v[1], "none"); }},
    {"bce_logits_mean",
     {Input::real({4, 3}), Input::constant({4, 3})},
     [](const auto& v) { return F::binary_cross_entropy_with_logits(v[0], v[1]); }},
    {"bce_logits_pos_weight",
     {Input::real({5, 3}), Input::constant({5, 3}), Input::positive({3})},
     [](const auto& v) { return F::binary_cross_entropy_with_logits(v[0], v[1], "sum", v[2]); }},
    {"bce_logits_target_grad",
     {Input::real({2, 5}), Input::real({2, 5}), Input::positive({2, 1})},
     [](const auto& v) { return F::binary_cross_entropy_with_logits(v[0], v[1], "none", v[2]); }},
}};

// -(1 - e) logp[y] - e/C sum_c logp[c] per sample, from the definition, in double; NaN marks an
// ignored sample.
std::vector<double> ce_reference(const std::vector<double>& x, const std::vector<int64_t>& t,
                                 int64_t c, int64_t ignore, double e) {
  std::vector<double> out;
  for (size_t i = 0; i < t.size(); ++i) {
    if (t[i] == ignore) {
      out.push_back(std::nan(""));
      continue;
    }
    double s = 0;
    for (int64_t j = 0; j < c; ++j) s += std::exp(x[i * c + j]);
    double lse = std::log(s), smooth = 0;
    for (int64_t j = 0; j < c; ++j) smooth -= x[i * c + j] - lse;
    out.push_back(-(1 - e) * (x[i * c + t[i]] - lse) + e / c * smooth);
  }
  return out;
}

TEST(Loss, CrossEntropyMatchesHandComputation) {
  std::vector<double> xv{0.5,  -1.0, 2.0,  0.1,  //
                         1.5,  1.5,  -0.3, 0.0,  //
                         -2.0, 0.7,  0.2,  3.0,  //
                         0.0,  0.0,  0.0,  0.0};
  std::vector<int64_t> tv{2, -100, 3, 0};
  Tensor x = from_vector<double>(xv, {4, 4});
  Tensor t = from_vector<int64_t>(tv);
  for (double e : {0.0, 0.1, 1.0}) {
    std::vector<double> want = ce_reference(xv, tv, 4, -100, e);
    double total = want[0] + want[2] + want[3];
    std::vector<double> none =
        F::cross_entropy(x, t, {.label_smoothing = e, .reduction = "none"}).to_vector<double>();
    ASSERT_EQ(none.size(), 4u);
    EXPECT_EQ(none[1], 0.0) << "ignored sample";
    for (int i : {0, 2, 3}) EXPECT_NEAR(none[i], want[i], 1e-14) << "e " << e << " sample " << i;
    EXPECT_NEAR(F::cross_entropy(x, t, {.label_smoothing = e, .reduction = "sum"}).item(), total,
                1e-14);
    // The mean divides by the 3 targets that count, not by 4.
    EXPECT_NEAR(F::cross_entropy(x, t, {.label_smoothing = e}).item(), total / 3, 1e-14);
  }
  // Sample 3 has equal logits: log 4 whatever the smoothing.
  EXPECT_NEAR(ce_reference(xv, tv, 4, -100, 0.3)[3], std::log(4.0), 1e-15);
}

TEST(Loss, CrossEntropyCustomIgnoreIndexAndGradient) {
  Tensor x = from_vector<double>({1.0, 2.0, 3.0, 0.0, -1.0, 1.0}, {2, 3}).requires_grad_();
  Tensor t = from_vector<int64_t>({2, 1});
  Tensor loss = F::cross_entropy(x, t, {.ignore_index = 1});
  double s = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
  EXPECT_NEAR(loss.item(), std::log(s) - 3.0, 1e-14);
  loss.backward();
  // d/dx = softmax - one_hot for the counted sample (1 of them), 0 for the ignored one.
  std::vector<double> g = x.grad().to_vector<double>();
  std::vector<double> want{std::exp(1.0) / s, std::exp(2.0) / s, std::exp(3.0) / s - 1, 0, 0, 0};
  for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], want[i], 1e-15) << i;
}

TEST(Loss, CrossEntropyAllIgnoredIsNaNForMean) {
  Tensor x = from_vector<double>({1.0, 2.0, 3.0, 4.0}, {2, 2});
  Tensor t = from_vector<int64_t>({-100, -100});
  EXPECT_TRUE(std::isnan(F::cross_entropy(x, t).item()));
  EXPECT_EQ(F::cross_entropy(x, t, {.reduction = "sum"}).item(), 0.0);
  EXPECT_EQ(F::cross_entropy(x, t, {.reduction = "none"}).to_vector<double>(),
            (std::vector<double>{0.0, 0.0}));
}

TEST(Loss, CrossEntropySpatialEqualsFlattened) {
  Generator gen(4);
  Tensor x = randn({2, 3, 4}, {.dtype = DType::f64}, &gen);
  Tensor t = from_vector<int64_t>({0, 2, 1, 1, 2, 2, 0, 1}, {2, 4});
  Tensor spatial = F::cross_entropy(x, t, {.label_smoothing = 0.05, .reduction = "none"});
  EXPECT_EQ(spatial.shape(), (Shape{2, 4}));
  Tensor flat = F::cross_entropy(x.permute({0, 2, 1}).reshape({8, 3}), t.reshape({8}),
                                 {.label_smoothing = 0.05, .reduction = "none"});
  std::vector<double> a = spatial.to_vector<double>(), b = flat.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-14);
}

TEST(Loss, CrossEntropyLargeLogitsStayFinite) {
  Tensor x = from_vector<float>({1000.f, 0.f, -1000.f, 500.f}, {2, 2});
  Tensor t = from_vector<int64_t>({1, 0});
  std::vector<double> l = F::cross_entropy(x, t, {.reduction = "none"}).to_vector<double>();
  EXPECT_NEAR(l[0], 1000.0, 1e-3);
  EXPECT_NEAR(l[1], 1500.0, 1e-3);
}

TEST(Loss, CrossEntropyHalfComputesInFloat) {
  Generator gen(12);
  Tensor x = randn({6, 10}, {}, &gen) * 2.0;
  Tensor t = from_vector<int64_t>({0, 9, 3, 3, 7, 1});
  Tensor xf = x.detach().requires_grad_();
  Tensor want = F::cross_entropy(xf, t, {.label_smoothing = 0.1});
  want.backward();
  for (DType dt : {DType::f16, DType::bf16}) {
    Tensor xh = x.to(dt).requires_grad_();
    Tensor got = F::cross_entropy(xh, t, {.label_smoothing = 0.1});
    EXPECT_EQ(got.dtype(), dt);
    double tol = dt == DType::f16 ? 5e-3 : 3e-2;
    EXPECT_NEAR(got.item(), want.item(), tol * std::abs(want.item()));
    got.backward();
    ASSERT_EQ(xh.grad().dtype(), dt);
    std::vector<double> g = xh.grad().to_vector<double>(), gw = xf.grad().to_vector<double>();
    for (size_t i = 0; i < g.size(); ++i) EXPECT_NEAR(g[i], gw[i], tol * std::abs(gw[i]) + 1e-4);
  }
}

TEST(Loss, CrossEntropyErrors) {
  Tensor x = zeros({2, 4});
  EXPECT_THROW_MSG(F::cross_entropy(x, from_vector<int64_t>({1, 7})), "cross_entropy",
                   "target index 7", "4 classes", "[2, 4]");
  EXPECT_THROW_MSG(F::cross_entropy(x, from_vector<int64_t>({-1, 0})), "target index -1",
                   "4 classes");
  EXPECT_THROW_MSG(F::cross_entropy(x, zeros({2})), "cross_entropy", "i64", "f32");
  EXPECT_THROW_MSG(F::cross_entropy(x, from_vector<int64_t>({0, 1, 2})), "cross_entropy", "[3]",
                   "[2, 4]", "expected target shape [2]");
  EXPECT_THROW_MSG(F::cross_entropy(zeros({2, 4, 3}), zeros({2, 4}, {.dtype = DType::i64})),
                   "[2, 4, 3]", "expected target shape [2, 3]");
  EXPECT_THROW_MSG(F::cross_entropy(x, from_vector<int64_t>({0, 1}), {.label_smoothing = 1.5}),
                   "label_smoothing", "1.5");
  EXPECT_THROW_MSG(F::cross_entropy(x, from_vector<int64_t>({0, 1}), {.reduction = "avg"}),
                   "cross_entropy", "\"avg\"", "\"mean\"", "\"none\"");
  EXPECT_THROW_MSG(
      F::cross_entropy(zeros({2, 4}, {.dtype = DType::i64}), from_vector<int64_t>({0, 1})),
      "cross_entropy", "logits", "i64");
}

TEST(Loss, MseMatchesHandComputation) {
  Tensor a = from_vector<double>({1, 2, 3, 4}, {2, 2}).requires_grad_();
  Tensor b = from_vector<double>({0, 4, 3, 1}, {2, 2});
  // Squared errors 1, 4, 0, 9.
  EXPECT_EQ(F::mse_loss(a, b, "none").to_vector<double>(), (std::vector<double>{1, 4, 0, 9}));
  EXPECT_EQ(F::mse_loss(a, b, "sum").item(), 14.0);
  Tensor m = F::mse_loss(a, b);
  EXPECT_EQ(m.item(), 3.5);
  m.backward();
  // d/da mean (a - b)^2 = 2 (a - b) / 4.
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{0.5, -1, 0, 1.5}));
  EXPECT_THROW_MSG(F::mse_loss(a, zeros({4}, {.dtype = DType::f64})), "mse_loss", "[4]", "[2, 2]");
  EXPECT_THROW_MSG(F::mse_loss(a, b, "Mean"), "mse_loss", "\"Mean\"");
}

// -[p y log s(x) + (1 - y) log(1 - s(x))], s the sigmoid: the textbook (unstable) form.
double bce_naive(double x, double y, double p) {
  double s = 1 / (1 + std::exp(-x));
  return -(p * y * std::log(s) + (1 - y) * std::log(1 - s));
}

TEST(Loss, BceWithLogitsMatchesDefinition) {
  std::vector<double> xv{-3.0, -0.5, 0.0, 0.25, 2.0, 4.0};
  std::vector<double> yv{0.0, 1.0, 0.5, 1.0, 0.0, 0.3};
  std::vector<double> pv{2.0, 0.5, 3.0};
  Tensor x = from_vector<double>(xv, {2, 3}), y = from_vector<double>(yv, {2, 3});
  Tensor p = from_vector<double>(pv);
  std::vector<double> l = F::binary_cross_entropy_with_logits(x, y, "none").to_vector<double>();
  std::vector<double> lp = F::binary_cross_entropy_with_logits(x, y, "none", p).to_vector<double>();
  double total = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    EXPECT_NEAR(l[i], bce_naive(xv[i], yv[i], 1.0), 1e-14) << i;
    EXPECT_NEAR(lp[i], bce_naive(xv[i], yv[i], pv[i % 3]), 1e-14) << i;
    total += l[i];
  }
  EXPECT_NEAR(F::binary_cross_entropy_with_logits(x, y).item(), total / 6, 1e-15);
  EXPECT_NEAR(F::binary_cross_entropy_with_logits(x, y, "sum").item(), total, 1e-14);
}

TEST(Loss, BceWithLogitsIsStableForLargeLogits) {
  Tensor x = from_vector<float>({100.f, -100.f, 100.f, -100.f}).requires_grad_();
  Tensor y = from_vector<float>({0.f, 1.f, 1.f, 0.f});
  std::vector<double> l = F::binary_cross_entropy_with_logits(x, y, "none").to_vector<double>();
  // Wrong by 100 logits: loss 100; right: loss log1p(e^-100) ~ 3.7e-44 (0 in f32).
  EXPECT_NEAR(l[0], 100.0, 1e-4);
  EXPECT_NEAR(l[1], 100.0, 1e-4);
  EXPECT_NEAR(l[2], 0.0, 1e-30);
  EXPECT_NEAR(l[3], 0.0, 1e-30);
  F::binary_cross_entropy_with_logits(x, y, "sum").backward();
  // d/dx = sigmoid(x) - y: 1, -1, 0, 0.
  std::vector<double> g = x.grad().to_vector<double>();
  std::vector<double> want{1, -1, 0, 0};
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(g[i], want[i], 1e-6) << i;
}

TEST(Loss, BceWithLogitsErrors) {
  Tensor x = zeros({2, 3});
  EXPECT_THROW_MSG(F::binary_cross_entropy_with_logits(x, zeros({3, 2})),
                   "binary_cross_entropy_with_logits", "[3, 2]", "[2, 3]");
  EXPECT_THROW_MSG(F::binary_cross_entropy_with_logits(x, zeros({2, 3}), "mean", zeros({2})),
                   "pos_weight", "[2]", "[2, 3]");
  EXPECT_THROW_MSG(F::binary_cross_entropy_with_logits(x, zeros({2, 3}), "batchmean"),
                   "\"batchmean\"");
  EXPECT_THROW_MSG(F::binary_cross_entropy_with_logits(x, zeros({2, 3}, {.dtype = DType::i64})),
                   "target", "i64");
}

}  // namespace
}  // namespace lumen::testing
