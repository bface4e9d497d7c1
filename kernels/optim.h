#pragma once
// Fused optimizer updates: one pass over each parameter reads its gradient and state and
// writes the new parameter and state, where the same update from tensor ops makes several
// passes and temporaries. One call updates a list of parameters that share the arguments (the
// front-ends in nn/optim/ group them; a CUDA call is one launch for up to dozens of tensors).
// Contract: every tensor contiguous, on one device, of one dtype (f32 or f64), and each state
// tensor of its parameter's shape; the front-ends fall back to tensor ops otherwise.
// Arithmetic is in the parameter's dtype with the scalars cast to it, in PyTorch's order of
// operations (kernels/optim_update.h).
//
// `low_copies` (one per parameter, may be empty): undefined, or the parameter's 16-bit copy
// that autocast keeps for mixed precision (autograd/autocast_mode.h), contiguous, of the
// parameter's shape, all of one dtype (f16 or bf16) in a call. The update writes it as it
// writes the parameter (copy = round(p_new)), so the next forward reads 16-bit weights without
// a cast pass of its own.
#include <vector>

#include "kernels/dispatch.h"

namespace lumen::kernels {

// torch.optim.SGD for one parameter p with gradient g:
//   d = (maximize ? -g : g) + weight_decay * p
//   if momentum != 0: buf = first ? d : momentum * buf + (1 - dampening) * d
//                     d = nesterov ? d + momentum * buf : buf
//   p = p - lr * d
// `momentum_buffers` is unused (may be empty) when momentum == 0.
struct SgdStepArgs {
  double lr = 0, momentum = 0, dampening = 0, weight_decay = 0;
  bool nesterov = false, maximize = false;
  bool first = false;  // the buffer is initialised to d (PyTorch: clone of the first d)
};
inline constinit OpKernel<void(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                               const std::vector<Tensor>& momentum_buffers,
                               const std::vector<Tensor>& low_copies, SgdStepArgs)>
    sgd_step{"sgd_step"};

// torch.optim.Adam / AdamW for one parameter p with gradient g at step t:
//   g = maximize ? -g : g
//   decoupled (AdamW): p = p * (1 - lr * weight_decay)   else: g = g + weight_decay * p
//   m = lerp(m, g, 1 - beta1)                 (= beta1 m + (1 - beta1) g)
//   v = beta2 v + (1 - beta2) g^2
//   amsgrad: v_max = max(v_max, v), v_hat = v_max;   else v_hat = v
//   p = p - step_size * m / (sqrt(v_hat) / bias_correction2_sqrt + eps)
// with step_size = lr / (1 - beta1^t), bias_correction2_sqrt = sqrt(1 - beta2^t) computed in
// f64 by the caller. `max_exp_avg_sqs` is unused (may be empty) without amsgrad.
struct AdamStepArgs {
  double lr = 0, beta1 = 0, beta2 = 0, eps = 0, weight_decay = 0;
  double step_size = 0, bias_correction2_sqrt = 1;
  bool decoupled_weight_decay = false, amsgrad = false, maximize = false;
};
inline constinit OpKernel<void(const std::vector<Tensor>& params, const std::vector<Tensor>& grads,
                               const std::vector<Tensor>& exp_avgs,
                               const std::vector<Tensor>& exp_avg_sqs,
                               const std::vector<Tensor>& max_exp_avg_sqs,
                               const std::vector<Tensor>& low_copies, AdamStepArgs)>
    adam_step{"adam_step"};

// GradScaler's unscale and inf/NaN check over all gradients in one call (torch's
// _amp_foreach_non_finite_check_and_unscale_): for every element of every gradient
//   found_inf = 1        if g is inf or NaN (otherwise found_inf is left as it was)
//   g         = g * inv_scale
// Gradients: contiguous, one device, f32/f64/f16/bf16 (dtypes may differ). found_inf: a
// one-element f32 tensor on that device, so the check never waits for the device; the caller
// reads it once, when it decides whether to step.
inline constinit OpKernel<void(const std::vector<Tensor>& grads, double inv_scale,
                               const Tensor& found_inf)>
    unscale_grads{"unscale_grads"};

// The p-norm's inner part over a list of tensors, for clip_grad_norm_ (torch's
// _foreach_norm + the sum over them): for p = inf
//   out = max over every element x of every tensor of |x|   (NaN wins)
// otherwise
//   out = sum over every element x of every tensor of |x|^p
// accumulated in f64 in a fixed order (the same result on every run). Tensors: contiguous, one
// device, f32/f64/f16/bf16 (dtypes may differ); out: a one-element f64 tensor on that device,
// overwritten (0 for no elements). CUDA: one launch per 48 tensors and one to finish.
inline constinit OpKernel<void(const Tensor& out, const std::vector<Tensor>& tensors, double p)>
    norm_power_sum{"norm_power_sum"};

}  // namespace lumen::kernels
