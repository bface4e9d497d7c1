#include <cmath>
#include <functional>

#include "autograd/node.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

Tensor mm(const std::vector<Tensor>& v) { return matmul(v[0], v[1]); }

LUMEN_OP_CASES(linalg){{
    {"matmul_2d", {Input::real({3, 4}), Input::real({4, 5})}, mm},
    {"matmul_odd_2d", {Input::real({7, 1}), Input::real({1, 3})}, mm},
    {"matmul_dot", {Input::real({7}), Input::real({7})}, mm},
    {"matmul_vec_mat", {Input::real({4}), Input::real({4, 3})}, mm},
    {"matmul_mat_vec", {Input::real({3, 4}), Input::real({4})}, mm},
    {"matmul_batched", {Input::real({2, 3, 4}), Input::real({2, 4, 5})}, mm},
    {"matmul_batch_broadcast", {Input::real({2, 1, 3, 4}), Input::real({3, 4, 5})}, mm},
    {"matmul_batch_times_matrix", {Input::real({2, 3, 4}), Input::real({4, 5})}, mm},
    {"matmul_matrix_times_batch", {Input::real({3, 4}), Input::real({2, 4, 5})}, mm},
    {"matmul_vec_batch", {Input::real({4}), Input::real({2, 4, 3})}, mm},
    {"matmul_batch_vec", {Input::real({2, 3, 4}), Input::real({4})}, mm},
    {"matmul_transposed_operand",
     {Input::real({5, 3}), Input::real({5, 2})},
     [](const auto& v) { return matmul(v[0].t(), v[1]); }},
    {"linear_bias",
     {Input::real({5, 4}), Input::real({3, 4}), Input::real({3})},
     [](const auto& v) { return F::linear(v[0], v[1], v[2]); }},
    {"linear_no_bias_3d",
     {Input::real({2, 5, 4}), Input::real({3, 4})},
     [](const auto& v) { return F::linear(v[0], v[1]); }},
    {"linear_1d_input",
     {Input::real({4}), Input::real({3, 4}), Input::real({3})},
     [](const auto& v) { return F::linear(v[0], v[1], v[2]); }},
    // The fused epilogues; 16 output features so cuBLASLt's GELU_AUX path (ld % 8) is taken.
    {"linear_relu",
     {Input::real({5, 4}), Input::real({16, 4}), Input::real({16})},
     [](const auto& v) { return F::linear(v[0], v[1], v[2], F::Activation::ReLU); }},
    {"linear_gelu",
     {Input::real({2, 3, 4}), Input::real({16, 4}), Input::real({16})},
     [](const auto& v) { return F::linear(v[0], v[1], v[2], F::Activation::GELU); }},
    {"linear_gelu_tanh",
     {Input::real({5, 4}), Input::real({16, 4}), Input::real({16})},
     [](const auto& v) { return F::linear(v[0], v[1], v[2], F::Activation::GELUTanh); }},
    {"linear_gelu_tanh_odd_width",
     {Input::real({5, 4}), Input::real({3, 4}), Input::real({3})},
     [](const auto& v) { return F::linear(v[0], v[1], v[2], F::Activation::GELUTanh); }},
    // A transposed weight (column-major) and a strided bias take the same path.
    {"linear_relu_strided_weight",
     {Input::real({5, 4}), Input::real({4, 16}), Input::real({16, 2})},
     [](const auto& v) {
       return F::linear(v[0], v[1].t(), v[2].select(1, 1), F::Activation::ReLU);
     }},
    {"linear_relu_no_bias",
     {Input::real({7, 4}), Input::real({3, 4})},
     [](const auto& v) { return F::linear(v[0], v[1], {}, F::Activation::ReLU); }},
}};

// C = A B by the definition, in double, from row-major element lists.
std::vector<double> naive_mm(const std::vector<double>& a, const std::vector<double>& b, int64_t M,
                             int64_t K, int64_t N) {
  std::vector<double> c(M * N, 0.0);
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j)
      for (int64_t k = 0; k < K; ++k) c[i * N + j] += a[i * K + k] * b[k * N + j];
  return c;
}

void expect_close(const std::vector<double>& got, const std::vector<double>& want, double tol,
                  const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  for (size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], want[i], tol * (1 + std::abs(want[i]))) << what << " element " << i;
}

// The three layouts an operand of logical shape [r, c] may have: contiguous, a transposed view
// (column-major), a strided slice (no unit stride: must be copied before the GEMM).
Tensor operand(int64_t r, int64_t c, int layout, DType dt, uint64_t seed) {
  Generator gen(seed);
  switch (layout) {
    case 0:
      return randn({r, c}, {.dtype = dt}, &gen);
    case 1:
      return randn({c, r}, {.dtype = dt}, &gen).t();
    default:
      return randn({r, 2 * c}, {.dtype = dt}, &gen).slice(1, 0, 2 * c, 2);
  }
}

