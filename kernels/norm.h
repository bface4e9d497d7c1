#pragma once
// Normalisation kernels. The caller passes contiguous tensors; x's dtype is T (f32, f64, f16,
// bf16), per-row or per-channel statistics have dtype acc_t<T> (f32 for the 16-bit types),
// weight and bias have dtype T and may be undefined (meaning 1 and 0).
#include "kernels/dispatch.h"

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

// Batch statistics of x [N, C, S...] per channel c over the M = N * S elements:
//   mean_c = sum x / M, var_c = sum (x - mean_c)^2 / M (biased)
// mean and var are [C].
inline constinit OpKernel<void(const Tensor& mean, const Tensor& var, const Tensor& x)>
    batch_norm_stats{"batch_norm_stats"};
// y = (x - mean_c) invstd_c w_c + b_c, x and y [N, C, S...], mean and invstd [C].
inline constinit OpKernel<void(const Tensor& y, const Tensor& x, const Tensor& mean,
                               const Tensor& invstd, const Tensor& weight, const Tensor& bias)>
    batch_norm_apply{"batch_norm_apply"};
// xhat = (x - mean_c) invstd_c; per channel, sums over the M = N * S elements:
//   dw_c = sum dy xhat, db_c = sum dy
//   training (mean and invstd came from this batch, so they depend on x):
//     dx = w invstd (dy - db_c / M - xhat dw_c / M)
//   eval (running statistics, constants):
//     dx = w invstd dy
// grad_weight and grad_bias have dtype T; any output may be undefined when not needed.
inline constinit OpKernel<void(
    const Tensor& grad_x, const Tensor& grad_weight, const Tensor& grad_bias, const Tensor& grad_y,
    const Tensor& x, const Tensor& mean, const Tensor& invstd, const Tensor& weight, bool training)>
    batch_norm_backward{"batch_norm_backward"};

}  // namespace lumen::kernels
