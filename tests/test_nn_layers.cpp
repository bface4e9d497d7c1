// The nn layers against independent computations: naive f64 loops for convolution, pooling and
// normalisation, hand-derived values, numerical gradients; their parameter and buffer names
// against PyTorch's state_dict keys; their repr against PyTorch's print(model); and the Module
// machinery (state_dict, train/eval, to, zero_grad) exercised through them.
#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numbers>
#include <set>
#include <string>
#include <vector>

#include "lumen/lumen.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;
using nn::Sequential;
using std::make_shared;

// Writes `values` (row-major) into t in place, cast to its dtype; fine on parameters.
void set_values(const Tensor& t, const std::vector<double>& values) {
  NoGradGuard no_grad;
  t.copy_(from_vector<double>(values, t.shape()));
}

::testing::AssertionResult all_close(const Tensor& got, const std::vector<double>& want,
                                     double tol = 1e-5) {
  std::vector<double> g = got.to_vector<double>();
  if (g.size() != want.size())
    return ::testing::AssertionFailure() << g.size() << " elements, expected " << want.size();
  for (size_t i = 0; i < g.size(); ++i)
    if (!(std::abs(g[i] - want[i]) <= tol * (1 + std::abs(want[i]))))
      return ::testing::AssertionFailure() << "element " << i << ": " << g[i] << " vs " << want[i];
  return ::testing::AssertionSuccess();
}

::testing::AssertionResult all_close(const Tensor& got, const Tensor& want, double tol = 1e-5) {
  if (got.shape() != want.shape())
    return ::testing::AssertionFailure()
           << "shape " << shape_str(got.shape()) << " vs " << shape_str(want.shape());
  return all_close(got, want.to_vector<double>(), tol);
}

std::vector<std::pair<std::string, Shape>> keys_and_shapes(const nn::Module& m) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const auto& [name, t] : m.named_parameters()) out.emplace_back(name, t.shape());
  for (const auto& [name, t] : m.named_buffers()) out.emplace_back(name, t.shape());
  return out;
}

std::set<std::string> state_keys(const nn::Module& m) {
  std::set<std::string> out;
  for (const auto& [name, t] : m.state_dict()) out.insert(name);
  return out;
}

// Direct 2-D convolution in f64: x [N, C, H, W], w [O, C / g, kH, kW], b [O] or empty.
std::vector<double> naive_conv2d(const std::vector<double>& x, Shape xs,
                                 const std::vector<double>& w, Shape ws,
                                 const std::vector<double>& b, nn::IntPair s, nn::IntPair p,
                                 nn::IntPair d, int64_t groups, Shape* out_shape) {
  const int64_t n = xs[0], c = xs[1], h = xs[2], wd = xs[3];
  const int64_t o = ws[0], cg = ws[1], kh = ws[2], kw = ws[3];
  const int64_t oh = (h + 2 * p.h - d.h * (kh - 1) - 1) / s.h + 1;
  const int64_t ow = (wd + 2 * p.w - d.w * (kw - 1) - 1) / s.w + 1;
  *out_shape = {n, o, oh, ow};
  std::vector<double> y(static_cast<size_t>(n * o * oh * ow));
  const int64_t og = o / groups;
  for (int64_t in = 0; in < n; ++in)
    for (int64_t oc = 0; oc < o; ++oc)
      for (int64_t i = 0; i < oh; ++i)
        for (int64_t j = 0; j < ow; ++j) {
          double acc = b.empty() ? 0.0 : b[oc];
          const int64_t g = oc / og;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t u = 0; u < kh; ++u)
              for (int64_t v = 0; v < kw; ++v) {
                const int64_t r = i * s.h - p.h + u * d.h, q = j * s.w - p.w + v * d.w;
                if (r < 0 || r >= h || q < 0 || q >= wd) continue;
                acc += x[((in * c + g * cg + ci) * h + r) * wd + q] *
                       w[((oc * cg + ci) * kh + u) * kw + v];
              }
          y[((in * o + oc) * oh + i) * ow + j] = acc;
        }
  return y;
}

// ---------------------------------------------------------------- Linear

TEST(NnLayers, LinearForwardByHand) {
  nn::Linear fc(3, 2);
  set_values(fc.weight, {1, 2, 3, -1, 0, 1});
  set_values(fc.bias, {0.5, -0.5});
  Tensor x = from_vector<float>({1, 1, 1, 2, 0, -1}, {2, 3});
  Tensor y = fc(x);
  EXPECT_EQ(y.shape(), Shape({2, 2}));
  EXPECT_TRUE(all_close(y, {6.5, -0.5, -0.5, -3.5}));
  // Leading dims pass through.
  EXPECT_TRUE(all_close(fc(x.reshape({2, 1, 3})), {6.5, -0.5, -0.5, -3.5}));
  EXPECT_EQ(fc(x.reshape({2, 1, 3})).shape(), Shape({2, 1, 2}));

  nn::Linear no_bias(3, 2, {.bias = false});
  set_values(no_bias.weight, {1, 2, 3, -1, 0, 1});
  EXPECT_TRUE(all_close(no_bias(x), {6, 0, -1, -3}));
}

TEST(NnLayers, LinearParametersInitAndRepr) {
  manual_seed(1);
  nn::Linear fc(300, 200);
  EXPECT_EQ(keys_and_shapes(fc),
            (std::vector<std::pair<std::string, Shape>>{{"weight", {200, 300}}, {"bias", {200}}}));
  EXPECT_TRUE(fc.weight.requires_grad() && fc.bias.requires_grad());
  // kaiming_uniform_(a = sqrt(5)) is U(-1/sqrt(300), 1/sqrt(300)): variance 1 / 900.
  const double bound = 1.0 / std::sqrt(300.0);
  std::vector<double> w = fc.weight.to_vector<double>();
  auto [lo, hi] = std::minmax_element(w.begin(), w.end());
  EXPECT_GE(*lo, -bound);
  EXPECT_LE(*hi, bound);
  EXPECT_LT(*lo, -0.99 * bound);
  double var = 0;
  for (double v : w) var += v * v;
  EXPECT_NEAR(var / static_cast<double>(w.size()), 1.0 / 900, 0.03 / 900);
  std::vector<double> b = fc.bias.to_vector<double>();
  for (double v : b) EXPECT_LE(std::abs(v), bound);

  EXPECT_EQ(nn::Linear(784, 256).repr(), "Linear(in_features=784, out_features=256, bias=True)");
  EXPECT_EQ(nn::Linear(4, 2, {.bias = false}).repr(),
            "Linear(in_features=4, out_features=2, bias=False)");
  EXPECT_EQ(nn::Linear(4, 2, {.bias = false}).state_dict().size(), 1u);
}

TEST(NnLayers, LinearInitIsReproducibleUnderASeed) {
  manual_seed(42);
  nn::Linear a(5, 4);
  manual_seed(42);
  nn::Linear b(5, 4);
  EXPECT_EQ(a.weight.to_vector<double>(), b.weight.to_vector<double>());
  EXPECT_EQ(a.bias.to_vector<double>(), b.bias.to_vector<double>());
  nn::Linear c(5, 4);  // the stream moved on
  EXPECT_NE(a.weight.to_vector<double>(), c.weight.to_vector<double>());
}

