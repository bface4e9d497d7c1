#pragma once
// Loss kernels. The caller checks arguments and passes contiguous tensors (pos_weight excepted:
// it may be a broadcast view); kernels only compute. Dtypes f32, f64, f16, bf16, computed in
// acc_t.
#include "kernels/dispatch.h"

namespace lumen::kernels {

// Cross entropy with class-index targets, log-softmax fused in.
// logits [N, C, S...] (class dim 1; S = product of the trailing dims, 1 for [N, C]),
// target i64 [N, S...] with values in [0, C) or == ignore_index (the caller has checked).
// Per sample, with lse = log sum_c exp(x_c) and smoothing e:
//   loss = (1 - e) (lse - x_y) + e/C sum_c (lse - x_c) = lse - (1 - e) x_y - e mean_c x_c
// and 0 where y == ignore_index. `loss` has target's shape and logits' dtype, or f32 for
// 16-bit logits (autocast: the 16-bit logits are read as they are, no f32 copy is made); `lse`
// has target's shape and dtype acc_t (saved for the backward).
inline constinit OpKernel<void(const Tensor& loss, const Tensor& lse, const Tensor& logits,
                               const Tensor& target, int64_t ignore_index, double smoothing)>
    cross_entropy{"cross_entropy"};
// d loss / d x_c = softmax_c - (1 - e) [c == y] - e/C, times the sample's incoming gradient
// grad_loss (target's shape, the loss's dtype); 0 for ignored samples. grad_logits has logits'
// dtype.
inline constinit OpKernel<void(const Tensor& grad_logits, const Tensor& grad_loss,
                               const Tensor& logits, const Tensor& target, const Tensor& lse,
                               int64_t ignore_index, double smoothing)>
    cross_entropy_backward{"cross_entropy_backward"};

// Binary cross entropy on logits x with targets y and optional pos_weight p (undefined: 1),
// elementwise, in the overflow-free form (sp(z) = log(1 + exp(z)) = max(z, 0) + log1p(e^-|z|)):
//   l = (1 - y) x + (1 + (p - 1) y) sp(-x)
// which for p = 1 is max(x, 0) - x y + log1p(exp(-|x|)). x, y, out share one shape; p
// broadcasts to it.
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, const Tensor& y,
                               const Tensor& pos_weight)>
    bce_logits{"bce_logits"};
// With w = 1 + (p - 1) y:
//   dl/dx = (1 - y) - w sigmoid(-x)
//   dl/dy = -x + (p - 1) sp(-x)
//   dl/dp = y sp(-x)
// each times grad_out. grad_x, grad_y, grad_pos_weight (all x's shape; the caller sums the last
// to p's shape) may be undefined when not needed.
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_y,
                               const Tensor& grad_pos_weight, const Tensor& grad_out,
                               const Tensor& x, const Tensor& y, const Tensor& pos_weight)>
    bce_logits_backward{"bce_logits_backward"};

}  // namespace lumen::kernels
