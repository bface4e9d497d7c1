#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

Tensor f1(const std::vector<Tensor>& v, Tensor (*f)(const Tensor&)) { return f(v[0]); }

LUMEN_OP_CASES(elementwise){{
    {"add_broadcast",
     {Input::real({3, 1, 5}), Input::real({4, 1})},
     [](const auto& v) { return v[0] + v[1]; }},
    {"sub_broadcast",
     {Input::real({2, 3}), Input::real({3})},
     [](const auto& v) { return v[0] - v[1]; }},
    {"mul_broadcast",
     {Input::real({2, 3, 4}), Input::real({3, 1})},
     [](const auto& v) { return v[0] * v[1]; }},
    {"div_broadcast",
     {Input::real({5, 3}), Input::positive({5, 1})},
     [](const auto& v) { return v[0] / v[1]; }},
    {"pow_tensor",
     {Input::positive({3, 4}), Input::real({4})},
     [](const auto& v) { return pow(v[0], v[1]); }},
    {"pow_scalar", {Input::positive({3, 7})}, [](const auto& v) { return pow(v[0], 2.5); }},
    {"maximum",
     {Input::real({4, 5}), Input::real({5})},
     [](const auto& v) { return maximum(v[0], v[1]); }},
    {"minimum",
     {Input::real({4, 5}), Input::real({4, 1})},
     [](const auto& v) { return minimum(v[0], v[1]); }},
    {"neg", {Input::real({3, 5})}, [](const auto& v) { return f1(v, neg); }},
    {"exp", {Input::real({3, 5})}, [](const auto& v) { return f1(v, exp); }},
    {"log", {Input::positive({3, 5})}, [](const auto& v) { return f1(v, log); }},
    {"sqrt", {Input::positive({7})}, [](const auto& v) { return f1(v, sqrt); }},
    {"abs", {Input::real({3, 5})}, [](const auto& v) { return f1(v, abs); }},
    {"relu", {Input::real({6, 5})}, [](const auto& v) { return f1(v, relu); }},
    {"leaky_relu", {Input::real({6, 5})}, [](const auto& v) { return leaky_relu(v[0], 0.2); }},
    {"sigmoid", {Input::real({3, 5})}, [](const auto& v) { return f1(v, sigmoid); }},
    {"tanh", {Input::real({3, 5})}, [](const auto& v) { return f1(v, tanh); }},
    {"gelu_erf", {Input::real({4, 9})}, [](const auto& v) { return gelu(v[0]); }},
    {"gelu_tanh", {Input::real({4, 9})}, [](const auto& v) { return gelu(v[0], "tanh"); }},
    {"clamp", {Input::real({5, 6})}, [](const auto& v) { return clamp(v[0], -0.5, 0.7); }},
    {"clamp_min", {Input::real({5, 6})}, [](const auto& v) { return clamp(v[0], 0.1, {}); }},
    {"where",
     {Input::mask({3, 4}), Input::real({3, 4}), Input::real({4})},
     [](const auto& v) { return where(v[0], v[1], v[2]); }},
    {"masked_fill",
     {Input::real({3, 4}), Input::mask({4})},
     [](const auto& v) { return masked_fill(v[0], v[1], -2.0); }},
    {"scalar_ops",
     {Input::real({3, 4})},
     [](const auto& v) { return (2.0 - v[0]) * 3.0 / 1.5 + 1.0; }},
}};