TEST(NnLayers, LinearErrors) {
  EXPECT_THROW_MSG(nn::Linear(0, 3), "Linear", "in_features=0", "positive");
  EXPECT_THROW_MSG(nn::Linear(3, -1), "Linear", "out_features=-1", "positive");
  nn::Linear fc(3, 2);
  EXPECT_THROW(fc(zeros({2, 4})), Error);
}

// ---------------------------------------------------------------- Conv2d

TEST(NnLayers, Conv2dMatchesNaiveConvolution) {
  manual_seed(2);
  nn::Conv2d conv(4, 6, {3, 2},
                  {.stride = {2, 1}, .padding = {1, 2}, .dilation = {1, 2}, .groups = 2});
  EXPECT_EQ(conv.weight.shape(), Shape({6, 2, 3, 2}));
  Tensor x = randn({2, 4, 7, 6});
  Shape out_shape;
  std::vector<double> want = naive_conv2d(
      x.to_vector<double>(), x.shape(), conv.weight.to_vector<double>(), conv.weight.shape(),
      conv.bias.to_vector<double>(), conv.stride, conv.padding, conv.dilation, 2, &out_shape);
  Tensor y = conv(x);
  EXPECT_EQ(y.shape(), out_shape);
  EXPECT_TRUE(all_close(y, want, 1e-4));
  // Unbatched input.
  EXPECT_TRUE(all_close(conv(x.select(0, 1)), F::conv2d(x.select(0, 1), conv.weight, conv.bias,
                                                        {2, 1}, {1, 2}, {1, 2}, 2)));
}

TEST(NnLayers, Conv2dByHand) {
  nn::Conv2d conv(1, 1, 2);
  set_values(conv.weight, {1, 2, 3, 4});
  set_values(conv.bias, {10});
  Tensor x = from_vector<float>({1, 2, 3, 4, 5, 6, 7, 8, 9}, {1, 1, 3, 3});
  // out[i][j] = x[i][j] + 2 x[i][j+1] + 3 x[i+1][j] + 4 x[i+1][j+1] + 10.
  EXPECT_TRUE(all_close(conv(x), {47, 57, 77, 87}));
}

TEST(NnLayers, Conv2dParametersInitAndRepr) {
  manual_seed(3);
  nn::Conv2d conv(8, 16, 3, {.padding = 1});
  EXPECT_EQ(keys_and_shapes(conv), (std::vector<std::pair<std::string, Shape>>{
                                       {"weight", {16, 8, 3, 3}}, {"bias", {16}}}));
  // Both U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = 8 * 3 * 3.
  const double bound = 1.0 / std::sqrt(72.0);
  for (const Tensor& t : {conv.weight, conv.bias}) {
    std::vector<double> v = t.to_vector<double>();
    EXPECT_LE(*std::max_element(v.begin(), v.end()), bound);
    EXPECT_GE(*std::min_element(v.begin(), v.end()), -bound);
  }
  EXPECT_EQ(conv.repr(), "Conv2d(8, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))");
  EXPECT_EQ(nn::Conv2d(4, 8, {3, 5}, {.stride = 2, .dilation = {1, 2}, .groups = 4, .bias = false})
                .repr(),
            "Conv2d(4, 8, kernel_size=(3, 5), stride=(2, 2), dilation=(1, 2), groups=4, "
            "bias=False)");
  EXPECT_EQ(nn::Conv2d(4, 8, 1, {.bias = false}).state_dict().size(), 1u);
}

TEST(NnLayers, Conv2dErrors) {
  EXPECT_THROW_MSG(nn::Conv2d(3, 4, 3, {.groups = 2}), "in_channels (3)",
                   "divisible by groups (2)");
  EXPECT_THROW_MSG(nn::Conv2d(4, 6, 3, {.groups = 4}), "out_channels (6)",
                   "divisible by groups (4)");
  EXPECT_THROW_MSG(nn::Conv2d(4, 4, 3, {.groups = 0}), "groups must be a positive integer");
  EXPECT_THROW_MSG(nn::Conv2d(0, 4, 3), "in_channels=0");
  EXPECT_THROW_MSG(nn::Conv2d(2, 4, {3, 0}), "kernel_size", "(3, 0)");
  EXPECT_THROW_MSG(nn::Conv2d(2, 4, 3, {.stride = 0}), "stride", "(0, 0)");
  EXPECT_THROW_MSG(nn::Conv2d(2, 4, 3, {.padding = {0, -1}}), "padding", "(0, -1)");
  EXPECT_THROW_MSG(nn::Conv2d(2, 4, 3, {.dilation = 0}), "dilation");
}

// ---------------------------------------------------------------- BatchNorm

// Per-channel mean and biased variance of x [N, C, L] (L = 1 for [N, C]).
void channel_stats(const std::vector<double>& x, int64_t n, int64_t c, int64_t l,
                   std::vector<double>& mean, std::vector<double>& var) {
  mean.assign(static_cast<size_t>(c), 0.0);
  var.assign(static_cast<size_t>(c), 0.0);
  const double count = static_cast<double>(n * l);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < l; ++k) mean[ch] += x[(i * c + ch) * l + k] / count;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < l; ++k) {
        const double dv = x[(i * c + ch) * l + k] - mean[ch];
        var[ch] += dv * dv / count;
      }
}

TEST(NnLayers, BatchNormNamesShapesAndRepr) {
  nn::BatchNorm2d bn(5);
  EXPECT_EQ(keys_and_shapes(bn),
            (std::vector<std::pair<std::string, Shape>>{{"weight", {5}},
                                                        {"bias", {5}},
                                                        {"running_mean", {5}},
                                                        {"running_var", {5}},
                                                        {"num_batches_tracked", {}}}));
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::i64);
  EXPECT_FALSE(bn.running_mean.requires_grad());
  EXPECT_EQ(bn.weight.to_vector<double>(), std::vector<double>(5, 1.0));
  EXPECT_EQ(bn.bias.to_vector<double>(), std::vector<double>(5, 0.0));
  EXPECT_EQ(bn.running_mean.to_vector<double>(), std::vector<double>(5, 0.0));
  EXPECT_EQ(bn.running_var.to_vector<double>(), std::vector<double>(5, 1.0));
  EXPECT_EQ(bn.num_batches_tracked.item(), 0.0);
  EXPECT_EQ(bn.num_parameters(), 10);
  EXPECT_EQ(bn.repr(),
            "BatchNorm2d(5, eps=1e-05, momentum=0.1, affine=True, track_running_stats=True)");

  nn::BatchNorm1d plain(
      3, {.eps = 1e-3, .momentum = std::nullopt, .affine = false, .track_running_stats = false});
  EXPECT_TRUE(plain.state_dict().empty());
  EXPECT_TRUE(plain.parameters().empty());
  EXPECT_EQ(plain.repr(),
            "BatchNorm1d(3, eps=0.001, momentum=None, affine=False, track_running_stats=False)");
}

