#pragma once
// 2-D convolution, NCHW. The caller (nn/functional/conv.cpp) checks shapes, allocates outputs
// and passes contiguous tensors of one floating dtype; kernels only compute.
#include "kernels/dispatch.h"

namespace lumen::kernels {

struct Conv2dParams {
  int64_t stride_h = 1, stride_w = 1;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;
  int64_t groups = 1;
};

// out [N, Cout, OH, OW] from x [N, Cin, H, W], w [Cout, Cin/groups, kH, kW] and bias [Cout]
// (undefined for none):
//   out[n, o, i, j] = bias[o] + sum_{c, p, q} w[o, c, p, q]
//                       * x[n, g Cin/groups + c, i sh - ph + p dh, j sw - pw + q dw]
// with g = o / (Cout/groups) and x zero outside the image.
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, const Tensor& w,
                               const Tensor& bias, Conv2dParams)>
    conv2d{"conv2d"};
// grad_x (overwritten, x's shape) = d<out, grad_out>/dx for weight w.
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_out, const Tensor& w,
                               Conv2dParams)>
    conv2d_backward_input{"conv2d_backward_input"};
// grad_w (overwritten, w's shape) = d<out, grad_out>/dw for input x.
inline constinit OpKernel<void(const Tensor& grad_w, const Tensor& grad_out, const Tensor& x,
                               Conv2dParams)>
    conv2d_backward_weight{"conv2d_backward_weight"};

}  // namespace lumen::kernels