TEST(Elementwise, ForwardValues) {
  Tensor a = from_vector<double>({1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector<double>({10, 20, 30}, {3});
  EXPECT_EQ((a + b).to_vector<double>(), (std::vector<double>{11, 22, 33, 14, 25, 36}));
  EXPECT_EQ((a * b).to_vector<double>(), (std::vector<double>{10, 40, 90, 40, 100, 180}));
  EXPECT_EQ((b - a).to_vector<double>(), (std::vector<double>{9, 18, 27, 6, 15, 24}));
  EXPECT_EQ((a / 2.0).to_vector<double>(), (std::vector<double>{0.5, 1, 1.5, 2, 2.5, 3}));
  Tensor x = from_vector<double>({-2, -0.5, 0, 0.5, 2});
  EXPECT_EQ(relu(x).to_vector<double>(), (std::vector<double>{0, 0, 0, 0.5, 2}));
  EXPECT_EQ(clamp(x, -1.0, 1.0).to_vector<double>(), (std::vector<double>{-1, -0.5, 0, 0.5, 1}));
  std::vector<double> s = sigmoid(x).to_vector<double>();
  for (size_t i = 0; i < s.size(); ++i)
    EXPECT_NEAR(s[i], 1 / (1 + std::exp(-x.to_vector<double>()[i])), 1e-15);
  // gelu(1) = 0.5 (1 + erf(1/sqrt 2)) = 0.8413447460685429
  EXPECT_NEAR(gelu(from_vector<double>({1.0})).item(), 0.8413447460685429, 1e-15);
  // tanh form: 0.5 (1 + tanh(sqrt(2/pi) (1 + 0.044715))) = 0.8411919906082768
  EXPECT_NEAR(gelu(from_vector<double>({1.0}), "tanh").item(), 0.8411919906082768, 1e-15);
  // Large negative logits must not overflow.
  EXPECT_NEAR(sigmoid(from_vector<double>({-800.0})).item(), 0.0, 1e-300);
}

TEST(Elementwise, IntegerAndPromotion) {
  Tensor i = from_vector<int64_t>({1, 2, 3});
  Tensor f = from_vector<float>({0.5f, 0.5f, 0.5f});
  Tensor s = i + f;
  EXPECT_EQ(s.dtype(), DType::f32);
  EXPECT_EQ(s.to_vector<float>(), (std::vector<float>{1.5f, 2.5f, 3.5f}));
  EXPECT_EQ((i * i).dtype(), DType::i64);
  EXPECT_EQ((i * i).to_vector<int64_t>(), (std::vector<int64_t>{1, 4, 9}));
  Tensor d = i / from_vector<int64_t>({2, 2, 2});  // true division
  EXPECT_EQ(d.dtype(), DType::f32);
  EXPECT_EQ(d.to_vector<float>(), (std::vector<float>{0.5f, 1.0f, 1.5f}));
  EXPECT_EQ(lt(i, from_vector<int64_t>({2, 2, 2})).to_vector<bool>(),
            (std::vector<bool>{true, false, false}));
}

TEST(Elementwise, HalfStorageComputesInFloat) {
  Tensor a = from_vector<float>({1.5f, -2.25f, 3.0f}).to(DType::f16);
  Tensor b = from_vector<float>({0.25f, 0.5f, 1.0f}).to(DType::bf16);
  EXPECT_EQ((a + a).dtype(), DType::f16);
  EXPECT_EQ((a + a).to_vector<float>(), (std::vector<float>{3.0f, -4.5f, 6.0f}));
  EXPECT_EQ((a * b).dtype(), DType::f32);  // f16 with bf16 promotes to f32
  EXPECT_EQ((a * b).to_vector<float>(), (std::vector<float>{0.375f, -1.125f, 3.0f}));
}

TEST(Elementwise, Errors) {
  Tensor a = zeros({2, 3}), b = zeros({4});
  EXPECT_THROW_MSG(a + b, "add", "[2, 3]", "[4]");
  EXPECT_THROW_MSG(exp(zeros({2}, {.dtype = DType::i64})), "exp", "i64");
  EXPECT_THROW_MSG(gelu(a, "fast"), "gelu", "fast");
  EXPECT_THROW_MSG(where(a, a, a), "where", "bool");
  EXPECT_THROW_MSG(masked_fill(a, zeros({2, 3}, {.dtype = DType::boolean}).unsqueeze(0), 1.0),
                   "masked_fill", "[1, 2, 3]", "[2, 3]");
  EXPECT_THROW_MSG(clamp(a, 1.0, 0.0), "clamp", "min");
}

TEST(Elementwise, InPlace) {
  Tensor w = ones({3}, {.requires_grad = true});
  EXPECT_THROW_MSG(w.add_(ones({3})), "add_", "requires grad", "leaf");
  EXPECT_THROW_MSG(w.fill_(2.0), "fill_", "requires grad");
  {
    NoGradGuard ng;
    w.add_(from_vector<float>({1, 2, 3}), 2.0);
  }
  EXPECT_EQ(w.to_vector<float>(), (std::vector<float>{3, 5, 7}));
  Tensor x = zeros({2, 3});
  x.copy_(from_vector<float>({1, 2, 3}));
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{1, 2, 3, 1, 2, 3}));
  x.mul_(2.0);
  EXPECT_EQ(x.to_vector<float>(), (std::vector<float>{2, 4, 6, 2, 4, 6}));
  EXPECT_THROW_MSG(x.copy_(zeros({4})), "copy_", "[4]", "[2, 3]");
}

}  // namespace
}  // namespace lumen::testing