TEST(NnLayers, BatchNorm2dTrainUpdatesRunningStatsEvalUsesThem) {
  manual_seed(4);
  const int64_t n = 4, c = 3, h = 2, w = 5;
  nn::BatchNorm2d bn(c);
  set_values(bn.weight, {1.0, 2.0, -0.5});
  set_values(bn.bias, {0.0, 1.0, 3.0});
  Tensor x = randn({n, c, h, w}) * 2.0 + 1.0;
  std::vector<double> xv = x.to_vector<double>();
  // [N, C, H, W] read as [N, C, L] with L = H W.
  std::vector<double> mean, var;
  channel_stats(xv, n, c, h * w, mean, var);
  const double unbias = static_cast<double>(n * h * w) / static_cast<double>(n * h * w - 1);

  Tensor y = bn(x);
  std::vector<double> want(xv.size());
  const double wt[] = {1.0, 2.0, -0.5}, bs[] = {0.0, 1.0, 3.0};
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < h * w; ++k) {
        const int64_t at = (i * c + ch) * h * w + k;
        want[at] = (xv[at] - mean[ch]) / std::sqrt(var[ch] + 1e-5) * wt[ch] + bs[ch];
      }
  EXPECT_TRUE(all_close(y, want, 1e-4));
  std::vector<double> rm(3), rv(3);
  for (int ch = 0; ch < 3; ++ch) {
    rm[ch] = 0.1 * mean[ch];
    rv[ch] = 0.9 + 0.1 * var[ch] * unbias;
  }
  EXPECT_TRUE(all_close(bn.running_mean, rm));
  EXPECT_TRUE(all_close(bn.running_var, rv));
  EXPECT_EQ(bn.num_batches_tracked.item(), 1.0);

  bn(x);  // a second identical batch: running = 0.9 running + 0.1 batch again
  for (int ch = 0; ch < 3; ++ch) {
    rm[ch] = 0.9 * rm[ch] + 0.1 * mean[ch];
    rv[ch] = 0.9 * rv[ch] + 0.1 * var[ch] * unbias;
  }
  EXPECT_TRUE(all_close(bn.running_mean, rm));
  EXPECT_TRUE(all_close(bn.running_var, rv));
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.0);

  // Eval: normalise with the running stats, and leave them alone.
  bn.eval();
  Tensor y_eval = bn(x);
  for (int64_t i = 0; i < n; ++i)
    for (int64_t ch = 0; ch < c; ++ch)
      for (int64_t k = 0; k < h * w; ++k) {
        const int64_t at = (i * c + ch) * h * w + k;
        want[at] = (xv[at] - rm[ch]) / std::sqrt(rv[ch] + 1e-5) * wt[ch] + bs[ch];
      }
  EXPECT_TRUE(all_close(y_eval, want, 1e-4));
  EXPECT_TRUE(all_close(bn.running_mean, rm));
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.0);
}

TEST(NnLayers, BatchNorm1dCumulativeAverageAndNoTracking) {
  // momentum = None: the running stats are the plain average over the batches seen.
  nn::BatchNorm1d bn(2, {.momentum = std::nullopt});
  Tensor a = from_vector<float>({1, 10, 3, 20, 5, 30}, {3, 2});
  Tensor b = from_vector<float>({-1, 0, 1, 4}, {2, 2});
  bn(a);
  bn(b);
  // Batch means (3, 20) and (0, 2); unbiased variances (4, 100) and (2, 8).
  EXPECT_TRUE(all_close(bn.running_mean, {1.5, 11.0}));
  // The first batch replaces the initial stats (factor 1 / 1), the second averages (1 / 2).
  EXPECT_TRUE(all_close(bn.running_var, {(4 + 2) / 2.0, (100 + 8) / 2.0}));
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.0);

  // [N, C, L] input: statistics over N and L.
  nn::BatchNorm1d seq(2, {.affine = false});
  Tensor x = from_vector<float>({1, 3, 0, 0, 5, 7, 2, 2}, {2, 2, 2});
  Tensor y = seq(x);
  // Channel 0: {1, 3, 5, 7}, mean 4, var 5; channel 1: {0, 0, 2, 2}, mean 1, var 1.
  const double s0 = std::sqrt(5 + 1e-5), s1 = std::sqrt(1 + 1e-5);
  EXPECT_TRUE(all_close(y, {-3 / s0, -1 / s0, -1 / s1, -1 / s1, 1 / s0, 3 / s0, 1 / s1, 1 / s1}));
  EXPECT_TRUE(all_close(seq.running_mean, {0.4, 0.1}));

  // Without running stats, eval still normalises with the batch's statistics.
  nn::BatchNorm1d untracked(2, {.affine = false, .track_running_stats = false});
  untracked.eval();
  EXPECT_TRUE(all_close(untracked(x), y));
}

TEST(NnLayers, BatchNormErrors) {
  nn::BatchNorm2d bn2(3);
  EXPECT_THROW_MSG(bn2(zeros({2, 3, 4})), "BatchNorm2d", "expected 4D input", "got 3D",
                   "[2, 3, 4]");
  nn::BatchNorm1d bn1(3);
  EXPECT_THROW_MSG(bn1(zeros({2, 3, 4, 4})), "BatchNorm1d", "expected 2D or 3D input", "got 4D");
  EXPECT_THROW_MSG(bn1(zeros({2, 4})), "expected 3 channels", "[2, 4]");
  EXPECT_THROW_MSG(bn1(zeros({1, 3})), "more than 1 value per channel");
  EXPECT_THROW_MSG(nn::BatchNorm2d(0), "num_features must be positive");
  EXPECT_THROW_MSG(nn::BatchNorm2d(3, {.momentum = 1.5}), "momentum", "[0, 1]");
}

// ---------------------------------------------------------------- LayerNorm

TEST(NnLayers, LayerNormByHand) {
  nn::LayerNorm ln(4);
  set_values(ln.weight, {1, 2, 3, 4});
  set_values(ln.bias, {0, 0, 1, 1});
  Tensor x = from_vector<float>({1, 2, 3, 4, 2, 2, 2, 6}, {2, 4});
  // Row 0: mean 2.5, var 1.25; row 1: mean 3, var 3.
  const double s0 = std::sqrt(1.25 + 1e-5), s1 = std::sqrt(3 + 1e-5);
  EXPECT_TRUE(all_close(ln(x), {-1.5 / s0, -0.5 * 2 / s0, 0.5 * 3 / s0 + 1, 1.5 * 4 / s0 + 1,
                                -1 / s1, -2 / s1, -3 / s1 + 1, 3 * 4 / s1 + 1}));

  nn::LayerNorm two({2, 2}, {.eps = 1e-3, .elementwise_affine = false});
  EXPECT_TRUE(two.parameters().empty());
  EXPECT_TRUE(
      all_close(two(x.reshape({2, 2, 2})), F::layer_norm(x, {4}, {}, {}, 1e-3).reshape({2, 2, 2})));
}

TEST(NnLayers, LayerNormParametersAndRepr) {
  nn::LayerNorm ln({3, 4});
  EXPECT_EQ(keys_and_shapes(ln),
            (std::vector<std::pair<std::string, Shape>>{{"weight", {3, 4}}, {"bias", {3, 4}}}));
  EXPECT_EQ(ln.weight.to_vector<double>(), std::vector<double>(12, 1.0));
  EXPECT_EQ(ln.bias.to_vector<double>(), std::vector<double>(12, 0.0));
  EXPECT_EQ(ln.repr(), "LayerNorm((3, 4), eps=1e-05, elementwise_affine=True)");
  EXPECT_EQ(nn::LayerNorm(10, {.eps = 1e-6}).repr(),
            "LayerNorm((10,), eps=1e-06, elementwise_affine=True)");
  EXPECT_EQ(nn::LayerNorm(10, {.bias = false}).state_dict().size(), 1u);
  EXPECT_THROW_MSG(nn::LayerNorm(Shape{4, 0}), "LayerNorm", "positive", "[4, 0]");
  EXPECT_THROW(ln(zeros({2, 4, 3})), Error);
}

