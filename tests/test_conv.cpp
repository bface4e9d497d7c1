#include <cmath>

#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;
using F::Size2;

struct ConvConfig {
  int64_t N, C, H, W, O, KH, KW;
  Size2 stride, padding, dilation;
  int64_t groups;
  bool bias;
};

Tensor run_conv(const std::vector<Tensor>& v, const ConvConfig& c) {
  return F::conv2d(v[0], v[1], c.bias ? v[2] : Tensor(), c.stride, c.padding, c.dilation, c.groups);
}

// CPU vs CUDA: each output or gradient element is a sum of K = (C / groups) KH KW or
// O KH KW products, rounded in different orders (Winograd on the CPU, cuDNN's own algorithm on
// the GPU). With terms near 1 the partial sums grow to about sqrt(K), each of the K adds errs
// by up to eps sqrt(K), and together they err by up to K eps (eps = 6e-8); Winograd's
// transforms add a few times that: an absolute floor of 1e-6 K (1.4e-4 for K = 144).
OpCase conv_case(std::string name, ConvConfig c) {
  std::vector<Input> in = {Input::real({c.N, c.C, c.H, c.W}),
                           Input::real({c.O, c.C / c.groups, c.KH, c.KW})};
  if (c.bias) in.push_back(Input::real({c.O}));
  OpCase op{std::move(name), in, [c](const std::vector<Tensor>& v) { return run_conv(v, c); }};
  const double K = double(std::max(c.C / c.groups, c.O) * c.KH * c.KW);
  op.cuda_atol = std::max(op.cuda_atol, 1e-6 * K);
  return op;
}

LUMEN_OP_CASES(conv){{
    conv_case("conv2d_basic", {2, 3, 5, 6, 4, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1, true}),
    conv_case("conv2d_padded_stride", {1, 2, 7, 6, 3, 3, 2, {2, 1}, {1, 2}, {1, 1}, 1, true}),
    conv_case("conv2d_dilated", {3, 2, 7, 7, 2, 2, 3, {1, 2}, {2, 1}, {2, 2}, 1, false}),
    conv_case("conv2d_groups", {3, 4, 5, 5, 6, 3, 3, {2, 2}, {1, 1}, {1, 1}, 2, true}),
    conv_case("conv2d_depthwise", {2, 3, 6, 5, 3, 3, 3, {1, 1}, {1, 1}, {1, 1}, 3, false}),
    conv_case("conv2d_pointwise", {2, 4, 3, 5, 3, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, true}),
    conv_case("conv2d_pointwise_groups", {1, 4, 3, 3, 6, 1, 1, {1, 1}, {0, 0}, {1, 1}, 2, true}),
    conv_case("conv2d_1x1_strided", {2, 3, 5, 5, 2, 1, 1, {2, 2}, {1, 0}, {1, 1}, 1, false}),
    // Enough channels for Winograd (kernels/cpu/conv_winograd.h): in the forward pass (16 in,
    // 8 out; odd output sizes leave half tiles), in the input's gradient (16 out, padding 0 and
    // 2 there), in both.
    conv_case("conv2d_winograd", {2, 16, 5, 7, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true}),
    conv_case("conv2d_winograd_input_grad",
              {2, 8, 6, 5, 16, 3, 3, {1, 1}, {0, 2}, {1, 1}, 1, false}),
    conv_case("conv2d_winograd_both", {1, 16, 4, 3, 16, 3, 3, {1, 1}, {2, 1}, {1, 1}, 1, true}),
    {"conv2d_unbatched",
     {Input::real({2, 5, 4}), Input::real({3, 2, 2, 2}), Input::real({3})},
     [](const auto& v) {
       return F::conv2d(v[0], v[1], v[2], {1, 1}, {1, 1});
     }},
    {"conv1d_basic",
     {Input::real({2, 3, 9}), Input::real({4, 3, 3}), Input::real({4})},
     [](const auto& v) { return F::conv1d(v[0], v[1], v[2]); }},
    {"conv1d_strided_padded_dilated_groups",
     {Input::real({2, 4, 11}), Input::real({6, 2, 3})},
     [](const auto& v) { return F::conv1d(v[0], v[1], {}, 2, 2, 2, 2); }},
    {"conv1d_unbatched",
     {Input::real({3, 7}), Input::real({2, 3, 2}), Input::real({2})},
     [](const auto& v) { return F::conv1d(v[0], v[1], v[2], 1, 1); }},
}};

