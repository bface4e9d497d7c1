#pragma once
// Elementwise math, defined once for every backend: each functor gives f(x) and, for unary
// ops, the backward g * f'(x). The CPU loops (kernels/cpu/elementwise.cpp) and the CUDA kernels
// (kernels/cuda/elementwise.cu) both instantiate these; visit_unary/visit_binary turn the
// runtime op code into a functor type outside the inner loop.
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "kernels/simd_math.h"
#include "tensor/dtype.h"
#include "tensor/generator.h"

namespace lumen::kernels {

enum class UnaryOp : uint8_t {
  Neg,
  Exp,
  Log,
  Sqrt,
  Abs,
  Relu,
  LeakyRelu,
  GeluErf,
  GeluTanh,
  Sigmoid,
  Tanh,
  PowScalar,
  Clamp
};
// Parameters of the parameterised ops: PowScalar uses a (the exponent), LeakyRelu a (the
// negative slope), Clamp [a, b].
struct UnaryArgs {
  UnaryOp op;
  double a = 0, b = 0;
};

// Random fills: Uniform in [0, 1); Normal N(0, 1); Bernoulli 1 with probability `param`.
enum class RandomKind : uint8_t { Uniform, Normal, Bernoulli };

// Element i of a random fill is a function of (seed, offset, i) alone, so every backend draws
// the same numbers (tensor/generator.h): Philox block offset + i / k holds elements
// [k (i / k), k (i / k) + k), with k = random_per_block (a 32-bit word each, or two words for a
// uniform f64 and for a Box-Muller pair).
template <class T>
LUMEN_HD constexpr int random_per_block(RandomKind kind) {
  return kind == RandomKind::Normal || (kind == RandomKind::Uniform && std::is_same_v<T, double>)
             ? 2
             : 4;
}
// Element j of the block o.
template <class T>
LUMEN_HD T random_in_block(RandomKind kind, double param, const PhiloxOut& o, int j) {
  double v;
  if (kind == RandomKind::Uniform) {
    v = std::is_same_v<T, double> ? philox_words_to_f64(o.w[2 * j], o.w[2 * j + 1])
                                  : philox_word_to_f32(o.w[j]);
  } else if (kind == RandomKind::Normal) {
    const PhiloxPolar p = philox_normal_polar(o);
    v = j == 0 ? p.r * std::cos(p.angle) : p.r * std::sin(p.angle);
  } else {
    v = philox_word_to_f32(o.w[j]) < param ? 1.0 : 0.0;
  }
  return T(static_cast<acc_t<T>>(v));
}
template <class T>
LUMEN_HD T random_value(RandomKind kind, double param, uint64_t seed, uint64_t offset, uint64_t i) {
  const uint64_t k = random_per_block<T>(kind);
  return random_in_block<T>(kind, param, philox4x32(offset + i / k, seed), static_cast<int>(i % k));
}

// Inverted dropout of element i (row-major position in the tensor):
//   keep_i = [u_i < 1 - p],  u_i = philox_uniform_f32(seed, offset, i),
//   out_i = x_i keep_i / (1 - p)
// The mask is a pure function of (seed, offset, i), so it is never stored: the backward
// recomputes it (g_i keep_i / (1 - p) is this same op on g), and the CPU and CUDA kernels
// keep the same elements (the numbers of a Bernoulli(1 - p) random_fill).
// u_i = v 2^-24 with v = w >> 8 (w the element's Philox word) is exact, and for an integer v,
// v 2^-24 < 1 - p <=> v < ceil((1 - p) 2^24): the test is one integer compare on the word.
struct DropoutMask {
  uint32_t keep_below;  // ceil((1 - p) 2^24)
  double scale;         // 1 / (1 - p), 0 when p = 1
  uint64_t seed, offset;
  DropoutMask(double p, uint64_t seed, uint64_t offset)
      : keep_below(static_cast<uint32_t>(std::ceil((1.0 - p) * 0x1p24))),
        scale(p < 1.0 ? 1.0 / (1.0 - p) : 0.0),
        seed(seed),
        offset(offset) {}
  LUMEN_HD bool keeps(uint32_t word) const { return (word >> 8) < keep_below; }
  // x_i keep_i / (1 - p) given element i's Philox word, for loops that draw words in bulk.
  // (The product first and a select after: a loop over words vectorises without branches.)
  template <class A>
  LUMEN_HD A given(uint32_t word, A x) const {
    const A kept = x * A(scale);
    return keeps(word) ? kept : A(0);
  }
  template <class A>
  LUMEN_HD A operator()(uint64_t i, A x) const {
    return given(philox4x32(offset + i / 4, seed).w[i % 4], x);
  }
};

enum class BinaryOp : uint8_t { Add, Sub, Mul, Div, Pow, Maximum, Minimum };
enum class CompareOp : uint8_t { Eq, Ne, Lt, Le, Gt, Ge };

namespace ew {
using math::erfc;  // float on the CPU: versions that vectorise (kernels/simd_math.h)
using math::exp;
using math::log;
using math::tanh;
using std::abs;
using std::pow;
using std::sqrt;

struct Neg {
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return -x;
  }
  template <class T>
  LUMEN_HD T backward(T g, T) const {
    return -g;
  }
};
struct Exp {  // d/dx e^x = e^x
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return exp(x);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return g * exp(x);
  }
};
struct Log {  // d/dx ln x = 1/x
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return log(x);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return g / x;
  }
};
struct Sqrt {  // d/dx sqrt(x) = 1 / (2 sqrt(x))
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return sqrt(x);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return g / (T(2) * sqrt(x));
  }
};
struct Abs {  // d/dx |x| = sign(x), 0 at 0 (as PyTorch)
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return abs(x);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return x > T(0) ? g : (x < T(0) ? -g : T(0));
  }
};
struct Relu {  // max(x, 0); gradient 0 at 0
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return x > T(0) ? x : T(0);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return x > T(0) ? g : T(0);
  }
};
// x for x > 0, s x otherwise; the gradient is 1 or s (s at 0, as PyTorch).
struct LeakyRelu {
  double s;
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return x > T(0) ? x : x * T(s);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return x > T(0) ? g : g * T(s);
  }
};
// gelu(x) = x Phi(x), Phi(x) = (1 + erf(x/sqrt 2))/2 = erfc(-x/sqrt 2)/2 (erfc keeps its
// relative accuracy for x << 0, where 1 + erf cancels);  gelu'(x) = Phi(x) + x phi(x),
// phi(x) = exp(-x^2/2) / sqrt(2 pi).
struct GeluErf {
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return x * (T(0.5) * erfc(x * T(-0.70710678118654752440)));
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    T cdf = T(0.5) * erfc(x * T(-0.70710678118654752440));
    T pdf = exp(T(-0.5) * x * x) * T(0.39894228040143267794);
    return g * (cdf + x * pdf);
  }
};
// Tanh approximation: gelu(x) = x/2 (1 + tanh(u)), u = sqrt(2/pi) (x + 0.044715 x^3);
// gelu'(x) = (1 + tanh u)/2 + x/2 (1 - tanh^2 u) sqrt(2/pi) (1 + 3 * 0.044715 x^2).
struct GeluTanh {
  static constexpr double kC = 0.79788456080286535588, kA = 0.044715;
  template <class T>
  LUMEN_HD T operator()(T x) const {
    T u = T(kC) * (x + T(kA) * x * x * x);
    return T(0.5) * x * (T(1) + tanh(u));
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    T u = T(kC) * (x + T(kA) * x * x * x);
    T th = tanh(u);
    T du = T(kC) * (T(1) + T(3 * kA) * x * x);
    return g * (T(0.5) * (T(1) + th) + T(0.5) * x * (T(1) - th * th) * du);
  }
};
// sigmoid(x) = 1 / (1 + e^-x) for x >= 0 and e^x / (1 + e^x) below, both from e = e^-|x| <= 1
// so nothing overflows (one exp and a select: the CPU loop vectorises); s' = s (1 - s).
struct Sigmoid {
  template <class T>
  LUMEN_HD T operator()(T x) const {
    const T e = exp(-abs(x)), s = T(1) / (T(1) + e);
    return x >= T(0) ? s : e * s;
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    T s = (*this)(x);
    return g * s * (T(1) - s);
  }
};
struct Tanh {  // tanh' = 1 - tanh^2
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return tanh(x);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    T t = tanh(x);
    return g * (T(1) - t * t);
  }
};
struct PowScalar {  // d/dx x^p = p x^(p-1)
  double p;
  template <class T>
  LUMEN_HD T operator()(T x) const {
    if (p == 2.0) return x * x;
    return pow(x, T(p));
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    if (p == 0.0) return T(0);
    if (p == 2.0) return g * T(2) * x;
    return g * T(p) * pow(x, T(p - 1));
  }
};
// clamp(x, lo, hi); the gradient passes where lo <= x <= hi (as PyTorch).
struct Clamp {
  double lo, hi;
  template <class T>
  LUMEN_HD T operator()(T x) const {
    return x < T(lo) ? T(lo) : (x > T(hi) ? T(hi) : x);
  }
  template <class T>
  LUMEN_HD T backward(T g, T x) const {
    return (x >= T(lo) && x <= T(hi)) ? g : T(0);
  }
};

