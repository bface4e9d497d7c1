#include "nn/optim/clip_grad.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "kernels/optim.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/index.h"
#include "nn/functional/reduction.h"

namespace lumen::optim {

Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type,
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
  if (grads.empty()) return scalar_tensor(0.0, {.dtype = DType::f64});
  const bool inf_norm = std::isinf(norm_type);
  // sum |g|^p (max |g| for p = inf) over every gradient: one fused kernel per device, in f64.
  // Nothing comes back to the host: on a GPU the step goes on without waiting.
  const Device home = grads.front().device();
  std::vector<Device> devices;
  for (const Tensor& g : grads)
    if (std::find(devices.begin(), devices.end(), g.device()) == devices.end())
      devices.push_back(g.device());
  std::vector<Tensor> parts;
  for (Device dev : devices) {
    std::vector<Tensor> on_dev;
    for (const Tensor& g : grads)
      if (g.device() == dev) on_dev.push_back(g.contiguous());
    Tensor part = empty({1}, {DType::f64, dev});
    kernels::norm_power_sum(dev, part, on_dev, norm_type);
    parts.push_back(part.to(home));
  }
  Tensor acc = parts.size() == 1 ? parts[0] : cat(parts);
  acc = parts.size() == 1 ? acc.reshape({}) : inf_norm ? acc.max() : acc.sum();
  const Tensor total = inf_norm || norm_type == 1 ? acc
                       : norm_type == 2           ? acc.sqrt()
                                                  : pow(acc, 1.0 / norm_type);
  if (error_if_nonfinite) {  // the one case that reads the norm on the host, as in PyTorch
    const double t = total.item();
    LUMEN_CHECK(std::isfinite(t), "clip_grad_norm_: the total norm of order ", norm_type,
                " for gradients from `parameters` is non-finite (", t,
                "), so it cannot be clipped. To disable this error and scale the gradients by "
                "the non-finite norm anyway, set error_if_nonfinite = false");
  }
  // coef = min(max_norm / (total + 1e-6), 1) (NaN passes through, as PyTorch's clamp); every
  // gradient is multiplied, by 1 when under max_norm (which leaves it as it was).
  const Tensor coef = clamp(max_norm / (total + 1e-6), std::nullopt, 1.0);
  std::vector<Tensor> coefs;  // coef on each gradient's device and in its dtype, made once
  for (const Tensor& g : grads) {
    auto it = std::find_if(coefs.begin(), coefs.end(), [&](const Tensor& c) {
      return c.device() == g.device() && c.dtype() == g.dtype();
    });
    if (it == coefs.end()) it = coefs.insert(coefs.end(), coef.to(g.device()).to(g.dtype()));
    g.mul_(*it);
  }
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
