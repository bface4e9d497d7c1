#include "nn/optim/clip_grad.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/index.h"
#include "nn/functional/reduction.h"

namespace lumen::optim {

double clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type,
                       bool error_if_nonfinite) {
  LUMEN_CHECK(norm_type > 0, "clip_grad_norm_: norm_type must be positive or infinity, got ",
              norm_type);
  LUMEN_CHECK(max_norm >= 0, "clip_grad_norm_: max_norm must be >= 0, got ", max_norm);
  NoGradGuard no_grad;
  std::vector<Tensor> grads;
  for (const Tensor& p : params) {
    LUMEN_CHECK(p.defined(), "clip_grad_norm_: got an undefined parameter");
    if (p.grad().defined()) grads.push_back(p.grad());
  }
  if (grads.empty()) return 0.0;
  const bool inf_norm = std::isinf(norm_type);
  // Each gradient's contribution is reduced in its own dtype (as torch's vector_norm), the
  // contributions are combined in f64. They come back to the host together (one wait for a
  // GPU, not one per parameter) when they live on one device.
  std::vector<Tensor> parts;
  for (const Tensor& g : grads) {
    if (g.numel() == 0) continue;
    Tensor part = inf_norm         ? abs(g).max()
                  : norm_type == 2 ? sum(g * g)
                  : norm_type == 1 ? sum(abs(g))
                                   : sum(pow(abs(g), norm_type));
    parts.push_back(part);
  }
  const std::vector<double> values = scalar_values(parts);
  double acc = 0;
  for (double v : values) acc = inf_norm ? std::max(acc, v) : acc + v;
  const double total = inf_norm         ? acc
                       : norm_type == 2 ? std::sqrt(acc)
                       : norm_type == 1 ? acc
                                        : std::pow(acc, 1.0 / norm_type);
  LUMEN_CHECK(!error_if_nonfinite || std::isfinite(total), "clip_grad_norm_: the total norm of ",
              "order ", norm_type, " for gradients from `parameters` is non-finite (", total,
              "), so it cannot be clipped. To disable this error and scale the gradients by the ",
              "non-finite norm anyway, set error_if_nonfinite = false");
  const double coef = max_norm / (total + 1e-6);
  // PyTorch multiplies by min(coef, 1); a coefficient of 1 changes nothing, so skip it. NaN
  // (a NaN total) still multiplies, as PyTorch's clamp passes NaN through.
  if (!(coef >= 1.0))
    for (const Tensor& g : grads) g.mul_(coef);
  return total;
}

void clip_grad_value_(const std::vector<Tensor>& params, double clip_value) {
  LUMEN_CHECK(clip_value >= 0, "clip_grad_value_: clip_value must be >= 0, got ", clip_value);
  NoGradGuard no_grad;
  for (const Tensor& p : params) {
    LUMEN_CHECK(p.defined(), "clip_grad_value_: got an undefined parameter");
    const Tensor g = p.grad();
    if (g.defined()) g.copy_(clamp(g, -clip_value, clip_value));
  }
}

}  // namespace lumen::optim
