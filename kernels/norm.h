#pragma once
// Normalisation kernels. The caller passes contiguous tensors; x's dtype is T (f32, f64, f16,
// bf16), per-row or per-channel statistics have dtype acc_t<T> (f32 for the 16-bit types),
// weight and bias have dtype T and may be undefined (meaning 1 and 0).
#include <cmath>

#include "kernels/dispatch.h"
#include "tensor/half.h"

namespace lumen::kernels {

// Layer norm over the last D elements of x, seen as [M, D]:
//   mean = sum_j x_j / D, var = sum_j (x_j - mean)^2 / D (biased), rstd = 1 / sqrt(var + eps)
//   xhat = (x - mean) rstd, y = xhat w + b
// mean and rstd ([M]) are saved for the backward. y, weight and bias have x's dtype, or all f32
// for a 16-bit x (autocast: the input is read in 16 bits, everything else is f32); the
// backward's grad_y, grad_weight and grad_bias then are f32 too, grad_x x's dtype.
inline constinit OpKernel<void(const Tensor& y, const Tensor& mean, const Tensor& rstd,
                               const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t D,
                               double eps)>
    layer_norm{"layer_norm"};
// With g = dy w (dy where w is undefined) and row means <.> over the D elements:
//   dx = rstd (g - <g> - xhat <g xhat>)
//   dw = sum over rows of dy xhat, db = sum over rows of dy
// grad_x, grad_weight, grad_bias may be undefined when not needed.
inline constinit OpKernel<void(
    const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias, const Tensor& grad_y,
    const Tensor& x, const Tensor& mean, const Tensor& rstd, const Tensor& weight, int64_t D)>
    layer_norm_backward{"layer_norm_backward"};

// Training-mode batch norm of x [N, C, S...]: statistics per channel c over the M = N S
// elements,
//   mean_c = sum x / M, var_c = sum (x - mean_c)^2 / M (biased), invstd_c = 1 / sqrt(var_c + eps)
//   y = (x - mean_c) invstd_c w_c + b_c
// mean and invstd ([C], acc_t<T>) are saved for the backward. The running statistics ([C],
// acc_t<T>: f32 for a 16-bit x, as the buffers of a mixed model are; both undefined when not
// tracked) move by momentum, the variance unbiased as in PyTorch:
//   running_mean = (1 - momentum) running_mean + momentum mean_c
//   running_var  = (1 - momentum) running_var  + momentum var_c M / (M - 1)
inline constinit OpKernel<void(const Tensor& y, const Tensor& mean, const Tensor& invstd,
                               const Tensor& running_mean, const Tensor& running_var,
                               const Tensor& x, const Tensor& weight, const Tensor& bias,
                               double momentum, double eps)>
    batch_norm_training{"batch_norm_training"};
// The per-channel tail of batch_norm_training, shared by the backends' own kernels: var is
// replaced by invstd, the running statistics move when given.
template <class A>
LUMEN_HD void batch_norm_finish_channel(A mean, A& var_to_invstd, A* running_mean, A* running_var,
                                        int64_t count, double momentum, double eps) {
  if (running_mean) {
    const A m = A(momentum), unbias = A(double(count) / double(count - 1));
    *running_mean = *running_mean * (A(1) - m) + m * mean;
    *running_var = *running_var * (A(1) - m) + m * unbias * var_to_invstd;
  }
  using std::sqrt;
  var_to_invstd = A(1) / sqrt(var_to_invstd + A(eps));
}
// Eval-mode batch norm with given statistics: y = (x - mean_c) invstd_c w_c + b_c, x and y
// [N, C, S...], mean and invstd [C].
inline constinit OpKernel<void(const Tensor& y, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const Tensor& weight, const Tensor& bias)>
    batch_norm_apply{"batch_norm_apply"};
// xhat = (x - mean_c) invstd_c; per channel, sums over the M = N * S elements:
//   dw_c = sum dy xhat, db_c = sum dy
//   training (mean and invstd came from this batch, so they depend on x):
//     dx = w invstd (dy - db_c / M - xhat dw_c / M)
//   eval (running statistics, constants):
//     dx = w invstd dy
// grad_weight and grad_bias have dtype T; any output may be undefined when not needed. eps is
// the forward's (a backend may recompute invstd from it).
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_weight,
                               const Tensor& grad_bias, const Tensor& grad_y, const Tensor& x,
                               const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                               bool training, double eps)>
    batch_norm_backward{"batch_norm_backward"};

}  // namespace lumen::kernels
