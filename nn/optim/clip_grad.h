#pragma once
// Gradient clipping, as torch.nn.utils.clip_grad_norm_ and clip_grad_value_. Parameters
// without a gradient are skipped.
#include <vector>

#include "tensor/tensor.h"

namespace lumen::optim {

// Scales all gradients together so that their total norm is at most max_norm:
//   total = (sum over gradients g of ||g||_p^p)^(1/p)   (p = inf: the largest |element|)
//   coef = min(max_norm / (total + 1e-6), 1);  every g *= coef
// The sum is one fused kernel over all gradients (kernels::norm_power_sum, f64). A non-finite
// total scales by NaN or 0 as PyTorch does, or, with error_if_nonfinite, throws. Returns the
// total norm before clipping as a 0-d f64 tensor on the gradients' device, as PyTorch returns a
// tensor: nothing waits for the device unless error_if_nonfinite (or the caller's .item()).
// 0 (on the CPU) when no parameter has a gradient. norm_type is a positive p or infinity;
// max_norm >= 0.
Tensor clip_grad_norm_(const std::vector<Tensor>& params, double max_norm, double norm_type = 2.0,
                       bool error_if_nonfinite = false);

// Clamps every gradient element to [-clip_value, clip_value]; clip_value >= 0.
void clip_grad_value_(const std::vector<Tensor>& params, double clip_value);

}  // namespace lumen::optim
