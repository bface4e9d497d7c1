#pragma once
// The per-element optimizer updates of kernels/optim.h, defined once for every backend: the CPU
// loop (kernels/cpu/optim.cpp) and the CUDA kernels (kernels/cuda/optim.cu) both call these,
// so the two cannot drift. Scalars are cast to the parameter's dtype T once, on the host.
#include <cmath>

#include "kernels/optim.h"
#include "tensor/half.h"

namespace lumen::kernels {

// Element i of a parameter's 16-bit copy (kernels/optim.h, low_copies) from its updated value:
// one rounding, as Tensor::to(f16 / bf16) does.
template <class T>
LUMEN_HD void store_low_copy(void* low, bool bf16, int64_t i, T p) {
  if (bf16)
    static_cast<BFloat16*>(low)[i] = BFloat16(static_cast<float>(p));
  else
    static_cast<Half*>(low)[i] = Half(static_cast<float>(p));
}

template <class T>
struct SgdUpdate {
  T lr, wd, mom, one_minus_damp;
  bool has_wd, first, nesterov, maximize;

  explicit SgdUpdate(const SgdStepArgs& a)
      : lr(T(a.lr)),
        wd(T(a.weight_decay)),
        mom(T(a.momentum)),
        one_minus_damp(T(1.0 - a.dampening)),
        has_wd(a.weight_decay != 0),
        first(a.first),
        nesterov(a.nesterov),
        maximize(a.maximize) {}

  // Element i: p and, with momentum, its buffer element *buf are updated in place (buf is
  // nullptr without momentum; a loop that passes a literal nullptr compiles without the branch).
  LUMEN_HD void operator()(T& p, T g, T* buf) const {
    T d = maximize ? -g : g;
    if (has_wd) d = d + wd * p;
    if (buf) {
      T b = first ? d : *buf * mom + one_minus_damp * d;
      *buf = b;
      d = nesterov ? d + mom * b : b;
    }
    p = p + (-lr) * d;
  }
};

// PyTorch's lerp: self + w (end - self) for |w| < 0.5, else end - (end - self)(1 - w), which
// keeps lerp(a, b, 1) == b exactly.
template <class T>
LUMEN_HD T lerp(T self, T end, T w) {
  using std::abs;
  return abs(w) < T(0.5) ? self + w * (end - self) : end - (end - self) * (T(1) - w);
}

template <class T>
struct AdamUpdate {
  T wd, decay, w1, b2, w2, eps, bc2_sqrt, neg_step;
  bool has_wd, decoupled, maximize;

  explicit AdamUpdate(const AdamStepArgs& a)
      : wd(T(a.weight_decay)),
        decay(T(1.0 - a.lr * a.weight_decay)),
        w1(T(1.0 - a.beta1)),
        b2(T(a.beta2)),
        w2(T(1.0 - a.beta2)),
        eps(T(a.eps)),
        bc2_sqrt(T(a.bias_correction2_sqrt)),
        neg_step(T(-a.step_size)),
        has_wd(a.weight_decay != 0),
        decoupled(a.decoupled_weight_decay),
        maximize(a.maximize) {}

  // Element i: p, m, v and, with amsgrad, the running max *vmax are updated in place (vmax is
  // nullptr without amsgrad: a loop that passes a literal nullptr has no load to guard, so the
  // CPU loop vectorises).
  LUMEN_HD void operator()(T& p, T g, T& m, T& v, T* vmax) const {
    using std::sqrt;
    T gi = maximize ? -g : g;
    T pi = p;
    if (has_wd) {
      if (decoupled)
        pi = pi * decay;
      else
        gi = gi + wd * pi;
    }
    T mi = lerp(m, gi, w1);
    T vi = v * b2;
    vi = vi + w2 * gi * gi;
    m = mi;
    v = vi;
    if (vmax) {
      vi = *vmax < vi ? vi : *vmax;  // std::max's choice, NaN included
      *vmax = vi;
    }
    T denom = sqrt(vi) / bc2_sqrt + eps;
    p = pi + neg_step * (mi / denom);
  }
};

// One element's term of norm_power_sum: |x|^p (|x| for p = inf, combined by max).
struct NormTerm {
  double p;
  LUMEN_HD double operator()(double x) const {
    using std::abs, std::pow;
    x = abs(x);
    return p == 2 ? x * x : (p == 1 || p > 1e308) ? x : pow(x, p);  // p > 1e308: infinity
  }
};

// How norm_power_sum combines terms: + for a finite p; for p = inf the larger, NaN winning.
struct NormCombine {
  bool max;
  LUMEN_HD double operator()(double a, double b) const {
    if (!max) return a + b;
    return a != a ? a : (b != b ? b : (a > b ? a : b));
  }
};

}  // namespace lumen::kernels