TEST(Linalg, MatmulLayoutsMatchNaiveLoop) {
  const int64_t M = 37, K = 53, N = 29;
  for (DType dt : {DType::f64, DType::f32}) {
    double tol = dt == DType::f64 ? 1e-12 : 1e-5;
    for (int la = 0; la < 3; ++la) {
      for (int lb = 0; lb < 3; ++lb) {
        Tensor a = operand(M, K, la, dt, 1), b = operand(K, N, lb, dt, 2);
        ASSERT_EQ(a.is_contiguous(), la == 0);
        Tensor c = matmul(a, b);
        EXPECT_EQ(c.shape(), (Shape{M, N}));
        EXPECT_EQ(c.dtype(), dt);
        expect_close(c.to_vector<double>(),
                     naive_mm(a.to_vector<double>(), b.to_vector<double>(), M, K, N), tol,
                     "layouts " + std::to_string(la) + "," + std::to_string(lb));
      }
    }
  }
}

TEST(Linalg, LargeMatmulMatchesNaiveLoop) {
  // Big enough for the GEMM to split over threads, with K past one KC block.
  const int64_t M = 130, K = 1100, N = 70;
  Tensor a = randn({M, K}, {.dtype = DType::f32}), b = randn({N, K}, {.dtype = DType::f32}).t();
  expect_close(matmul(a, b).to_vector<double>(),
               naive_mm(a.to_vector<double>(), b.to_vector<double>(), M, K, N), 1e-4, "large");
}

// Batched product with broadcast batch dims, checked element by element against the definition
// with the broadcast written out by hand.
TEST(Linalg, BatchBroadcastMatchesNaiveLoop) {
  const int64_t M = 5, K = 3, N = 6;
  Tensor a = randn({2, 1, M, K}, {.dtype = DType::f64});
  Tensor b = randn({4, N, K}, {.dtype = DType::f64}).transpose(1, 2);  // [4, K, N], transposed
  Tensor c = matmul(a, b);
  ASSERT_EQ(c.shape(), (Shape{2, 4, M, N}));
  std::vector<double> av = a.to_vector<double>(), bv = b.to_vector<double>(),
                      cv = c.to_vector<double>();
  for (int64_t i = 0; i < 2; ++i)
    for (int64_t j = 0; j < 4; ++j)
      for (int64_t m = 0; m < M; ++m)
        for (int64_t n = 0; n < N; ++n) {
          double want = 0;
          for (int64_t k = 0; k < K; ++k) want += av[(i * M + m) * K + k] * bv[(j * K + k) * N + n];
          ASSERT_NEAR(cv[((i * 4 + j) * M + m) * N + n], want, 1e-12);
        }
  // An expanded operand (stride-0 batch dim) gives the same as a materialised one.
  Tensor w = randn({K, N}, {.dtype = DType::f64});
  Tensor x = randn({3, M, K}, {.dtype = DType::f64});
  expect_close(matmul(x, w.unsqueeze(0).expand({3, K, N})).to_vector<double>(),
               matmul(x, w.unsqueeze(0).expand({3, K, N}).contiguous()).to_vector<double>(), 1e-14,
               "expanded");
}

TEST(Linalg, ManySmallBatchesMatchPerBatchProducts) {
  // Small matrices: the kernel gives whole batches to threads.
  Tensor a = randn({64, 8, 5}, {.dtype = DType::f64}), b = randn({64, 5, 7}, {.dtype = DType::f64});
  Tensor c = matmul(a, b);
  for (int64_t i = 0; i < 64; i += 9)
    expect_close(
        c.select(0, i).to_vector<double>(),
        naive_mm(a.select(0, i).to_vector<double>(), b.select(0, i).to_vector<double>(), 8, 5, 7),
        1e-12, "batch " + std::to_string(i));
}

TEST(Linalg, VectorForms) {
  Tensor u = from_vector<double>({1, 2, 3}), v = from_vector<double>({4, 5, 6});
  Tensor d = matmul(u, v);
  EXPECT_EQ(d.dim(), 0);
  EXPECT_EQ(d.item(), 32.0);
  Tensor m = from_vector<double>({1, 0, 2, 0, 1, 1}, {2, 3});
  Tensor mv = matmul(m, v);  // [4 + 12, 5 + 6]
  EXPECT_EQ(mv.shape(), (Shape{2}));
  EXPECT_EQ(mv.to_vector<double>(), (std::vector<double>{16, 11}));
  Tensor vm = matmul(from_vector<double>({1, 2}), m);  // [1, 2, 4]
  EXPECT_EQ(vm.shape(), (Shape{3}));
  EXPECT_EQ(vm.to_vector<double>(), (std::vector<double>{1, 2, 4}));
  EXPECT_EQ(matmul(randn({2, 3, 4}), randn({4})).shape(), (Shape{2, 3}));
  EXPECT_EQ(matmul(randn({4}), randn({5, 4, 2})).shape(), (Shape{5, 2}));
  EXPECT_EQ(m.matmul(v).to_vector<double>(), mv.to_vector<double>());
}