// ---------------------------------------------------------------- Dropout

TEST(NnLayers, DropoutTrainsAndIsIdentityInEval) {
  manual_seed(5);
  nn::Dropout drop(0.25);
  Tensor x = rand({200, 100}) + 1.0;  // all in [1, 2), none zero
  std::vector<double> xv = x.to_vector<double>(), y = drop(x).to_vector<double>();
  int64_t zeros_seen = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (y[i] == 0.0) {
      ++zeros_seen;
    } else {
      EXPECT_NEAR(y[i], xv[i] / 0.75, 1e-5);
    }
  }
  // 20000 Bernoulli(0.25) draws: 5000 +- 61 (one sd).
  EXPECT_NEAR(static_cast<double>(zeros_seen), 5000, 400);

  drop.eval();
  EXPECT_EQ(drop(x).to_vector<double>(), xv);
  EXPECT_EQ(drop.repr(), "Dropout(p=0.25, inplace=False)");
  EXPECT_EQ(nn::Dropout().repr(), "Dropout(p=0.5, inplace=False)");
  EXPECT_THROW_MSG(nn::Dropout(1.5), "Dropout", "between 0 and 1", "1.5");
  EXPECT_THROW_MSG(nn::Dropout(-0.1), "between 0 and 1");
}

// ---------------------------------------------------------------- Embedding

TEST(NnLayers, EmbeddingLooksUpRowsAndPadsWithZero) {
  manual_seed(6);
  nn::Embedding emb(10, 3, {.padding_idx = -1});
  EXPECT_EQ(emb.padding_idx, 9);
  EXPECT_EQ(keys_and_shapes(emb),
            (std::vector<std::pair<std::string, Shape>>{{"weight", {10, 3}}}));
  std::vector<double> w = emb.weight.to_vector<double>();
  EXPECT_EQ(std::vector<double>(w.begin() + 27, w.end()), std::vector<double>(3, 0.0));

  Tensor idx = from_vector<int64_t>({2, 9, 0, 2}, {2, 2});
  Tensor y = emb(idx);
  EXPECT_EQ(y.shape(), Shape({2, 2, 3}));
  std::vector<double> want;
  for (int64_t i : {2, 9, 0, 2})
    for (int k = 0; k < 3; ++k) want.push_back(w[i * 3 + k]);
  EXPECT_TRUE(all_close(y, want, 0));

  // Row 2 appears twice, so its gradient is 2; the padding row gets none.
  y.sum().backward();
  std::vector<double> g = emb.weight.grad().to_vector<double>();
  for (int k = 0; k < 3; ++k) {
    EXPECT_EQ(g[0 * 3 + k], 1.0);
    EXPECT_EQ(g[2 * 3 + k], 2.0);
    EXPECT_EQ(g[9 * 3 + k], 0.0);
    EXPECT_EQ(g[5 * 3 + k], 0.0);
  }
  EXPECT_EQ(emb.repr(), "Embedding(10, 3, padding_idx=9)");
  EXPECT_EQ(nn::Embedding(1000, 64).repr(), "Embedding(1000, 64)");
}

TEST(NnLayers, EmbeddingInitIsStandardNormal) {
  manual_seed(7);
  nn::Embedding emb(1024, 128);
  std::vector<double> w = emb.weight.to_vector<double>();
  double mean = 0, var = 0;
  for (double v : w) mean += v / static_cast<double>(w.size());
  for (double v : w) var += (v - mean) * (v - mean) / static_cast<double>(w.size());
  EXPECT_NEAR(mean, 0.0, 6 / std::sqrt(131072.0));
  EXPECT_NEAR(var, 1.0, 0.03);
}

TEST(NnLayers, EmbeddingErrors) {
  EXPECT_THROW_MSG(nn::Embedding(10, 3, {.padding_idx = 10}), "padding_idx", "[-10, 10)", "10");
  EXPECT_THROW_MSG(nn::Embedding(10, 3, {.padding_idx = -11}), "padding_idx", "-11");
  EXPECT_THROW_MSG(nn::Embedding(0, 3), "num_embeddings must be positive");
  EXPECT_THROW_MSG(nn::Embedding(4, 0), "embedding_dim must be positive");
  nn::Embedding emb(4, 2);
  EXPECT_THROW(emb(from_vector<int64_t>({4})), Error);
}

// ---------------------------------------------------------------- Pooling

// Max or mean over windows of x [N, C, H, W] in f64; padding is -inf for max and zero for
// mean (divisor: the whole window, as count_include_pad).
std::vector<double> naive_pool(const std::vector<double>& x, Shape xs, nn::IntPair k, nn::IntPair s,
                               nn::IntPair p, bool max, Shape* out_shape) {
  const int64_t nc = xs[0] * xs[1], h = xs[2], w = xs[3];
  const int64_t oh = (h + 2 * p.h - k.h) / s.h + 1, ow = (w + 2 * p.w - k.w) / s.w + 1;
  *out_shape = {xs[0], xs[1], oh, ow};
  std::vector<double> y;
  for (int64_t m = 0; m < nc; ++m)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        double acc = max ? -std::numeric_limits<double>::infinity() : 0.0;
        for (int64_t u = 0; u < k.h; ++u)
          for (int64_t v = 0; v < k.w; ++v) {
            const int64_t r = i * s.h - p.h + u, q = j * s.w - p.w + v;
            if (r < 0 || r >= h || q < 0 || q >= w) continue;
            const double xv = x[(m * h + r) * w + q];
            acc = max ? std::max(acc, xv) : acc + xv;
          }
        y.push_back(max ? acc : acc / static_cast<double>(k.h * k.w));
      }
  return y;
}

TEST(NnLayers, MaxPool2dMatchesNaive) {
  manual_seed(8);
  Tensor x = randn({2, 3, 7, 6});
  nn::MaxPool2d pool({3, 2}, {.stride = nn::IntPair{2, 1}, .padding = {1, 1}});
  Shape shape;
  std::vector<double> want =
      naive_pool(x.to_vector<double>(), x.shape(), {3, 2}, {2, 1}, {1, 1}, true, &shape);
  Tensor y = pool(x);
  EXPECT_EQ(y.shape(), shape);
  EXPECT_TRUE(all_close(y, want, 0));

  nn::MaxPool2d halve(2);
  Tensor small =
      from_vector<float>({1, 5, 2, 0, 3, 4, 8, 1, 0, 0, -1, -2, 9, 0, -3, -4}, {1, 4, 4});
  EXPECT_TRUE(all_close(halve(small), {5, 8, 9, -1}));  // unbatched [C, H, W]
  EXPECT_EQ(halve.repr(),
            "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)");
  EXPECT_EQ(pool.repr(),
            "MaxPool2d(kernel_size=(3, 2), stride=(2, 1), padding=(1, 1), dilation=1, "
            "ceil_mode=False)");
  EXPECT_THROW_MSG(nn::MaxPool2d(2, {.padding = 2}), "at most half the kernel size");
  EXPECT_THROW_MSG(nn::MaxPool2d(0), "kernel_size must be positive");
}

