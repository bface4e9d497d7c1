#include "autograd/anomaly_mode.h"
#include "autograd/node.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

TEST(Autograd, ChainRuleAndAccumulation) {
  Tensor x =
      from_vector<double>({1, 2, 3}, {}, TensorOptions{.dtype = DType::f64, .requires_grad = true});
  // y = sum(x^2 * x) = sum(x^3): dy/dx = 3 x^2. x is used twice: both paths add.
  Tensor y = (x * x * x).sum();
  y.backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{3, 12, 27}));
  // A second backward on a fresh graph accumulates into grad().
  (x * 2.0).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{5, 14, 29}));
  EXPECT_TRUE(x.is_leaf());
  EXPECT_FALSE(y.is_leaf());
  EXPECT_EQ(y.grad_fn()->name, "sum");
}

TEST(Autograd, GraphIsFreedUnlessRetained) {
  Tensor x = ones({2}, {.requires_grad = true});
  Tensor y = (x.exp() * 3.0).sum();
  y.backward({}, /*retain_graph=*/true);
  y.backward();
  EXPECT_NEAR(x.grad().to_vector<float>()[0], 6 * std::exp(1.0), 1e-5);
  EXPECT_THROW_MSG(y.backward(), "second time", "retain_graph");
}

TEST(Autograd, NoGradDetachAndErrors) {
  Tensor w = ones({3}, {.requires_grad = true});
  {
    NoGradGuard ng;
    Tensor y = w * 2.0;
    EXPECT_FALSE(y.requires_grad());
  }
  EXPECT_TRUE((w * 2.0).requires_grad());
  Tensor d = (w * 2.0).detach();
  EXPECT_FALSE(d.requires_grad());
  EXPECT_TRUE(d.is_leaf());
  EXPECT_THROW_MSG(d.sum().backward(), "backward", "does not require grad");
  EXPECT_THROW_MSG((w * 2.0).backward(), "backward", "[3]");
  EXPECT_THROW_MSG((w * 2.0).backward(ones({4})), "backward", "[4]", "[3]");
  // Integer results carry no graph.
  EXPECT_FALSE(argmax(w * 2.0, 0).requires_grad());
}

TEST(Autograd, BackwardWithGivenGradient) {
  Tensor x =
      from_vector<double>({1, 2}, {}, TensorOptions{.dtype = DType::f64, .requires_grad = true});
  Tensor y = x * x;  // dy_i/dx_i = 2 x_i
  y.backward(from_vector<double>({10, 100}));
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{20, 400}));
}

TEST(Autograd, LeafHooks) {
  Tensor x = ones({2}, {.dtype = DType::f64, .requires_grad = true});
  int calls = 0;
  x.register_hook([&](const Tensor& g) {
    ++calls;
    return g * 10.0;  // replaces the gradient
  });
  // x feeds two ops; the hook sees the summed gradient once.
  (x * 2.0 + x * 3.0).sum().backward();
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{50, 50}));
  x.register_hook([](const Tensor&) { return Tensor(); });  // observer: keeps the gradient
  x.set_grad({});
  (x * 1.0).sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), (std::vector<double>{10, 10}));
  Tensor y = x * 2.0;
  EXPECT_THROW_MSG(y.register_hook([](const Tensor& g) { return g; }), "register_hook", "leaf");
}

// A leaf's gradient is its own memory: AccumulateGrad takes a gradient over only when nothing
// else holds it, so updating one grad() in place never changes another tensor.
TEST(Autograd, GradientsNeverAliasAnotherTensor) {
  // Add's backward hands one gradient tensor to both inputs.
  Tensor a = zeros({3}, {.requires_grad = true}), b = zeros({3}, {.requires_grad = true});
  (a + b).backward(ones({3}));
  EXPECT_NE(a.grad().data_ptr(), b.grad().data_ptr());
  a.grad().mul_(scalar_tensor(5.0f));
  EXPECT_EQ(b.grad().to_vector<float>(), (std::vector<float>{1, 1, 1}));

  // A hook that keeps the gradient it was given.
  Tensor x = zeros({4}, {.requires_grad = true}), kept;
  x.register_hook([&](const Tensor& g) {
    kept = g;
    return Tensor();
  });
  (x * 2.0).sum().backward();
  EXPECT_NE(x.grad().data_ptr(), kept.data_ptr());
  x.grad().mul_(scalar_tensor(3.0f));
  EXPECT_EQ(kept.to_vector<float>(), (std::vector<float>{2, 2, 2, 2}));

  // The gradient given to backward, reaching a leaf unchanged (as x itself), and a view.
  Tensor y = zeros({2, 3}, {.requires_grad = true}), given = ones({2, 3});
  y.backward(given);
  EXPECT_NE(y.grad().data_ptr(), given.data_ptr());
  Tensor z = zeros({2, 3}, {.requires_grad = true});
  z.t().sum().backward();  // the transpose's backward hands back a view
  z.grad().mul_(scalar_tensor(2.0f));
  EXPECT_EQ(z.grad().to_vector<float>(), (std::vector<float>(6, 2.0f)));
}