TEST(Linalg, EmptyInnerDimGivesZeros) {
  Tensor c = matmul(zeros({3, 0}), zeros({0, 4}));
  EXPECT_EQ(c.shape(), (Shape{3, 4}));
  EXPECT_EQ(c.to_vector<float>(), std::vector<float>(12, 0.0f));
  EXPECT_EQ(matmul(zeros({0, 3}), zeros({4, 3}).t()).shape(), (Shape{0, 4}));
  EXPECT_EQ(matmul(zeros({2, 0, 3}), zeros({3, 4})).shape(), (Shape{2, 0, 4}));
  EXPECT_EQ(matmul(zeros({3, 2}), zeros({0, 2}).t()).shape(), (Shape{3, 0}));
}

TEST(Linalg, HalfMatmulComputesInFloat) {
  Tensor a = randn({6, 9}), b = randn({9, 4});
  for (DType dt : {DType::f16, DType::bf16}) {
    Tensor ah = a.to(dt), bh = b.to(dt);
    Tensor c = matmul(ah, bh);
    EXPECT_EQ(c.dtype(), dt);
    // The product of the rounded inputs, rounded once.
    std::vector<double> want =
        matmul(ah.to(DType::f32), bh.to(DType::f32)).to(dt).to_vector<double>();
    expect_close(c.to_vector<double>(), want, dt == DType::f16 ? 2e-3 : 1e-2, dtype_name(dt));
  }
}

TEST(Linalg, MatmulGradientsMatchFormulas) {
  // C = A B with A broadcast over the batch: dA = sum_b dC_b B_b^T, dB = A^T dC.
  Tensor a = randn({3, 4}, {.dtype = DType::f64}).requires_grad_();
  Tensor b = randn({2, 4, 5}, {.dtype = DType::f64}).requires_grad_();
  Tensor g = randn({2, 3, 5}, {.dtype = DType::f64});
  matmul(a, b).backward(g);
  std::vector<double> ga(12, 0.0);
  for (int64_t i = 0; i < 2; ++i) {
    std::vector<double> bt = b.detach().select(0, i).t().to_vector<double>();
    std::vector<double> part = naive_mm(g.select(0, i).to_vector<double>(), bt, 3, 5, 4);
    for (size_t k = 0; k < ga.size(); ++k) ga[k] += part[k];
    expect_close(
        b.grad().select(0, i).to_vector<double>(),
        naive_mm(a.detach().t().to_vector<double>(), g.select(0, i).to_vector<double>(), 4, 3, 5),
        1e-12, "grad b");
  }
  expect_close(a.grad().to_vector<double>(), ga, 1e-12, "grad a");
}

TEST(Linalg, LinearMatchesDefinition) {
  Tensor x = randn({4, 6}, {.dtype = DType::f64}), w = randn({3, 6}, {.dtype = DType::f64});
  Tensor bias = from_vector<double>({0.5, -1, 2});
  std::vector<double> y = F::linear(x, w, bias).to_vector<double>();
  std::vector<double> want = naive_mm(x.to_vector<double>(), w.t().to_vector<double>(), 4, 6, 3);
  for (int64_t i = 0; i < 4; ++i)
    for (int64_t j = 0; j < 3; ++j) want[i * 3 + j] += bias.to_vector<double>()[j];
  expect_close(y, want, 1e-12, "linear");
  EXPECT_EQ(F::linear(randn({2, 5, 6}), randn({3, 6})).shape(), (Shape{2, 5, 3}));
}

