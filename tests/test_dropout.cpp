#include <cmath>
#include <vector>

#include "kernels/cpu/philox_words.h"
#include "kernels/elementwise_ops.h"
#include "tests/op_harness.h"

namespace lumen::testing {
namespace {

using nn::functional::dropout;
using nn::functional::dropout_add;

// A fresh generator per call keeps the mask fixed while the harness perturbs the input.
Tensor seeded_dropout(const Tensor& x, double p) {
  Generator gen(7);
  return dropout(x, p, true, &gen);
}

LUMEN_OP_CASES(dropout){{
    {"dropout_p03", {Input::real({4, 5})}, [](const auto& v) { return seeded_dropout(v[0], 0.3); }},
    {"dropout_p05_odd",
     {Input::real({3, 7, 5})},
     [](const auto& v) { return seeded_dropout(v[0], 0.5); }},
    {"dropout_1d", {Input::real({13})}, [](const auto& v) { return seeded_dropout(v[0], 0.2); }},
    {"dropout_add",
     {Input::real({6, 5}), Input::real({6, 5})},
     [](const auto& v) {
       Generator gen(9);
       return dropout_add(v[0], v[1], 0.4, true, &gen);
     }},
}};

// The bulk words (eight blocks per AVX2 vector) are philox4x32's, bit for bit: counts that leave
// a tail, counters whose low half wraps inside a vector (the carry into the high half), the top
// of the 64-bit range, and position runs that start and end inside a block.
TEST(Dropout, BulkPhiloxWordsAreTheBlockFunctions) {
  const uint64_t key = 0x9E3779B97F4A7C15ull;
  for (uint64_t counter :
       {uint64_t{0}, (uint64_t{1} << 32) - 5, ~uint64_t{0} - 11, uint64_t{12345678901}})
    for (int64_t blocks : {0, 1, 7, 8, 9, 23}) {
      std::vector<uint32_t> got(4 * blocks + 1, 0xDEADBEEF);
      cpu::philox_words(counter, key, blocks, got.data());
      for (int64_t b = 0; b < blocks; ++b)
        for (int j = 0; j < 4; ++j)
          ASSERT_EQ(got[4 * b + j], philox4x32(counter + b, key).w[j])
              << "counter " << counter << " block " << b << " word " << j;
      EXPECT_EQ(got[4 * blocks], 0xDEADBEEF) << "wrote past the end";
    }
  const uint64_t offset = (uint64_t{1} << 32) - 3;
  for (uint64_t first : {0, 1, 2, 3, 5, 30})
    for (int64_t n : {0, 1, 3, 4, 5, 37, 70}) {
      std::vector<uint32_t> got(n + 1, 0xDEADBEEF);
      cpu::philox_position_words(key, offset, first, n, got.data());
      for (int64_t i = 0; i < n; ++i) {
        const uint64_t pos = first + i;
        ASSERT_EQ(got[i], philox4x32(offset + pos / 4, key).w[pos % 4])
            << "first " << first << " n " << n << " i " << i;
      }
      EXPECT_EQ(got[n], 0xDEADBEEF) << "wrote past the end";
    }
}

// DropoutMask tests the word by an integer compare, (w >> 8) < ceil((1 - p) 2^24); it must keep
// exactly the words whose uniform u = (w >> 8) 2^-24 is below 1 - p, at the boundary too.
TEST(Dropout, IntegerKeepTestIsTheUniformBelowKeepProbability) {
  for (double p : {0.0, 0.1, 0.35, 0.5, 0.9, 0x1p-24, 1 - 0x1p-24, 1 / 3.0, 1.0}) {
    const kernels::DropoutMask mask(p, 0, 0);
    const uint32_t k = mask.keep_below;
    for (uint32_t v : {0u, 1u, k > 0 ? k - 1 : 0u, k, k + 1, (1u << 24) - 1, 1u << 23}) {
      if (v >= (1u << 24)) continue;
      for (uint32_t low : {0u, 0xFFu}) {
        const uint32_t w = v << 8 | low;
        EXPECT_EQ(mask.keeps(w), static_cast<double>(philox_word_to_f32(w)) < 1.0 - p)
            << "p " << p << " word " << w;
      }
    }
  }
}

// The mask is Bernoulli(1 - p) drawn from the generator's stream as rand() draws it: element i
// is kept iff the i-th uniform of the same (seed, offset) is below 1 - p, and the generator
// moves on by as much, so the next draw matches too. Rows of odd length, and a tensor large
// enough to be split across threads, start runs in the middle of a Philox block (the CPU
// kernel draws a block once per four elements).
TEST(Dropout, MaskIsTheGeneratorsUniformsBelowKeepProbability) {
  const double p = 0.35;
  for (Shape shape : {Shape{2, 1001}, Shape{3, 40001}}) {
    Generator a(17), b(17);
    Tensor x = ones(shape);
    for (int draw = 0; draw < 2; ++draw) {
      std::vector<float> got = dropout(x, p, true, &a).to_vector<float>();
      std::vector<float> u = rand(shape, {}, &b).to_vector<float>();
      for (size_t i = 0; i < got.size(); ++i)
        ASSERT_EQ(got[i], u[i] < 1.0 - p ? static_cast<float>(1.0 / (1.0 - p)) : 0.0f)
            << shape_str(shape) << " draw " << draw << " element " << i;
    }
    EXPECT_EQ(a.offset(), b.offset());
  }
}

// Element positions are row-major positions in x's shape whatever its memory layout, so a
// transposed view drops what its contiguous copy drops.
TEST(Dropout, MaskFollowsPositionsNotMemory) {
  Tensor base = randn({7, 9});
  Generator a(3), b(3);
  Tensor view = base.t();
  EXPECT_EQ(dropout(view, 0.5, true, &a).to_vector<float>(),
            dropout(view.contiguous(), 0.5, true, &b).to_vector<float>());
}

// dropout_add is residual + dropout(x) with the same mask, values and gradients.
TEST(Dropout, DropoutAddIsResidualPlusDropout) {
  Tensor x = randn({5, 8}).requires_grad_(true), r = randn({5, 8}).requires_grad_(true);
  Tensor x2 = x.detach().clone().requires_grad_(true), r2 = r.detach().clone().requires_grad_(true);
  Generator a(4), b(4);
  Tensor fused = dropout_add(x, r, 0.3, true, &a);
  Tensor separate = r2 + dropout(x2, 0.3, true, &b);
  // Within one rounding: the fused kernel may contract r + x s into one FMA.
  std::vector<float> f = fused.to_vector<float>(), want = separate.to_vector<float>();
  for (size_t i = 0; i < f.size(); ++i) EXPECT_NEAR(f[i], want[i], 1e-6 * (1 + std::abs(want[i])));
  Tensor g = randn({5, 8});
  (fused * g).sum().backward();
  (separate * g).sum().backward();
  EXPECT_EQ(x.grad().to_vector<float>(), x2.grad().to_vector<float>());
  EXPECT_EQ(r.grad().to_vector<float>(), g.to_vector<float>());
  // Not training: the plain sum.
  EXPECT_EQ(dropout_add(x, r, 0.3, false).to_vector<float>(), (x + r).to_vector<float>());
  // About 70% of the 40 elements are kept (differ from the residual alone).
  int kept = 0;
  std::vector<float> rv = r.detach().to_vector<float>();
  for (size_t i = 0; i < f.size(); ++i) kept += std::abs(f[i] - rv[i]) > 1e-6;
  EXPECT_GT(kept, 10);
  EXPECT_LT(kept, 40);
}

TEST(Dropout, FractionAndScale) {
  const int64_t n = 200000;
  for (double p : {0.1, 0.3, 0.7}) {
    Generator gen(123);
    Tensor out = dropout(ones({n}), p, true, &gen);
    std::vector<float> v = out.to_vector<float>();
    int64_t zeros_seen = 0;
    const float kept = static_cast<float>(1.0 / (1.0 - p));
    for (float e : v) {
      if (e == 0.f) {
        ++zeros_seen;
      } else {
        ASSERT_FLOAT_EQ(e, kept) << "p = " << p;
      }
    }
    // Standard deviation of the fraction is sqrt(p (1 - p) / n) <= 0.0012: allow 5 of them.
    EXPECT_NEAR(static_cast<double>(zeros_seen) / n, p, 0.006) << "p = " << p;
  }
}

TEST(Dropout, KeptValuesAreScaledInputs) {
  Generator gen(11);
  Tensor x = randn({64, 33}, {.dtype = DType::f64});
  Tensor out = dropout(x, 0.25, true, &gen);
  std::vector<double> xv = x.to_vector<double>(), ov = out.to_vector<double>();
  int64_t kept = 0;
  for (size_t i = 0; i < xv.size(); ++i) {
    if (ov[i] == 0.0) continue;
    ++kept;
    EXPECT_NEAR(ov[i], xv[i] / 0.75, 1e-15 * std::abs(xv[i]) + 1e-300);
  }
  EXPECT_GT(kept, 0);
  EXPECT_LT(kept, static_cast<int64_t>(xv.size()));
}

TEST(Dropout, SeedDeterminesMask) {
  Tensor x = ones({1000});
  Generator a(5), b(5), c(6);
  std::vector<float> ma = dropout(x, 0.5, true, &a).to_vector<float>();
  EXPECT_EQ(ma, dropout(x, 0.5, true, &b).to_vector<float>());
  EXPECT_NE(ma, dropout(x, 0.5, true, &c).to_vector<float>());
  // The generator advances: a second draw from `a` gives a new mask.
  EXPECT_NE(ma, dropout(x, 0.5, true, &a).to_vector<float>());
  // The global generator, reseeded, repeats itself.
  manual_seed(9);
  std::vector<float> g1 = dropout(x, 0.5).to_vector<float>();
  manual_seed(9);
  EXPECT_EQ(g1, dropout(x, 0.5).to_vector<float>());
}

TEST(Dropout, EvalAndZeroPAreIdentity) {
  Tensor x = randn({3, 4});
  EXPECT_TRUE(dropout(x, 0.5, false).same(x));
  EXPECT_TRUE(dropout(x, 0.0, true).same(x));
  Generator gen(1);
  dropout(x, 0.5, false, &gen);
  EXPECT_EQ(gen.offset(), 0u);  // no draw in eval mode
}

TEST(Dropout, POneGivesZerosAndZeroGradient) {
  Tensor x = randn({4, 3}, {.dtype = DType::f64});
  x.requires_grad_();
  Tensor out = dropout(x, 1.0, true);
  EXPECT_EQ(out.to_vector<double>(), std::vector<double>(12, 0.0));
  out.sum().backward();
  EXPECT_EQ(x.grad().to_vector<double>(), std::vector<double>(12, 0.0));
}

TEST(Dropout, GradientIsTheScaledMask) {
  Generator gen(21);
  Tensor x = ones({500}, {.dtype = DType::f64});
  x.requires_grad_();
  Tensor out = dropout(x, 0.4, true, &gen);
  (out * 3.0).sum().backward();
  std::vector<double> o = out.to_vector<double>(), g = x.grad().to_vector<double>();
  for (size_t i = 0; i < o.size(); ++i) {
    ASSERT_TRUE(o[i] == 0.0 || o[i] == 1.0 / 0.6) << o[i];
    ASSERT_EQ(g[i], 3.0 * o[i]);  // d out / dx = mask / (1 - p), as x = 1
  }
}

TEST(Dropout, Errors) {
  Tensor x = zeros({2, 3});
  EXPECT_THROW_MSG(dropout(x, -0.1), "dropout", "[0, 1]", "-0.1");
  EXPECT_THROW_MSG(dropout(x, 1.5), "dropout", "[0, 1]", "1.5");
  EXPECT_THROW_MSG(dropout(x, std::nan("")), "dropout", "[0, 1]");
  EXPECT_THROW_MSG(dropout(zeros({2, 3}, {.dtype = DType::i64}), 0.5), "dropout", "floating", "i64",
                   "[2, 3]");
  EXPECT_THROW_MSG(dropout_add(x, zeros({3, 2})), "dropout_add", "residual", "[3, 2]", "[2, 3]");
  EXPECT_THROW_MSG(dropout_add(x, zeros({2, 3}, {.dtype = DType::f64})), "dropout_add", "f64",
                   "f32");
}

}  // namespace
}  // namespace lumen::testing