// conv1d against its definition in f64:
//   y[n, o, l] = b[o] + sum over c in o's group, k of x[n, c, l s - p + k d] w[o, c', k].
TEST(Conv, Conv1dMatchesTheDefinition) {
  const int64_t n = 2, cin = 4, len = 10, cout = 6, kk = 3, s = 2, p = 1, d = 2, g = 2;
  Generator gen(31);
  Tensor x = randn({n, cin, len}, {.dtype = DType::f64}, &gen);
  Tensor w = randn({cout, cin / g, kk}, {.dtype = DType::f64}, &gen);
  Tensor b = randn({cout}, {.dtype = DType::f64}, &gen);
  Tensor y = F::conv1d(x, w, b, s, p, d, g);
  const int64_t ol = (len + 2 * p - d * (kk - 1) - 1) / s + 1;
  ASSERT_EQ(y.shape(), (Shape{n, cout, ol}));
  std::vector<double> xv = x.to_vector<double>(), wv = w.to_vector<double>(),
                      bv = b.to_vector<double>(), yv = y.to_vector<double>();
  const int64_t cg = cin / g, og = cout / g;
  for (int64_t i = 0; i < n; ++i)
    for (int64_t o = 0; o < cout; ++o)
      for (int64_t l = 0; l < ol; ++l) {
        double want = bv[o];
        for (int64_t c = 0; c < cg; ++c)
          for (int64_t k = 0; k < kk; ++k) {
            const int64_t at = l * s - p + k * d;
            if (at < 0 || at >= len) continue;
            want += xv[(i * cin + (o / og) * cg + c) * len + at] * wv[(o * cg + c) * kk + k];
          }
        EXPECT_NEAR(yv[(i * cout + o) * ol + l], want, 1e-12) << i << "," << o << "," << l;
      }
}

TEST(Conv, Conv1dModule) {
  nn::Conv1d conv(3, 16, 5, {.padding = 2});
  EXPECT_EQ(conv.repr(), "Conv1d(3, 16, kernel_size=(5,), stride=(1,), padding=(2,))");
  EXPECT_EQ(nn::Conv1d(4, 8, 3, {.stride = 2, .dilation = 2, .groups = 4, .bias = false}).repr(),
            "Conv1d(4, 8, kernel_size=(3,), stride=(2,), dilation=(2,), groups=4, bias=False)");
  EXPECT_EQ(conv.weight.shape(), (Shape{16, 3, 5}));
  Tensor x = randn({2, 3, 20});
  EXPECT_EQ(conv(x).shape(), (Shape{2, 16, 20}));
  EXPECT_EQ(conv(x).to_vector<float>(),
            F::conv1d(x, conv.weight, conv.bias, 1, 2).to_vector<float>());
  // PyTorch's initialisation bound: |w| <= 1 / sqrt(fan_in) for kaiming_uniform(a = sqrt(5)).
  const double bound = 1.0 / std::sqrt(15.0);
  for (float v : conv.weight.to_vector<float>()) EXPECT_LE(std::abs(v), bound);
  EXPECT_THROW_MSG(conv(randn({2, 4, 20})), "Conv1d: expected an input [N, 3, L]", "[2, 4, 20]");
  EXPECT_THROW_MSG(nn::Conv1d(3, 4, 3, {.groups = 2}), "must be divisible by groups (2)");
  EXPECT_THROW_MSG(F::conv1d(randn({2, 3, 9}), randn({4, 3, 3, 1})), "conv1d: expected a weight",
                   "[4, 3, 3, 1]");
  EXPECT_THROW_MSG(F::conv1d(randn({9}), randn({4, 3, 3})), "conv1d: expected an input", "[9]");
}