TEST(Autograd, BranchWithoutGradientStillReleases) {
  // b only reaches the loss through an integer path: no gradient, and no hang.
  Tensor a = ones({3}, {.dtype = DType::f64, .requires_grad = true});
  Tensor b = ones({3}, {.dtype = DType::f64, .requires_grad = true});
  Tensor loss = (a * 2.0).sum() + (b.to(DType::i64).to(DType::f64)).sum();
  loss.backward();
  EXPECT_EQ(a.grad().to_vector<double>(), (std::vector<double>{2, 2, 2}));
  EXPECT_FALSE(b.grad().defined());
}

TEST(Autograd, DeepChainRunsInTopologicalOrder) {
  Tensor x = full({1}, 0.5, {.dtype = DType::f64, .requires_grad = true});
  Tensor y = x;
  for (int i = 0; i < 200; ++i) y = y * 1.01 + x * 0.001;
  y.sum().backward();
  // dy/dx by the recurrence d_{i+1} = 1.01 d_i + 0.001, d_0 = 1.
  double d = 1;
  for (int i = 0; i < 200; ++i) d = 1.01 * d + 0.001;
  EXPECT_NEAR(x.grad().item(), d, 1e-12 * d);
}

// The gradient checker must catch a wrong backward, or every other test proves nothing.
TEST(Autograd, GradcheckCatchesAWrongGradient) {
  auto wrong_square = [](const std::vector<Tensor>& v) {
    Tensor x = v[0];
    Tensor out = empty_like(x);
    {
      NoGradGuard ng;
      out.copy_(x * x);
    }
    return autograd::record("wrong_square", out, {x},
                            [xs = x.detach()](const Tensor& g, const autograd::NeedsGrad&) {
                              return std::vector<Tensor>{g * xs * 2.1};  // should be 2
                            });
  };
  Tensor x = randn({4}, {.dtype = DType::f64}).requires_grad_();
  autograd::GradcheckResult r = autograd::gradcheck(wrong_square, {x});
  EXPECT_FALSE(r.ok);
  EXPECT_NE(r.message.find("analytic"), std::string::npos);
  auto right = [](const std::vector<Tensor>& v) { return v[0] * v[0]; };
  EXPECT_TRUE(autograd::gradcheck(right, {x}).ok);
}

// Anomaly mode: sqrt(-1) is NaN, and its backward 1 / (2 sqrt(x)) the first NaN gradient; the
// error names sqrt, not the mul after it. Without the mode the NaN reaches the leaf silently.
TEST(Autograd, AnomalyModeNamesTheFunctionThatReturnedNaN) {
  Tensor x = from_vector<double>({-1.0, 4.0}, {2});
  x.requires_grad_();
  auto loss = [&] { return (lumen::sqrt(x) * 3.0).sum(); };
  loss().backward();
  EXPECT_TRUE(std::isnan(x.grad().to_vector<double>()[0]));
  EXPECT_NEAR(x.grad().to_vector<double>()[1], 0.75, 1e-15);
  x.set_grad(Tensor());
  EXPECT_FALSE(AnomalyMode::is_enabled());
  {
    DetectAnomalyGuard anomaly;
    EXPECT_TRUE(AnomalyMode::is_enabled());
    EXPECT_THROW_MSG(loss().backward(), "function 'sqrt' returned NaN values in its 0th output",
                     "shape [2]");
    // Infinities are not NaN: log(0)'s gradient 1/0 passes.
    Tensor z = zeros({1}, {.dtype = DType::f64});
    z.requires_grad_();
    lumen::log(z).sum().backward();
    EXPECT_TRUE(std::isinf(z.grad().to_vector<double>()[0]));
    DetectAnomalyGuard off(false);
    EXPECT_FALSE(AnomalyMode::is_enabled());
  }
  EXPECT_FALSE(AnomalyMode::is_enabled());
}

}  // namespace
}  // namespace lumen::testing