// The fused activations give what the separate ops give, values and gradients, bit for bit on
// the CPU in f32 (one rounding of x W^T + b either way), with and without grad mode.
TEST(Linalg, FusedActivationMatchesSeparateOps) {
  struct Case {
    F::Activation act;
    std::function<Tensor(const Tensor&)> separate;
  };
  std::vector<Case> cases = {
      {F::Activation::ReLU, [](const Tensor& z) { return relu(z); }},
      {F::Activation::GELU, [](const Tensor& z) { return gelu(z); }},
      {F::Activation::GELUTanh, [](const Tensor& z) { return gelu(z, "tanh"); }}};
  for (const Case& c : cases) {
    for (bool with_bias : {true, false}) {
      Generator gen(3);
      Tensor x = randn({6, 5}, {}, &gen), w = randn({4, 5}, {}, &gen), b = randn({4}, {}, &gen);
      Tensor x1 = x.clone().requires_grad_(true), w1 = w.clone().requires_grad_(true),
             b1 = b.clone().requires_grad_(true);
      Tensor x2 = x.clone().requires_grad_(true), w2 = w.clone().requires_grad_(true),
             b2 = b.clone().requires_grad_(true);
      Tensor fused = F::linear(x1, w1, with_bias ? b1 : Tensor(), c.act);
      Tensor want = c.separate(F::linear(x2, w2, with_bias ? b2 : Tensor()));
      EXPECT_EQ(fused.to_vector<float>(), want.to_vector<float>());
      Tensor r = randn({6, 4}, {}, &gen);
      (fused * r).sum().backward();
      (want * r).sum().backward();
      EXPECT_EQ(x1.grad().to_vector<float>(), x2.grad().to_vector<float>());
      EXPECT_EQ(w1.grad().to_vector<float>(), w2.grad().to_vector<float>());
      if (with_bias) {
        std::vector<float> gb1 = b1.grad().to_vector<float>(), gb2 = b2.grad().to_vector<float>();
        for (size_t i = 0; i < gb1.size(); ++i) EXPECT_NEAR(gb1[i], gb2[i], 1e-5);
      }
      NoGradGuard no_grad;
      EXPECT_EQ(F::linear(x, w, with_bias ? b : Tensor(), c.act).to_vector<float>(),
                want.to_vector<float>());
    }
  }
}

// nn::Sequential runs Linear + ReLU/GELU as one fused linear; the model computes what its
// modules one after another compute, and a subclass of Linear keeps its own forward.
TEST(Linalg, SequentialFusesLinearActivation) {
  manual_seed(5);
  auto l1 = std::make_shared<nn::Linear>(5, 8), l2 = std::make_shared<nn::Linear>(8, 3);
  nn::Sequential seq{l1, std::make_shared<nn::GELU>(nn::GELUOptions{"tanh"}), l2,
                     std::make_shared<nn::ReLU>()};
  Tensor x = randn({4, 5});
  Tensor want = relu(l2->forward(gelu(l1->forward(x), "tanh")));
  Tensor got = seq.forward(x);
  std::vector<float> a = got.to_vector<float>(), b = want.to_vector<float>();
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-6);
  ASSERT_NE(got.grad_fn(), nullptr);
  EXPECT_EQ(got.grad_fn()->name, "linear");  // unfused, the last node would be relu

  struct Doubled : nn::Linear {
    using nn::Linear::Linear;
    Tensor forward(const Tensor& x) override { return nn::Linear::forward(x) * 2.0; }
  };
  auto d = std::make_shared<Doubled>(5, 3);
  nn::Sequential custom{d, std::make_shared<nn::ReLU>()};
  std::vector<float> c = custom.forward(x).to_vector<float>(),
                     e = relu(d->nn::Linear::forward(x) * 2.0).to_vector<float>();
  EXPECT_EQ(c, e);
}

TEST(Linalg, ErrorsNameShapesAndDtypes) {
  EXPECT_THROW_MSG(matmul(zeros({2, 3}), zeros({4, 5})), "matmul", "[2, 3]", "[4, 5]", "3", "4");
  EXPECT_THROW_MSG(matmul(zeros({3}), zeros({4})), "matmul", "[3]", "[4]");
  EXPECT_THROW_MSG(matmul(zeros({2, 3, 4}), zeros({3, 4, 5})), "matmul", "[2, 3, 4]", "[3, 4, 5]",
                   "broadcast");
  EXPECT_THROW_MSG(matmul(zeros({2, 3}), zeros({3, 2}, {.dtype = DType::f64})), "matmul", "f32",
                   "f64");
  EXPECT_THROW_MSG(
      matmul(zeros({2, 3}, {.dtype = DType::i64}), zeros({3, 2}, {.dtype = DType::i64})), "matmul",
      "floating", "i64");
  EXPECT_THROW_MSG(matmul(scalar_tensor(1.0), zeros({3})), "matmul", "1-D", "[]");
  EXPECT_THROW_MSG(F::linear(zeros({2, 5}), zeros({3, 4})), "linear", "[2, 5]", "[3, 4]");
  EXPECT_THROW_MSG(F::linear(zeros({2, 4}), zeros({3, 4}), zeros({4})), "linear", "bias", "[4]",
                   "[3, 4]");
  EXPECT_THROW_MSG(F::linear(zeros({2, 4}), zeros({4})), "linear", "2-D", "[4]");
}

}  // namespace
}  // namespace lumen::testing