// The definition, seven nested loops in double (N, O, OH, OW, C/groups, kH, kW).
std::vector<double> naive_conv(const ConvConfig& c, const std::vector<double>& x,
                               const std::vector<double>& w, const std::vector<double>& b,
                               int64_t OH, int64_t OW) {
  const int64_t cg = c.C / c.groups, og = c.O / c.groups;
  std::vector<double> y(c.N * c.O * OH * OW);
  for (int64_t n = 0; n < c.N; ++n)
    for (int64_t o = 0; o < c.O; ++o)
      for (int64_t i = 0; i < OH; ++i)
        for (int64_t j = 0; j < OW; ++j) {
          double s = c.bias ? b[o] : 0.0;
          for (int64_t ci = 0; ci < cg; ++ci)
            for (int64_t p = 0; p < c.KH; ++p)
              for (int64_t q = 0; q < c.KW; ++q) {
                int64_t ih = i * c.stride[0] - c.padding[0] + p * c.dilation[0];
                int64_t iw = j * c.stride[1] - c.padding[1] + q * c.dilation[1];
                if (ih < 0 || ih >= c.H || iw < 0 || iw >= c.W) continue;
                int64_t ch = (o / og) * cg + ci;
                s += w[((o * cg + ci) * c.KH + p) * c.KW + q] *
                     x[((n * c.C + ch) * c.H + ih) * c.W + iw];
              }
          y[((n * c.O + o) * OH + i) * OW + j] = s;
        }
  return y;
}

TEST(Conv2d, MatchesNaiveDirectConvolution) {
  const std::vector<ConvConfig> configs = {
      {2, 3, 7, 6, 4, 3, 3, {1, 1}, {0, 0}, {1, 1}, 1, true},
      {1, 4, 9, 8, 6, 3, 2, {2, 1}, {1, 2}, {1, 1}, 2, true},
      {5, 6, 10, 11, 6, 3, 3, {2, 2}, {2, 2}, {2, 2}, 3, false},
      {3, 4, 6, 7, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 4, true},   // depthwise, 2 per group
      {2, 5, 4, 6, 3, 1, 1, {1, 1}, {0, 0}, {1, 1}, 1, true},   // pointwise: no im2col
      {4, 3, 9, 7, 2, 1, 1, {2, 3}, {0, 1}, {1, 1}, 1, false},  // 1x1 but strided and padded
      {1, 2, 3, 3, 3, 5, 4, {1, 1}, {2, 2}, {1, 1}, 1, true},   // kernel larger than the image
      {2, 3, 13, 12, 5, 4, 3, {3, 2}, {0, 1}, {3, 1}, 1, true},
      {3, 16, 9, 11, 8, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true},    // Winograd, half tiles
      {2, 20, 6, 5, 9, 3, 3, {1, 1}, {0, 2}, {1, 1}, 1, false},    // Winograd, uneven padding
      {5, 32, 14, 14, 64, 3, 3, {1, 1}, {1, 1}, {1, 1}, 1, true},  // the Fashion CNN's second
  };
  for (size_t k = 0; k < configs.size(); ++k) {
    const ConvConfig& c = configs[k];
    for (DType dt : {DType::f64, DType::f32}) {
      Generator gen(k + 11);
      Tensor x = randn({c.N, c.C, c.H, c.W}, {.dtype = dt}, &gen);
      Tensor w = randn({c.O, c.C / c.groups, c.KH, c.KW}, {.dtype = dt}, &gen);
      Tensor b = randn({c.O}, {.dtype = dt}, &gen);
      Tensor y = F::conv2d(x, w, c.bias ? b : Tensor(), c.stride, c.padding, c.dilation, c.groups);
      int64_t OH = (c.H + 2 * c.padding[0] - c.dilation[0] * (c.KH - 1) - 1) / c.stride[0] + 1;
      int64_t OW = (c.W + 2 * c.padding[1] - c.dilation[1] * (c.KW - 1) - 1) / c.stride[1] + 1;
      ASSERT_EQ(y.shape(), (Shape{c.N, c.O, OH, OW})) << "config " << k;
      EXPECT_EQ(y.dtype(), dt);
      std::vector<double> want = naive_conv(c, x.to_vector<double>(), w.to_vector<double>(),
                                            b.to_vector<double>(), OH, OW);
      std::vector<double> got = y.to_vector<double>();
      // Relative to the size of a typical output, sqrt(C/groups kH kW) for unit normal inputs: an
      // output near 0 is a sum that cancelled, with the rounding of its terms (Winograd's
      // transformed terms are larger than im2col's: up to 1.2e-5 at 288 terms in f32).
      const double scale = std::sqrt(static_cast<double>(c.C / c.groups * c.KH * c.KW));
      double tol = dt == DType::f64 ? 1e-12 : 1e-5;
      for (size_t i = 0; i < want.size(); ++i)
        ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]) + scale))
            << "config " << k << " dtype " << dt << " element " << i;
    }
  }
}