TEST(NnLayers, AvgPool2dMatchesNaive) {
  manual_seed(9);
  Tensor x = randn({2, 2, 6, 7});
  nn::AvgPool2d pool(3, {.stride = 2, .padding = 1});
  Shape shape;
  std::vector<double> want = naive_pool(x.to_vector<double>(), x.shape(), 3, 2, 1, false, &shape);
  Tensor y = pool(x);
  EXPECT_EQ(y.shape(), shape);
  EXPECT_TRUE(all_close(y, want));
  // count_include_pad = false: corner windows divide by the taps inside the image.
  nn::AvgPool2d inside(3, {.stride = 2, .padding = 1, .count_include_pad = false});
  EXPECT_TRUE(all_close(inside(x), F::avg_pool2d(x, {3, 3}, F::Size2{2, 2}, {1, 1}, false)));
  std::vector<double> xv = x.to_vector<double>();
  EXPECT_NEAR(inside(x).to_vector<double>()[0], (xv[0] + xv[1] + xv[7] + xv[8]) / 4, 1e-5);
  EXPECT_EQ(pool.repr(), "AvgPool2d(kernel_size=3, stride=2, padding=1)");
  EXPECT_EQ(nn::AvgPool2d(2).repr(), "AvgPool2d(kernel_size=2, stride=2, padding=0)");
}

// PyTorch's adaptive average pooling, in f64: cell (i, j) averages rows
// [floor(i H / OH), ceil((i + 1) H / OH)) and the same for columns.
std::vector<double> naive_adaptive_avg(const std::vector<double>& x, Shape xs, int64_t oh,
                                       int64_t ow) {
  const int64_t nc = xs[0] * xs[1], h = xs[2], w = xs[3];
  std::vector<double> y;
  for (int64_t m = 0; m < nc; ++m)
    for (int64_t i = 0; i < oh; ++i)
      for (int64_t j = 0; j < ow; ++j) {
        const int64_t r0 = (i * h) / oh, r1 = ((i + 1) * h + oh - 1) / oh;
        const int64_t c0 = (j * w) / ow, c1 = ((j + 1) * w + ow - 1) / ow;
        double acc = 0;
        for (int64_t r = r0; r < r1; ++r)
          for (int64_t q = c0; q < c1; ++q) acc += x[(m * h + r) * w + q];
        y.push_back(acc / static_cast<double>((r1 - r0) * (c1 - c0)));
      }
  return y;
}

TEST(NnLayers, AdaptiveAvgPool2dMatchesTorchBins) {
  manual_seed(10);
  Tensor x = randn({2, 3, 5, 7});
  // Uneven bins (overlapping), even bins (the pooling kernel), global, larger than the input,
  // one dim kept.
  for (nn::IntPair out : {nn::IntPair{3, 4}, nn::IntPair{5, 7}, nn::IntPair{1}, nn::IntPair{7, 9},
                          nn::IntPair{5, 2}, nn::IntPair{2, 7}}) {
    nn::AdaptiveAvgPool2d pool(out);
    Tensor y = pool(x);
    EXPECT_EQ(y.shape(), Shape({2, 3, out.h, out.w})) << out.str();
    EXPECT_TRUE(all_close(y, naive_adaptive_avg(x.to_vector<double>(), x.shape(), out.h, out.w)))
        << out.str();
  }
  Tensor even = randn({1, 2, 8, 6});
  nn::AdaptiveAvgPool2d to_4x3({4, 3});
  EXPECT_TRUE(
      all_close(to_4x3(even), naive_adaptive_avg(even.to_vector<double>(), even.shape(), 4, 3)));
  // Unbatched input.
  EXPECT_TRUE(all_close(nn::AdaptiveAvgPool2d({3, 4})(x.select(0, 1)),
                        nn::AdaptiveAvgPool2d({3, 4})(x).select(0, 1)));
  EXPECT_EQ(nn::AdaptiveAvgPool2d(1).repr(), "AdaptiveAvgPool2d(output_size=1)");
  EXPECT_EQ(nn::AdaptiveAvgPool2d({7, 7}).repr(), "AdaptiveAvgPool2d(output_size=(7, 7))");
  EXPECT_THROW_MSG(nn::AdaptiveAvgPool2d(0), "output_size must be positive");
  EXPECT_THROW_MSG(nn::AdaptiveAvgPool2d(2)(zeros({4, 4})), "expected 3D or 4D input", "[4, 4]");
  EXPECT_THROW_MSG(nn::AdaptiveAvgPool2d(2)(zeros({1, 2, 0, 4})), "non-empty");
}

TEST(NnLayers, AdaptiveAvgPool2dGradcheck) {
  for (nn::IntPair out :
       {nn::IntPair{2, 3}, nn::IntPair{3, 2}, nn::IntPair{3, 4}, nn::IntPair{1}}) {
    nn::AdaptiveAvgPool2d pool(out);
    auto fn = [&](const std::vector<Tensor>& v) { return pool(v[0]); };
    Generator gen(20);
    Tensor x = randn({2, 2, 4, 6}, {.dtype = DType::f64}, &gen).requires_grad_();
    autograd::GradcheckResult r = autograd::gradcheck(fn, {x});
    EXPECT_TRUE(r.ok) << out.str() << ": " << r.message;
    // Non-contiguous: the same values with transposed memory.
    Tensor xt = x.detach().transpose(2, 3).contiguous().transpose(2, 3).requires_grad_();
    ASSERT_FALSE(xt.is_contiguous());
    r = autograd::gradcheck(fn, {xt});
    EXPECT_TRUE(r.ok) << out.str() << " (non-contiguous): " << r.message;
  }
}

// ---------------------------------------------------------------- Flatten

TEST(NnLayers, FlattenDims) {
  Tensor x = arange(120, {.dtype = DType::f32}).reshape({2, 3, 4, 5});
  EXPECT_EQ(nn::Flatten()(x).shape(), Shape({2, 60}));
  EXPECT_EQ(nn::Flatten(0)(x).shape(), Shape({120}));
  EXPECT_EQ(nn::Flatten(1, 2)(x).shape(), Shape({2, 12, 5}));
  EXPECT_EQ(nn::Flatten(-3, -2)(x).shape(), Shape({2, 12, 5}));
  EXPECT_EQ(nn::Flatten()(x).to_vector<double>(), x.to_vector<double>());
  EXPECT_EQ(nn::Flatten().repr(), "Flatten(start_dim=1, end_dim=-1)");
  EXPECT_THROW(nn::Flatten(5)(x), Error);
}

// ---------------------------------------------------------------- Activations