struct Add {
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return a + b;
  }
};
struct Sub {
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return a - b;
  }
};
struct Mul {
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return a * b;
  }
};
struct Div {
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return a / b;
  }
};
struct Pow {
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    if constexpr (std::is_integral_v<T>) {
      T r = 1;
      for (T i = 0; i < b; ++i) r *= a;
      return r;
    } else {
      return pow(a, b);
    }
  }
};
struct Maximum {  // NaN propagates, as torch.maximum
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return (a != a || a > b) ? a : b;
  }
};
struct Minimum {
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return (a != a || a < b) ? a : b;
  }
};
// f(a + b): a bias add and the activation after it, in one pass.
template <class F>
struct AddThen {
  F f;
  template <class T>
  LUMEN_HD T operator()(T a, T b) const {
    return f(a + b);
  }
};
}  // namespace ew

template <class F>
decltype(auto) visit_unary(UnaryArgs args, F&& f) {
  switch (args.op) {
    case UnaryOp::Neg:
      return f(ew::Neg{});
    case UnaryOp::Exp:
      return f(ew::Exp{});
    case UnaryOp::Log:
      return f(ew::Log{});
    case UnaryOp::Sqrt:
      return f(ew::Sqrt{});
    case UnaryOp::Abs:
      return f(ew::Abs{});
    case UnaryOp::Relu:
      return f(ew::Relu{});
    case UnaryOp::LeakyRelu:
      return f(ew::LeakyRelu{args.a});
    case UnaryOp::GeluErf:
      return f(ew::GeluErf{});
    case UnaryOp::GeluTanh:
      return f(ew::GeluTanh{});
    case UnaryOp::Sigmoid:
      return f(ew::Sigmoid{});
    case UnaryOp::Tanh:
      return f(ew::Tanh{});
    case UnaryOp::PowScalar:
      return f(ew::PowScalar{args.a});
    case UnaryOp::Clamp:
      return f(ew::Clamp{args.a, args.b});
  }
  return f(ew::Neg{});
}