// The Fashion CNN's second convolution (Winograd on the CPU for all three passes): its f32
// gradients against f64 ones, within 1e-5 of each gradient's largest entry. The gradient
// check covers the math on small cases; this covers the rounding of long sums.
TEST(Conv2d, F32GradientsMatchF64AtTheCnnShape) {
  Generator gen(3);
  Tensor x = randn({6, 32, 14, 14}, {.dtype = DType::f64}, &gen);
  Tensor w = randn({64, 32, 3, 3}, {.dtype = DType::f64}, &gen);
  Tensor gy = randn({6, 64, 14, 14}, {.dtype = DType::f64}, &gen);
  std::vector<std::vector<double>> grads[2];
  for (int k = 0; k < 2; ++k) {
    const DType dt = k == 0 ? DType::f64 : DType::f32;
    Tensor xd = x.to(dt).detach().requires_grad_(), wd = w.to(dt).detach().requires_grad_();
    F::conv2d(xd, wd, {}, {1, 1}, {1, 1}).backward(gy.to(dt));
    grads[k] = {xd.grad().to_vector<double>(), wd.grad().to_vector<double>()};
  }
  for (int g = 0; g < 2; ++g) {
    double scale = 0;
    for (double v : grads[0][g]) scale = std::max(scale, std::abs(v));
    for (size_t i = 0; i < grads[0][g].size(); ++i)
      ASSERT_NEAR(grads[1][g][i], grads[0][g][i], 1e-5 * scale)
          << (g == 0 ? "input" : "weight") << " gradient, element " << i;
  }
}

TEST(Conv2d, HandComputedValues) {
  // x = 1..9 in a 3x3 image, w = [[1, 0], [0, -1]]: y[i, j] = x[i, j] - x[i+1, j+1] = -4.
  Tensor x = arange(1, 10, 1, {.dtype = DType::f64}).reshape({1, 1, 3, 3});
  Tensor w = from_vector<double>({1, 0, 0, -1}, {1, 1, 2, 2});
  EXPECT_EQ(F::conv2d(x, w).to_vector<double>(), (std::vector<double>{-4, -4, -4, -4}));
  // With padding 1 and stride 2 the corners see one tap each: y[0,0] = -x[0,0] = -1,
  // y[0,1] = -x[0,2] = -3, y[1,0] = -x[2,0] = -7, y[1,1] = x[1,1] - x[2,2] = 5 - 9 = -4;
  // plus bias 10.
  Tensor y = F::conv2d(x, w, from_vector<double>({10}, {1}), {2, 2}, {1, 1});
  EXPECT_EQ(y.to_vector<double>(), (std::vector<double>{9, 7, 3, 6}));
}