TEST(NnLayers, ActivationsByHand) {
  const std::vector<double> xs = {-3.0, -1.0, -0.25, 0.0, 0.5, 2.0};
  Tensor x = from_vector<double>(xs);
  std::vector<double> relu_v, leaky_v, gelu_v, gelu_tanh_v, silu_v, tanh_v, sigmoid_v;
  for (double v : xs) {
    const double s = 1 / (1 + std::exp(-v));
    relu_v.push_back(std::max(v, 0.0));
    leaky_v.push_back(v > 0 ? v : 0.2 * v);
    gelu_v.push_back(0.5 * v * (1 + std::erf(v / std::sqrt(2.0))));
    gelu_tanh_v.push_back(
        0.5 * v * (1 + std::tanh(std::sqrt(2 / std::numbers::pi) * (v + 0.044715 * v * v * v))));
    silu_v.push_back(v * s);
    tanh_v.push_back(std::tanh(v));
    sigmoid_v.push_back(s);
  }
  EXPECT_TRUE(all_close(nn::ReLU()(x), relu_v, 1e-10));
  EXPECT_TRUE(all_close(nn::LeakyReLU(0.2)(x), leaky_v, 1e-15));
  EXPECT_TRUE(all_close(nn::GELU()(x), gelu_v, 1e-10));
  EXPECT_TRUE(all_close(nn::GELU({.approximate = "tanh"})(x), gelu_tanh_v, 1e-10));
  EXPECT_TRUE(all_close(nn::SiLU()(x), silu_v, 1e-10));
  EXPECT_TRUE(all_close(nn::Tanh()(x), tanh_v, 1e-10));
  EXPECT_TRUE(all_close(nn::Sigmoid()(x), sigmoid_v, 1e-10));

  EXPECT_EQ(nn::ReLU().repr(), "ReLU()");
  EXPECT_EQ(nn::LeakyReLU(0.2).repr(), "LeakyReLU(negative_slope=0.2)");
  EXPECT_EQ(nn::LeakyReLU().repr(), "LeakyReLU(negative_slope=0.01)");
  // PyTorch's gradient at 0 is the slope: (x > 0 ? g : g * slope).
  Tensor at = from_vector<double>({-1.0, 0.0, 1.0}).requires_grad_();
  nn::LeakyReLU(0.2)(at).sum().backward();
  EXPECT_EQ(at.grad().to_vector<double>(), (std::vector<double>{0.2, 0.2, 1.0}));
  EXPECT_THROW_MSG(nn::LeakyReLU(std::nan("")), "LeakyReLU", "negative_slope must be finite");
  EXPECT_EQ(nn::GELU().repr(), "GELU(approximate='none')");
  EXPECT_EQ(nn::GELU({.approximate = "tanh"}).repr(), "GELU(approximate='tanh')");
  EXPECT_EQ(nn::SiLU().repr(), "SiLU()");
  EXPECT_EQ(nn::Tanh().repr(), "Tanh()");
  EXPECT_EQ(nn::Sigmoid().repr(), "Sigmoid()");
  EXPECT_TRUE(nn::SiLU().state_dict().empty());
  EXPECT_THROW_MSG(nn::GELU({.approximate = "fast"}), "GELU", "'none' or 'tanh'", "'fast'");
}

TEST(NnLayers, SiLUGradcheck) {
  nn::SiLU silu;
  Generator gen(21);
  Tensor x = randn({3, 5}, {.dtype = DType::f64}, &gen).requires_grad_();
  Tensor w = randn({4, 5}, {.dtype = DType::f64}, &gen).requires_grad_();
  Tensor b = randn({4}, {.dtype = DType::f64}, &gen).requires_grad_();
  autograd::GradcheckResult r =
      autograd::gradcheck([&](const std::vector<Tensor>& v) { return silu(v[0]); }, {x});
  EXPECT_TRUE(r.ok) << r.message;
  // Composed: silu(linear(silu(x))) with respect to x, the weight and the bias.
  r = autograd::gradcheck(
      [&](const std::vector<Tensor>& v) { return silu(F::linear(silu(v[0]), v[1], v[2])); },
      {x, w, b});
  EXPECT_TRUE(r.ok) << r.message;
  // d/dx x s(x) = s + x s (1 - s), checked by hand at a few points.
  Tensor p = from_vector<double>({-2.0, 0.0, 1.5}).requires_grad_();
  silu(p).sum().backward();
  std::vector<double> want;
  for (double v : {-2.0, 0.0, 1.5}) {
    const double s = 1 / (1 + std::exp(-v));
    want.push_back(s + v * s * (1 - s));
  }
  EXPECT_TRUE(all_close(p.grad(), want, 1e-10));
}

// ---------------------------------------------------------------- Losses

TEST(NnLayers, LossModulesByHand) {
  Tensor logits = from_vector<double>({1, 2, 3, 0, 0, 0}, {2, 3});
  Tensor labels = from_vector<int64_t>({2, 0});
  const double lse0 = std::log(std::exp(1.0) + std::exp(2.0) + std::exp(3.0)), lse1 = std::log(3.0);
  nn::CrossEntropyLoss ce;
  EXPECT_NEAR(ce(logits, labels).item(), ((lse0 - 3) + lse1) / 2, 1e-12);
  nn::CrossEntropyLoss ce_sum({.reduction = "sum"});
  EXPECT_NEAR(ce_sum(logits, labels).item(), (lse0 - 3) + lse1, 1e-12);
  nn::CrossEntropyLoss ce_ignore({.ignore_index = 0});
  EXPECT_NEAR(ce_ignore(logits, labels).item(), lse0 - 3, 1e-12);
  // Label smoothing e: (1 - e) nll + e mean_c(-log p_c).
  nn::CrossEntropyLoss ce_smooth({.label_smoothing = 0.2});
  const double smooth0 = 0.8 * (lse0 - 3) + 0.2 * (3 * lse0 - 6) / 3;
  const double smooth1 = 0.8 * lse1 + 0.2 * lse1;
  EXPECT_NEAR(ce_smooth(logits, labels).item(), (smooth0 + smooth1) / 2, 1e-12);
  EXPECT_EQ(ce.repr(), "CrossEntropyLoss()");

  Tensor a = from_vector<double>({1, 2, 3, 4}), t = from_vector<double>({0, 2, 5, 3});
  EXPECT_NEAR(nn::MSELoss()(a, t).item(), (1 + 0 + 4 + 1) / 4.0, 1e-12);
  EXPECT_NEAR(nn::MSELoss({.reduction = "sum"})(a, t).item(), 6.0, 1e-12);
  EXPECT_TRUE(all_close(nn::MSELoss({.reduction = "none"})(a, t), {1, 0, 4, 1}, 0));
  EXPECT_EQ(nn::MSELoss().repr(), "MSELoss()");

  // BCE on logits: -[y log s(x) + (1 - y) log(1 - s(x))], pos_weight p scaling the first term.
  Tensor x = from_vector<double>({0.5, -1.0, 2.0, 0.0}, {2, 2});
  Tensor y = from_vector<double>({1, 0, 0, 1}, {2, 2});
  auto s = [](double v) { return 1 / (1 + std::exp(-v)); };
  const double pw[] = {2.0, 0.5};
  double plain = 0, weighted = 0;
  const double xv[] = {0.5, -1.0, 2.0, 0.0}, yv[] = {1, 0, 0, 1};
  for (int i = 0; i < 4; ++i) {
    plain += -(yv[i] * std::log(s(xv[i])) + (1 - yv[i]) * std::log(1 - s(xv[i])));
    weighted += -(pw[i % 2] * yv[i] * std::log(s(xv[i])) + (1 - yv[i]) * std::log(1 - s(xv[i])));
  }
  EXPECT_NEAR(nn::BCEWithLogitsLoss()(x, y).item(), plain / 4, 1e-12);
  nn::BCEWithLogitsLoss bce_pw({.pos_weight = from_vector<double>({2.0, 0.5})});
  EXPECT_NEAR(bce_pw(x, y).item(), weighted / 4, 1e-12);
  EXPECT_EQ(state_keys(bce_pw), std::set<std::string>({"pos_weight"}));
  EXPECT_TRUE(nn::BCEWithLogitsLoss().state_dict().empty());
  EXPECT_EQ(bce_pw.repr(), "BCEWithLogitsLoss()");

  // The gradient flows through the module into the logits.
  Tensor lg = logits.detach().requires_grad_();
  ce(lg, labels).backward();
  EXPECT_TRUE(lg.grad().defined());

  EXPECT_THROW_MSG(nn::MSELoss({.reduction = "avg"}), "MSELoss", "'mean', 'sum' or 'none'",
                   "'avg'");
  EXPECT_THROW_MSG(nn::CrossEntropyLoss({.reduction = "total"}), "CrossEntropyLoss", "'total'");
  EXPECT_THROW_MSG(nn::CrossEntropyLoss({.label_smoothing = 1.5}), "label_smoothing", "1.5");
  EXPECT_THROW_MSG(nn::BCEWithLogitsLoss({.reduction = ""}), "BCEWithLogitsLoss");
}