template <class F>
decltype(auto) visit_binary(BinaryOp op, F&& f) {
  switch (op) {
    case BinaryOp::Add:
      return f(ew::Add{});
    case BinaryOp::Sub:
      return f(ew::Sub{});
    case BinaryOp::Mul:
      return f(ew::Mul{});
    case BinaryOp::Div:
      return f(ew::Div{});
    case BinaryOp::Pow:
      return f(ew::Pow{});
    case BinaryOp::Maximum:
      return f(ew::Maximum{});
    case BinaryOp::Minimum:
      return f(ew::Minimum{});
  }
  return f(ew::Add{});
}

// Conversion goes through the wider of the two accumulation types, so f64 -> i64 keeps all
// digits and f32 -> f16 rounds once.
template <class To, class From>
LUMEN_HD To convert_to(From v) {
  if constexpr (std::is_same_v<To, bool>) {
    return static_cast<acc_t<From>>(v) != acc_t<From>(0);
  } else if constexpr (std::is_same_v<To, Half> || std::is_same_v<To, BFloat16>) {
    return To(static_cast<float>(static_cast<acc_t<From>>(v)));
  } else if constexpr (std::is_integral_v<To> && !std::is_integral_v<From> && sizeof(To) < 8) {
    // Through i64, so an out-of-range value wraps the same on every backend (-1.0 -> u8 255);
    // a direct float -> narrow int conversion saturates on the GPU and wraps on x86.
    return static_cast<To>(static_cast<int64_t>(static_cast<acc_t<From>>(v)));
  } else {
    return static_cast<To>(static_cast<acc_t<From>>(v));
  }
}

template <class T>
LUMEN_HD bool compare_values(CompareOp op, T a, T b) {
  switch (op) {
    case CompareOp::Eq:
      return a == b;
    case CompareOp::Ne:
      return a != b;
    case CompareOp::Lt:
      return a < b;
    case CompareOp::Le:
      return a <= b;
    case CompareOp::Gt:
      return a > b;
    case CompareOp::Ge:
      return a >= b;
  }
  return false;
}

}  // namespace lumen::kernels
