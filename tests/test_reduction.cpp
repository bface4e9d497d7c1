#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

LUMEN_OP_CASES(reduction){{
    {"sum_all", {Input::real({3, 4, 5})}, [](const auto& v) { return v[0].sum(); }},
    {"sum_dims_keepdim",
     {Input::real({3, 4, 5})},
     [](const auto& v) {
       return v[0].sum({0, 2}, true);
     }},
    {"sum_leading", {Input::real({7, 33})}, [](const auto& v) { return v[0].sum({0}); }},
    // Two leading dims reduced, 70 adjacent outputs: CUDA's column kernel over 3 blocks.
    {"mean_leading_3d",
     {Input::real({3, 11, 70})},
     [](const auto& v) {
       return v[0].mean({0, 1});
     }},
    {"mean_dim", {Input::real({3, 5})}, [](const auto& v) { return v[0].mean({-1}); }},
    {"mean_all", {Input::real({2, 3, 2})}, [](const auto& v) { return v[0].mean(); }},
    {"amax_dim", {Input::real({4, 6})}, [](const auto& v) { return v[0].max(1); }},
    {"amin_dim_keepdim", {Input::real({4, 6})}, [](const auto& v) { return v[0].min(0, true); }},
    {"amax_all", {Input::real({5, 3})}, [](const auto& v) { return v[0].max(); }},
    {"argmax",
     {Input::real({4, 6})},
     [](const auto& v) { return argmax(v[0], 1).to(DType::f32); },
     1e-5,
     1e-5,
     false},
}};

TEST(Reduction, Values) {
  Tensor x = from_vector<double>({1, 5, 3, 4, 2, 6}, {2, 3});
  EXPECT_EQ(x.sum().item(), 21);
  EXPECT_EQ(x.sum({0}).to_vector<double>(), (std::vector<double>{5, 7, 9}));
  EXPECT_EQ(x.sum({1}, true).shape(), (Shape{2, 1}));
  EXPECT_EQ(x.sum({1}).to_vector<double>(), (std::vector<double>{9, 12}));
  EXPECT_EQ(x.mean({1}).to_vector<double>(), (std::vector<double>{3, 4}));
  EXPECT_EQ(x.max(1).to_vector<double>(), (std::vector<double>{5, 6}));
  EXPECT_EQ(x.min(0).to_vector<double>(), (std::vector<double>{1, 2, 3}));
  EXPECT_EQ(x.argmax(1).to_vector<int64_t>(), (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(argmin(x, 0).to_vector<int64_t>(), (std::vector<int64_t>{0, 1, 0}));
  EXPECT_EQ(x.t().sum({1}).to_vector<double>(), (std::vector<double>{5, 7, 9}));
  // Integer sums give i64; sums over a non-contiguous view.
  EXPECT_EQ(from_vector<int32_t>({1, 2, 3}).sum().dtype(), DType::i64);
  EXPECT_EQ(x.slice(1, 0, 3, 2).sum().item(), 14);  // columns 0 and 2: 1 + 3 + 4 + 6
  // Ties: argmax takes the first; the max's gradient is shared.
  Tensor t =
      from_vector<double>({2, 7, 7}, {}, TensorOptions{.dtype = DType::f64, .requires_grad = true});
  EXPECT_EQ(t.argmax(0).item(), 1);
  t.max().backward();
  EXPECT_EQ(t.grad().to_vector<double>(), (std::vector<double>{0, 0.5, 0.5}));
  // NaN propagates through max.
  EXPECT_TRUE(std::isnan(from_vector<double>({1, NAN, 3}).max().item()));
  // Summing 1e6 values of 0.1 in f32 stays accurate (f64 accumulation).
  EXPECT_NEAR(full({1000000}, 0.1).sum().item(), 100000.0, 1.0);
  EXPECT_NEAR(full({1000, 1000}, 0.1).sum({0}).to_vector<float>()[3], 100.0, 1e-4);
}

TEST(Reduction, Errors) {
  Tensor x = zeros({2, 3});
  EXPECT_THROW_MSG(x.sum({2}), "sum", "dim 2", "2 dims");
  EXPECT_THROW_MSG(x.sum({1, -1}), "sum", "twice");
  EXPECT_THROW_MSG(zeros({0, 3}).max(), "amax", "[0, 3]");
  EXPECT_THROW_MSG(zeros({2}, {.dtype = DType::i32}).mean(), "mean", "i32");
  EXPECT_EQ(zeros({0, 3}).sum().item(), 0.0);
}

}  // namespace
}  // namespace lumen::testing
