#pragma once
// 2-D pooling over the last two dims of contiguous tensors (every leading dim is a separate
// plane, so [N, C, H, W] and [C, H, W] are both N C planes of H x W). The caller
// (nn/functional/pool.cpp) checks the window against the input and allocates outputs; kernels
// only compute.
#include "kernels/dispatch.h"
#include "tensor/half.h"

namespace lumen::kernels {

struct Pool2dParams {
  int64_t kernel_h, kernel_w;
  int64_t stride_h, stride_w;
  int64_t pad_h = 0, pad_w = 0;
  int64_t dilation_h = 1, dilation_w = 1;  // max pooling only
  bool count_include_pad = true;           // average pooling only
};

// out[p, i, j] = max over the window's in-image taps x[p, i sh - ph + a dh, j sw - pw + b dw]
// (padding is -inf: it never wins); indices[p, i, j] (i64) = the winner's flat index ih W + iw
// in its plane, the first one on ties. NaN wins (the last NaN), as in PyTorch.
inline constinit OpKernel<void(const Tensor& out, const Tensor& indices, const Tensor& x,
                               Pool2dParams)>
    max_pool2d{"max_pool2d"};
// grad_x (overwritten) [p, ih W + iw] = sum of grad_out over the outputs whose index names it.
// The window parameters are the forward's (a backend may use them to find those outputs).
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_out, const Tensor& indices,
                               Pool2dParams)>
    max_pool2d_backward{"max_pool2d_backward"};

// out[p, i, j] = (sum of the window's in-image taps) / divisor, where the divisor counts the
// window clipped to the padded image (count_include_pad) or to the image itself.
// The window of average-pooling output (i, j) over an H x W plane, clipped to the image: rows
// [h0, h1), cols [w0, w1), and its divisor (shared by every backend).
struct AvgWindow {
  int64_t h0, h1, w0, w1, divisor;
  LUMEN_HD AvgWindow(int64_t i, int64_t j, int64_t H, int64_t W, const Pool2dParams& p) {
    h0 = i * p.stride_h - p.pad_h;
    w0 = j * p.stride_w - p.pad_w;
    h1 = h0 + p.kernel_h < H + p.pad_h ? h0 + p.kernel_h : H + p.pad_h;
    w1 = w0 + p.kernel_w < W + p.pad_w ? w0 + p.kernel_w : W + p.pad_w;
    const int64_t padded = (h1 - h0) * (w1 - w0);
    h0 = h0 > 0 ? h0 : 0;
    w0 = w0 > 0 ? w0 : 0;
    h1 = h1 < H ? h1 : H;
    w1 = w1 < W ? w1 : W;
    divisor = p.count_include_pad ? padded : (h1 - h0) * (w1 - w0);
  }
};

inline constinit OpKernel<void(const Tensor& out, const Tensor& x, Pool2dParams)> avg_pool2d{
    "avg_pool2d"};
// grad_x (overwritten) = each grad_out / its divisor, spread over its window's in-image taps.
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_out, Pool2dParams)>
    avg_pool2d_backward{"avg_pool2d_backward"};

}  // namespace lumen::kernels
