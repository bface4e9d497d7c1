// The vectorisable float exp, tanh, erfc, log and log1p (kernels/simd_math.h) against the
// double-precision library functions, in units in the last place of the float result, over a sweep
// of float bit patterns through each function's whole range, and at the special values.
#include <cmath>
#include <limits>

#include <gtest/gtest.h>

#include "kernels/simd_math.h"

namespace lumen {
namespace {

// |got - want| in units of the float spacing at want (2^-149 for subnormals); a want beyond
// the float range must give inf.
double ulp_error(float got, double want) {
  if (std::isnan(want)) return std::isnan(got) ? 0.0 : INFINITY;
  if (std::isinf(static_cast<float>(want)) || std::isinf(got))
    return got == static_cast<float>(want) ? 0.0 : INFINITY;
  const float w = static_cast<float>(std::abs(want));
  const double spacing = std::nextafter(w, INFINITY) - static_cast<double>(w);
  return std::abs(static_cast<double>(got) - want) / spacing;
}

struct Sweep {
  double worst = 0;
  float at = 0;
  int64_t count = 0;
};

// Every `step`-th float bit pattern with magnitude up to `limit`, both signs (or positive only).
template <class F, class Ref>
Sweep sweep(F f, Ref ref, float limit, uint32_t step, bool positive_only = false) {
  Sweep s;
  const uint32_t top = float_bits(limit);
  for (uint32_t sign : {0u, 0x80000000u}) {
    if (positive_only && sign) break;
    for (uint32_t b = 0; b <= top; b += step) {
      const float x = bits_float(b | sign);
      const double e = ulp_error(f(x), ref(static_cast<double>(x)));
      ++s.count;
      if (e > s.worst) s.worst = e, s.at = x;
    }
  }
  return s;
}

TEST(SimdMath, ExpWithinOneAndAHalfUlpOverItsRange) {
  // Beyond 89 the result is inf, below -104 it is 0 (checked below).
  Sweep s = sweep([](float x) { return simd_math::exp(x); }, [](double x) { return std::exp(x); },
                  104.0f, 97);
  EXPECT_GT(s.count, 20'000'000);
  EXPECT_LE(s.worst, 1.5) << "at x = " << s.at;
}

TEST(SimdMath, TanhWithinTwoUlp) {
  Sweep s = sweep([](float x) { return simd_math::tanh(x); }, [](double x) { return std::tanh(x); },
                  20.0f, 97);
  EXPECT_LE(s.worst, 2.0) << "at x = " << s.at;
}

TEST(SimdMath, ErfcWithinNineUlp) {
  Sweep s = sweep([](float x) { return simd_math::erfc(x); }, [](double x) { return std::erfc(x); },
                  10.5f, 97);
  EXPECT_LE(s.worst, 9.0) << "at x = " << s.at;
}

// Every exponent, subnormals included.
TEST(SimdMath, LogWithinOneUlpOfPositiveFloats) {
  Sweep s = sweep([](float x) { return simd_math::log(x); }, [](double x) { return std::log(x); },
                  std::numeric_limits<float>::max(), 97, true);
  EXPECT_GT(s.count, 20'000'000);
  EXPECT_LE(s.worst, 1.0) << "at x = " << s.at;
}

TEST(SimdMath, Log1pWithinTwoAndAHalfUlp) {
  // Down to -1 (the pole), and positive values up to 1e30.
  Sweep neg = sweep([](float x) { return simd_math::log1p(x); },
                    [](double x) { return std::log1p(x); }, 1.0f, 97);
  Sweep pos = sweep([](float x) { return simd_math::log1p(x); },
                    [](double x) { return std::log1p(x); }, 1e30f, 97, true);
  EXPECT_LE(neg.worst, 2.5) << "at x = " << neg.at;
  EXPECT_LE(pos.worst, 2.5) << "at x = " << pos.at;
}

TEST(SimdMath, SpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(simd_math::exp(0.0f), 1.0f);
  EXPECT_EQ(simd_math::exp(-0.0f), 1.0f);
  EXPECT_EQ(simd_math::exp(inf), inf);
  EXPECT_EQ(simd_math::exp(-inf), 0.0f);
  EXPECT_EQ(simd_math::exp(89.0f), inf);
  EXPECT_TRUE(std::isfinite(simd_math::exp(88.72f)));
  EXPECT_EQ(simd_math::exp(-110.0f), 0.0f);
  EXPECT_GT(simd_math::exp(-100.0f), 0.0f);  // subnormal, not flushed
  EXPECT_TRUE(std::isnan(simd_math::exp(nan)));

  EXPECT_EQ(simd_math::tanh(inf), 1.0f);
  EXPECT_EQ(simd_math::tanh(-inf), -1.0f);
  EXPECT_TRUE(std::signbit(simd_math::tanh(-0.0f)));
  EXPECT_EQ(simd_math::tanh(1e-30f), 1e-30f);
  EXPECT_TRUE(std::isnan(simd_math::tanh(nan)));

  EXPECT_EQ(simd_math::erfc(0.0f), 1.0f);
  EXPECT_EQ(simd_math::erfc(inf), 0.0f);
  EXPECT_EQ(simd_math::erfc(-inf), 2.0f);
  EXPECT_EQ(simd_math::erfc(11.0f), 0.0f);
  EXPECT_TRUE(std::isnan(simd_math::erfc(nan)));

  EXPECT_EQ(simd_math::log(1.0f), 0.0f);
  EXPECT_EQ(simd_math::log(0.0f), -inf);
  EXPECT_EQ(simd_math::log(-0.0f), -inf);
  EXPECT_EQ(simd_math::log(inf), inf);
  EXPECT_TRUE(std::isnan(simd_math::log(-1.0f)));
  EXPECT_TRUE(std::isnan(simd_math::log(-inf)));
  EXPECT_TRUE(std::isnan(simd_math::log(nan)));
  EXPECT_NEAR(simd_math::log(0x1p-149f), -149 * std::log(2.0), 1e-4);  // smallest subnormal

  EXPECT_EQ(simd_math::log1p(0.0f), 0.0f);
  EXPECT_EQ(simd_math::log1p(1e-30f), 1e-30f);
  EXPECT_EQ(simd_math::log1p(-1.0f), -inf);
  EXPECT_EQ(simd_math::log1p(inf), inf);
  EXPECT_TRUE(std::isnan(simd_math::log1p(-2.0f)));
  EXPECT_TRUE(std::isnan(simd_math::log1p(nan)));
}

// The dispatch: float takes these versions, double the library's.
TEST(SimdMath, DoubleKeepsTheLibraryFunctions) {
  EXPECT_EQ(kernels::math::exp(0.3), std::exp(0.3));
  EXPECT_EQ(kernels::math::tanh(0.3), std::tanh(0.3));
  EXPECT_EQ(kernels::math::erfc(0.3), std::erfc(0.3));
  EXPECT_EQ(kernels::math::log(0.3), std::log(0.3));
  EXPECT_EQ(kernels::math::log1p(0.3), std::log1p(0.3));
  EXPECT_EQ(kernels::math::exp(0.3f), simd_math::exp(0.3f));
}

}  // namespace
}  // namespace lumen