// ---------------------------------------------------------------- Sequential and Module

std::shared_ptr<Sequential> make_mlp() {
  return make_shared<Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
      make_shared<nn::Linear>(4, 8), make_shared<nn::BatchNorm1d>(8), make_shared<nn::ReLU>(),
      make_shared<nn::Dropout>(0.1), make_shared<nn::Linear>(8, 2)});
}

TEST(NnLayers, SequentialChainsAndIndexes) {
  manual_seed(30);
  Sequential seq{make_shared<nn::Linear>(3, 5), make_shared<nn::Tanh>(),
                 make_shared<nn::Linear>(5, 2)};
  Tensor x = randn({4, 3});
  auto& l0 = seq.at<nn::Linear>(0);
  auto& l2 = seq.at<nn::Linear>(-1);
  Tensor want = F::linear(lumen::tanh(F::linear(x, l0.weight, l0.bias)), l2.weight, l2.bias);
  EXPECT_TRUE(all_close(seq(x), want, 1e-6));
  EXPECT_EQ(seq.size(), 3u);
  EXPECT_EQ(seq[1].type_name(), "Tanh");
  EXPECT_EQ(&seq[-3], &l0);
  EXPECT_EQ(seq.ptr(2).get(), &l2);

  std::vector<std::string> names;
  for (auto& [name, m] : seq.named_children()) names.push_back(name);
  EXPECT_EQ(names, std::vector<std::string>({"0", "1", "2"}));
  EXPECT_EQ(state_keys(seq), std::set<std::string>({"0.weight", "0.bias", "2.weight", "2.bias"}));

  Sequential built;
  EXPECT_TRUE(built.empty());
  EXPECT_TRUE(all_close(built(x), x, 0));  // empty: the identity
  built.push_back(make_shared<nn::Linear>(3, 3)).add(make_shared<nn::ReLU>());
  built.add(make_shared<Sequential>(
      std::initializer_list<std::shared_ptr<nn::UnaryModule>>{make_shared<nn::Linear>(3, 1)}));
  EXPECT_EQ(state_keys(built),
            std::set<std::string>({"0.weight", "0.bias", "2.0.weight", "2.0.bias"}));
  EXPECT_EQ(built(x).shape(), Shape({4, 1}));

  EXPECT_THROW_MSG(seq[3], "index 3 is out of range for 3 modules");
  EXPECT_THROW_MSG(seq[-4], "index -4", "3 modules");
  EXPECT_THROW_MSG(seq.at<nn::Conv2d>(1), "module 1 is a Tanh");
  EXPECT_THROW_MSG(seq.push_back(nullptr), "module 3 is a null pointer");
}

TEST(NnLayers, StateDictKeysMatchPyTorch) {
  auto model = make_mlp();
  EXPECT_EQ(
      state_keys(*model),
      std::set<std::string>({"0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean",
                             "1.running_var", "1.num_batches_tracked", "4.weight", "4.bias"}));
  nn::StateDict sd = model->state_dict();
  EXPECT_EQ(sd.at("0.weight").shape(), Shape({8, 4}));
  EXPECT_EQ(sd.at("1.num_batches_tracked").shape(), Shape({}));
  EXPECT_EQ(sd.at("4.bias").shape(), Shape({2}));
  EXPECT_EQ(model->num_parameters(), 4 * 8 + 8 + 8 + 8 + 8 * 2 + 2);
}

TEST(NnLayers, StateDictRoundTripIntoAFreshSequential) {
  manual_seed(31);
  auto trained = make_mlp();
  Tensor x = randn({6, 4});
  trained->forward(x);  // moves the batch-norm running stats and its counter
  trained->forward(x * 2.0);
  manual_seed(32);
  auto fresh = make_mlp();
  EXPECT_NE(fresh->at<nn::Linear>(0).weight.to_vector<double>(),
            trained->at<nn::Linear>(0).weight.to_vector<double>());
  fresh->load_state_dict(trained->state_dict());
  nn::StateDict a = trained->state_dict(), b = fresh->state_dict();
  for (const auto& [name, t] : a) {
    EXPECT_EQ(b.at(name).dtype(), t.dtype()) << name;
    EXPECT_EQ(b.at(name).to_vector<double>(), t.to_vector<double>()) << name;
  }
  EXPECT_EQ(fresh->at<nn::BatchNorm1d>(1).num_batches_tracked.item(), 2.0);
  // The copy is by value: the fresh model's tensors are its own, still trainable leaves.
  EXPECT_FALSE(fresh->at<nn::Linear>(0).weight.same(trained->at<nn::Linear>(0).weight));
  EXPECT_TRUE(fresh->at<nn::Linear>(0).weight.requires_grad());
  trained->eval();
  fresh->eval();
  EXPECT_TRUE(all_close((*fresh)(x), (*trained)(x), 0));
}

TEST(NnLayers, LoadStateDictMismatchErrors) {
  auto model = make_mlp();
  // Another architecture: no bias on the first layer, a LayerNorm where the BatchNorm was.
  Sequential other{make_shared<nn::Linear>(4, 8, nn::LinearOptions{.bias = false}),
                   make_shared<nn::LayerNorm>(8)};
  EXPECT_THROW_MSG(model->load_state_dict(other.state_dict()), "strict",
                   "missing keys [0.bias, 4.weight, 4.bias, 1.running_mean, 1.running_var, "
                   "1.num_batches_tracked]",
                   "unexpected keys []");
  EXPECT_THROW_MSG(other.load_state_dict(model->state_dict()), "missing keys []",
                   "unexpected keys [0.bias, 1.num_batches_tracked, 1.running_mean, "
                   "1.running_var, 4.bias, 4.weight]");
  // Non-strict loads what matches: 0.weight, 1.weight, 1.bias.
  other.load_state_dict(model->state_dict(), /*strict=*/false);
  EXPECT_EQ(other.at<nn::Linear>(0).weight.to_vector<double>(),
            model->at<nn::Linear>(0).weight.to_vector<double>());

  // A shape mismatch names the key and both shapes, strict or not.
  Sequential wider{make_shared<nn::Linear>(4, 9)};
  Sequential narrow{make_shared<nn::Linear>(4, 8)};
  EXPECT_THROW_MSG(narrow.load_state_dict(wider.state_dict()), "shape mismatch", "0.weight",
                   "checkpoint [9, 4], module [8, 4]", "0.bias", "checkpoint [9], module [8]");
  EXPECT_THROW_MSG(narrow.load_state_dict(wider.state_dict(), false), "0.weight", "[9, 4]");
}

