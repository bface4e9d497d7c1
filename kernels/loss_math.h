#pragma once
// Per-element loss math of kernels/loss.h, defined once for every backend (kernels/cpu/loss.cpp,
// kernels/cuda/loss.cu). A is the accumulation type.
#include <cmath>

#include "kernels/elementwise_ops.h"
#include "kernels/simd_math.h"
#include "tensor/half.h"

namespace lumen::kernels::loss_math {

// sp(z) = log(1 + e^z) for z = -x, as max(-x, 0) + log1p(e^-|x|): the exp never overflows.
template <class A>
LUMEN_HD A softplus_neg(A x) {
  using math::exp, math::log1p, std::abs;
  return (-x > A(0) ? -x : A(0)) + log1p(exp(-abs(x)));
}

// sigmoid(-x), by the elementwise op's overflow-free form.
template <class A>
LUMEN_HD A sigmoid_neg(A x) {
  return ew::Sigmoid{}(-x);
}

// BCE with logits x, target y, pos_weight p: l = (1 - y) x + (1 + (p - 1) y) sp(-x).
template <class A>
LUMEN_HD A bce_logits(A x, A y, A p) {
  A w = A(1) + (p - A(1)) * y;
  return (A(1) - y) * x + w * softplus_neg(x);
}

// Its gradients times g (kernels/loss.h): dl/dx, and dl/dy, dl/dp only when `targets` asks
// for them (they cost a log1p and an exp that dl/dx does not need; 0 otherwise).
template <class A>
struct BceGrads {
  A x, y, p;
};
template <class A>
LUMEN_HD BceGrads<A> bce_logits_grads(A g, A x, A y, A p, bool targets) {
  BceGrads<A> d{g * ((A(1) - y) - (A(1) + (p - A(1)) * y) * sigmoid_neg(x)), A(0), A(0)};
  if (targets) {
    const A sp = softplus_neg(x);
    d.y = g * (-x + (p - A(1)) * sp);
    d.p = g * y * sp;
  }
  return d;
}

// Cross entropy's gradient for class c of a sample with log-sum-exp lse, target class y and
// smoothing e over C classes: softmax_c - (1 - e) [c == y] - e / C (`off` = e / C).
template <class A>
LUMEN_HD A cross_entropy_grad(A x_c, A lse, bool is_target, A e, A off) {
  using math::exp;
  A p = exp(x_c - lse) - off;
  if (is_target) p -= A(1) - e;
  return p;
}

}  // namespace lumen::kernels::loss_math
