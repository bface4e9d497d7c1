#pragma once
// exp, tanh, erfc, log and log1p in single precision without branches or library calls, so the
// CPU loops that call them vectorise. glibc's are scalar calls, and one in a loop
// keeps GCC from vectorising the whole loop (exp ran at 2.5 GB/s where ReLU runs at 110).
// Each is a range reduction plus a polynomial, computed on every lane; selects replace
// branches. NaN propagates, +-inf give the limits. Error against a double reference, measured
// in tests/test_simd_math.cpp over a sweep of float bit patterns through each range: exp
// <= 1.0 ulp, tanh <= 1.3, erfc <= 6.7 with FMA and 8.1 without (near |x| = 1, where 1 - erf x
// cancels), log <= 0.8, log1p <= 2.4. glibc's are within 1 ulp.
//
// kernels::math::exp/tanh/erfc/log/log1p are what the shared functors call: these versions for
// float in host code, the standard functions for double and in CUDA device code.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor/half.h"

// Inlined everywhere: a call left in a loop (GCC's size limits leave some, e.g. in GELU's
// backward with its erfc and exp) stops the loop from vectorising.
#define LUMEN_SIMD_INLINE inline __attribute__((always_inline))

namespace lumen::simd_math {

// p[0] + p[1] v + ... + p[N-1] v^(N-1), by Horner's rule.
template <int N>
LUMEN_SIMD_INLINE float polynomial(const float (&p)[N], float v) {
  float r = p[N - 1];
  for (int i = N - 2; i >= 0; --i) r = r * v + p[i];
  return r;
}

// e^x = 2^n e^r with n = round(x log2 e) and r = x - n ln 2, |r| <= ln 2 / 2; ln 2 is split
// in two (Cody-Waite: n * 0.693359375 is exact), so r carries no rounding from the reduction.
// e^r = 1 + r + r^2 P(r) with Cephes' expf coefficients. 2^n is applied in two halves so a
// subnormal result rounds once and an overflow gives inf. x is clamped to [-104, 89] first
// (e^-104 rounds to 0, e^89 overflows); the clamp's comparisons are false for NaN.
LUMEN_SIMD_INLINE float exp(float x) {
  x = x < -104.0f ? -104.0f : x;
  x = x > 89.0f ? 89.0f : x;
  // Adding 1.5 * 2^23 rounds to an integer and leaves n in the low mantissa bits.
  const float shifter = 0x1.8p23f;
  const float t = x * 1.44269504088896341f + shifter;
  const float n = t - shifter;
  const int32_t ni = static_cast<int32_t>(float_bits(t) - float_bits(shifter));
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  static constexpr float p[] = {5.0000001201e-1f, 1.6666665459e-1f, 4.1665795894e-2f,
                                8.3334519073e-3f, 1.3981999507e-3f, 1.9875691500e-4f};
  const float er = polynomial(p, r) * (r * r) + r + 1.0f;
  const int32_t n1 = ni / 2, n2 = ni - n1;  // each in [-75, 64]: a normal power of two
  const float s1 = bits_float(static_cast<uint32_t>(n1 + 127) << 23);
  const float s2 = bits_float(static_cast<uint32_t>(n2 + 127) << 23);
  return er * s1 * s2;
}

// tanh is odd: for a = |x| < 0.625, tanh a = a + a^3 P(a^2) (Cephes' tanhf); beyond,
// 1 - 2 / (e^{2a} + 1), whose subtraction loses little once tanh >= 0.55 (e^{2a} = inf gives
// 1). The sign goes back on last, so tanh(-0) = -0.
LUMEN_SIMD_INLINE float tanh(float x) {
  const float a = std::fabs(x), z = a * a;
  static constexpr float p[] = {-3.33332819422e-1f, 1.33314422036e-1f, -5.37397155531e-2f,
                                2.06390887954e-2f, -5.70498872745e-3f};
  const float small = polynomial(p, z) * z * a + a;
  const float large = 1.0f - 2.0f / (exp(2.0f * a) + 1.0f);
  return std::copysign(a < 0.625f ? small : large, x);
}

// erfc x = 1 - erf x. For a = |x| < 1, erf a = a P(a^2); for a >= 1, erfc a = e^{-a^2} Q(1/a),
// with P and Q fitted (weighted least squares at Chebyshev nodes) to erf(a)/a on [0, 1] and to
// erfc(a) e^{a^2} on [1, 10.1]. e^{-a^2} is computed from h = a with its low 12 mantissa bits
// cleared: -a^2 = -h^2 + d, d = (h - a)(h + a), where h^2 is exact and |d| < 0.06, so
// e^{-a^2} = e^{-h^2} e^d (e^d by its Taylor series) does not inherit a^2's rounding, which
// would cost up to 60 ulp where erfc is small. erfc(-a) = 2 - erfc(a).
LUMEN_SIMD_INLINE float erfc(float x) {
  const float a = std::fabs(x);
  static constexpr float p[] = {1.1283791f,    -0.3761232f,   0.112801306f,
                                -0.026709955f, 0.0049160266f, -0.0005625399f};
  const float near = 1.0f - a * polynomial(p, a * a);
  // Beyond 10.5 erfc is 0 in float; the clamp keeps h - a finite for a = inf.
  const float af = a > 10.5f ? 10.5f : a;
  static constexpr float q[] = {-3.42305166e-06f, 0.5643322f,  -0.0025541074f, -0.25615507f,
                                -0.16546919f,     1.11148723f, -1.83917864f,   1.7364931f,
                                -1.00878685f,     0.33737528f, -0.049956913f};
  const float h = bits_float(float_bits(af) & 0xfffff000u);
  const float d = (h - af) * (h + af);
  static constexpr float taylor[] = {1.0f, 1.0f, 0.5f, 1.0f / 6.0f, 1.0f / 24.0f};
  const float far = exp(-(h * h)) * polynomial(taylor, d) * polynomial(q, 1.0f / af);
  const float r = a < 1.0f ? near : far;
  return x < 0.0f ? 2.0f - r : r;
}

// ln x = e ln 2 + ln m for x = 2^e m with m in [sqrt(1/2), sqrt 2): ln m = f - f^2/2 + f^3 P(f),
// f = m - 1 (Cephes' logf), ln 2 in two parts as in exp. A subnormal x is scaled by 2^25
// first. Selects give ln 0 = -inf, ln inf = inf, and NaN below 0 and for NaN.
LUMEN_SIMD_INLINE float log(float x) {
  const bool subnormal = x < 0x1p-126f;
  const uint32_t b = float_bits(subnormal ? x * 0x1p25f : x);
  int32_t e = static_cast<int32_t>((b >> 23) & 0xff) - (subnormal ? 126 + 25 : 126);
  float m = bits_float((b & 0x007fffffu) | 0x3f000000u);  // in [1/2, 1)
  const bool low = m < 0.707106781f;
  e = low ? e - 1 : e;
  const float f = low ? m + m - 1.0f : m - 1.0f, z = f * f;
  static constexpr float p[] = {3.3333331174e-1f,  -2.4999993993e-1f, 2.0000714765e-1f,
                                -1.6668057665e-1f, 1.4249322787e-1f,  -1.2420140846e-1f,
                                1.1676998740e-1f,  -1.1514610310e-1f, 7.0376836292e-2f};
  const float fe = static_cast<float>(e);
  float y = polynomial(p, f) * f * z + fe * -2.12194440e-4f - 0.5f * z;
  float r = f + y + fe * 0.693359375f;
  r = x == 0.0f ? -INFINITY : r;
  r = x == INFINITY ? INFINITY : r;
  return x < 0.0f || x != x ? NAN : r;
}

// ln(1 + x) = ln u * x / (u - 1) with u = 1 + x rounded: the factor x / (u - 1) corrects for
// u's rounding (Goldberg), and u = 1 means ln(1 + x) = x to float precision.
LUMEN_SIMD_INLINE float log1p(float x) {
  const float u = 1.0f + x, d = u - 1.0f;
  const float r = d == 0.0f ? x : log(u) * (x / d);
  return x == INFINITY ? INFINITY : r;
}

}  // namespace lumen::simd_math