TEST(NnLayers, TrainEvalRecurseThroughNestedSequentials) {
  manual_seed(33);
  auto inner = make_shared<Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
      make_shared<nn::Dropout>(0.5), make_shared<nn::BatchNorm1d>(5)});
  Sequential outer{make_shared<nn::Linear>(5, 5), inner};
  Tensor x = randn({8, 5});
  outer.eval();
  for (auto& [name, m] : outer.named_modules()) EXPECT_FALSE(m->is_training()) << name;
  // In eval the dropout is the identity and the batch norm uses its (initial) running stats,
  // so the output is linear(x) / sqrt(1 + eps).
  Tensor lin = outer[0](x);
  EXPECT_TRUE(all_close(outer(x), (lin / std::sqrt(1 + 1e-5)).to_vector<double>(), 1e-6));
  EXPECT_EQ(inner->at<nn::BatchNorm1d>(1).num_batches_tracked.item(), 0.0);
  outer.train();
  for (auto& [name, m] : outer.named_modules()) EXPECT_TRUE(m->is_training()) << name;
  outer(x);
  EXPECT_EQ(inner->at<nn::BatchNorm1d>(1).num_batches_tracked.item(), 1.0);
}

TEST(NnLayers, ZeroGradAndDtypeCastKeepParametersTrainable) {
  manual_seed(34);
  auto model = make_mlp();
  (*model)(randn({6, 4})).sum().backward();
  for (auto& [name, t] : model->named_parameters()) EXPECT_TRUE(t.grad().defined()) << name;
  model->zero_grad();
  for (auto& [name, t] : model->named_parameters()) EXPECT_FALSE(t.grad().defined()) << name;

  model->to(DType::f64);
  for (auto& [name, t] : model->named_parameters()) {
    EXPECT_EQ(t.dtype(), DType::f64) << name;
    EXPECT_TRUE(t.requires_grad() && t.is_leaf()) << name;
  }
  auto& bn = model->at<nn::BatchNorm1d>(1);
  EXPECT_EQ(bn.running_var.dtype(), DType::f64);
  EXPECT_EQ(bn.num_batches_tracked.dtype(), DType::i64);
  Tensor y = (*model)(randn({6, 4}, {.dtype = DType::f64}));
  EXPECT_EQ(y.dtype(), DType::f64);
  y.sum().backward();
  EXPECT_EQ(model->at<nn::Linear>(0).weight.grad().dtype(), DType::f64);
  EXPECT_EQ(bn.num_batches_tracked.item(), 2.0);
}

TEST(NnLayers, ReprOfAModelReadsAsPyTorch) {
  Sequential model{make_shared<nn::Conv2d>(1, 8, 3, nn::Conv2dOptions{.padding = 1}),
                   make_shared<nn::BatchNorm2d>(8),
                   make_shared<nn::ReLU>(),
                   make_shared<nn::MaxPool2d>(2),
                   make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair{2, 2}),
                   make_shared<nn::Flatten>(),
                   make_shared<Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
                       make_shared<nn::Dropout>(0.2), make_shared<nn::Linear>(32, 10)})};
  EXPECT_EQ(model.repr(),
            "Sequential(\n"
            "  (0): Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))\n"
            "  (1): BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, "
            "track_running_stats=True)\n"
            "  (2): ReLU()\n"
            "  (3): MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)\n"
            "  (4): AdaptiveAvgPool2d(output_size=(2, 2))\n"
            "  (5): Flatten(start_dim=1, end_dim=-1)\n"
            "  (6): Sequential(\n"
            "    (0): Dropout(p=0.2, inplace=False)\n"
            "    (1): Linear(in_features=32, out_features=10, bias=True)\n"
            "  )\n"
            ")");
  // And it runs: [N, 1, 12, 12] -> conv [N, 8, 12, 12] -> pool [N, 8, 6, 6] -> [N, 8, 2, 2].
  manual_seed(35);
  EXPECT_EQ(model(randn({3, 1, 12, 12})).shape(), Shape({3, 10}));
}

// The gradient of a small CNN with respect to its input and every parameter, against central
// differences: each layer's backward and the parameter registration wired through Module.
TEST(NnLayers, SmallCnnGradcheckThroughModules) {
  manual_seed(36);
  Sequential model{make_shared<nn::Conv2d>(2, 3, 3, nn::Conv2dOptions{.padding = 1}),
                   make_shared<nn::BatchNorm2d>(3),
                   make_shared<nn::SiLU>(),
                   make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair{2, 3}),
                   make_shared<nn::Flatten>(),
                   make_shared<nn::LayerNorm>(18),
                   make_shared<nn::Linear>(18, 2)};
  model.to(DType::f64);
  {
    // Non-trivial affine parameters, so their gradients are not a special case.
    NoGradGuard no_grad;
    auto& ln = model.at<nn::LayerNorm>(5);
    ln.weight.copy_(randn({18}, {.dtype = DType::f64}));
    ln.bias.copy_(randn({18}, {.dtype = DType::f64}));
    auto& bn = model.at<nn::BatchNorm2d>(1);
    bn.weight.copy_(randn({3}, {.dtype = DType::f64}));
  }
  Tensor x = randn({2, 2, 5, 5}, {.dtype = DType::f64}).requires_grad_();
  std::vector<Tensor> inputs{x};
  for (const Tensor& p : model.parameters()) inputs.push_back(p);
  // gradcheck perturbs each input in place, and the parameters are the model's own tensors.
  autograd::GradcheckResult r =
      autograd::gradcheck([&](const std::vector<Tensor>& v) { return model(v[0]); }, inputs);
  EXPECT_TRUE(r.ok) << r.message;
}

// Layers moved to a GPU compute what they compute on the CPU.
TEST(NnLayers, CudaModelMatchesCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  manual_seed(37);
  auto build = [] {
    return make_shared<Sequential>(std::initializer_list<std::shared_ptr<nn::UnaryModule>>{
        make_shared<nn::Conv2d>(3, 4, 3, nn::Conv2dOptions{.padding = 1}),
        make_shared<nn::BatchNorm2d>(4), make_shared<nn::GELU>(), make_shared<nn::MaxPool2d>(2),
        make_shared<nn::AdaptiveAvgPool2d>(nn::IntPair{3, 3}), make_shared<nn::Flatten>(),
        make_shared<nn::Linear>(36, 5)});
  };
  auto cpu = build();
  auto gpu = build();
  gpu->load_state_dict(cpu->state_dict());
  try {
    gpu->to(Device::cuda());
    Tensor x = randn({2, 3, 10, 10});
    Tensor want = (*cpu)(x), got = (*gpu)(x.to(Device::cuda()));
    EXPECT_EQ(got.device(), Device::cuda());
    EXPECT_TRUE(all_close(got, want, 1e-4));
    want.sum().backward();
    got.sum().backward();
    EXPECT_TRUE(all_close(gpu->at<nn::Conv2d>(0).weight.grad(),
                          cpu->at<nn::Conv2d>(0).weight.grad(), 1e-4));
    EXPECT_TRUE(all_close(gpu->at<nn::BatchNorm2d>(1).running_var,
                          cpu->at<nn::BatchNorm2d>(1).running_var, 1e-5));
  } catch (const Error& e) {
    if (std::string(e.what()).find("no kernel for device cuda") == std::string::npos) throw;
    GTEST_SKIP() << "a layer's op has no CUDA kernel yet: " << e.what();
  }
}

}  // namespace
}  // namespace lumen::testing
