#pragma once
// Softmax kernels. The caller passes contiguous tensors of one shape and a dim already in
// [0, ndim) (0 for a 0-d tensor); `log` picks log-softmax. Dtypes f32, f64, f16, bf16, computed
// in acc_t.
#include "kernels/dispatch.h"

namespace lumen::kernels {

// softmax:     y_i = exp(x_i - m) / sum_j exp(x_j - m),   m = max_j x_j
// log_softmax: y_i = x_i - m - log sum_j exp(x_j - m)
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, int64_t dim, bool log)> softmax{
    "softmax"};
// softmax:     dx_i = y_i (dy_i - sum_j dy_j y_j)
// log_softmax: dx_i = dy_i - exp(y_i) sum_j dy_j
// (y is the forward's output)
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_out, const Tensor& out,
                               int64_t dim, bool log)>
    softmax_backward{"softmax_backward"};

}  // namespace lumen::kernels