// The dispatching wrappers must inline too, on the host as on the device.
#if defined(__CUDACC__)
#define LUMEN_MATH_INLINE LUMEN_HD
#else
#define LUMEN_MATH_INLINE LUMEN_SIMD_INLINE
#endif

// math::name(x): simd_math::name for float in host code, std::name otherwise (double, and every
// type in CUDA device code, where __CUDA_ARCH__ is defined).
#if defined(__CUDA_ARCH__)
#define LUMEN_MATH_FUNCTION(name) \
  template <class T>              \
  LUMEN_MATH_INLINE T name(T x) { \
    return std::name(x);          \
  }
#else
#define LUMEN_MATH_FUNCTION(name)           \
  template <class T>                        \
  LUMEN_MATH_INLINE T name(T x) {           \
    if constexpr (std::is_same_v<T, float>) \
      return simd_math::name(x);            \
    else                                    \
      return std::name(x);                  \
  }
#endif

namespace lumen::kernels::math {

LUMEN_MATH_FUNCTION(exp)
LUMEN_MATH_FUNCTION(tanh)
LUMEN_MATH_FUNCTION(erfc)
LUMEN_MATH_FUNCTION(log)
LUMEN_MATH_FUNCTION(log1p)

}  // namespace lumen::kernels::math

#undef LUMEN_MATH_FUNCTION