TEST(Conv2d, UnbatchedInputMatchesBatchOfOne) {
  Tensor x = randn({3, 6, 5}, {.dtype = DType::f64}),
         w = randn({4, 3, 3, 3}, {.dtype = DType::f64});
  Tensor y = F::conv2d(x, w, {}, {1, 1}, {1, 1});
  EXPECT_EQ(y.shape(), (Shape{4, 6, 5}));
  EXPECT_EQ(y.to_vector<double>(),
            F::conv2d(x.unsqueeze(0), w, {}, {1, 1}, {1, 1}).to_vector<double>());
}

// The weight gradient sums over images in per-thread chunks; it must equal the sum of the
// single-image gradients.
TEST(Conv2d, WeightGradientSumsOverImages) {
  Tensor x = randn({6, 3, 7, 7}, {.dtype = DType::f64});
  Tensor w = randn({4, 3, 3, 3}, {.dtype = DType::f64}).requires_grad_();
  F::conv2d(x, w, {}, {1, 1}, {1, 1}).sum().backward();
  Tensor total = w.grad().clone();
  Tensor acc = zeros({4, 3, 3, 3}, {.dtype = DType::f64});
  for (int64_t n = 0; n < 6; ++n) {
    Tensor wn = w.detach().clone().requires_grad_();
    F::conv2d(x.narrow(0, n, 1), wn, {}, {1, 1}, {1, 1}).sum().backward();
    acc = acc + wn.grad();
  }
  std::vector<double> a = total.to_vector<double>(), b = acc.to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-10);
}

TEST(Conv2d, ErrorsNameShapes) {
  Tensor x = zeros({1, 3, 5, 5});
  EXPECT_THROW_MSG(F::conv2d(x, zeros({4, 2, 3, 3})), "conv2d", "[1, 3, 5, 5]", "[4, 2, 3, 3]",
                   "input channels");
  EXPECT_THROW_MSG(F::conv2d(x, zeros({4, 1, 3, 3}), {}, {1, 1}, {0, 0}, {1, 1}, 2), "conv2d",
                   "[1, 3, 5, 5]", "[4, 1, 3, 3]", "groups = 2");
  EXPECT_THROW_MSG(
      F::conv2d(zeros({1, 4, 5, 5}), zeros({3, 2, 3, 3}), {}, {1, 1}, {0, 0}, {1, 1}, 2), "conv2d",
      "[3, 2, 3, 3]", "groups = 2");
  EXPECT_THROW_MSG(F::conv2d(zeros({1, 1, 2, 2}), zeros({1, 1, 3, 3})), "conv2d",
                   "larger than the padded input", "[2, 2]", "[1, 1, 2, 2]");
  EXPECT_THROW_MSG(F::conv2d(zeros({1, 1, 4, 4}), zeros({1, 1, 2, 2}), {}, {1, 1}, {0, 0}, {4, 4}),
                   "conv2d", "larger than the padded input", "5x5");
  EXPECT_THROW_MSG(F::conv2d(x, zeros({4, 3, 3, 3}), zeros({3})), "conv2d", "bias", "[3]",
                   "[4, 3, 3, 3]");
  EXPECT_THROW_MSG(F::conv2d(zeros({5, 5}), zeros({1, 1, 3, 3})), "conv2d", "[5, 5]", "4-D");
  EXPECT_THROW_MSG(F::conv2d(x, zeros({4, 3, 3})), "conv2d", "[4, 3, 3]", "weight");
  EXPECT_THROW_MSG(F::conv2d(x, zeros({4, 3, 3, 3}, {.dtype = DType::f64})), "conv2d", "f64",
                   "f32");
  EXPECT_THROW_MSG(F::conv2d(x, zeros({4, 3, 3, 3}), {}, {0, 1}), "conv2d", "stride [0, 1]");
}

}  // namespace
}  // namespace lumen::testing
