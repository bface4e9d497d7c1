#pragma once
// Convolution with autograd.
#include <array>
#include <cstdint>

#include "tensor/tensor.h"

namespace lumen::nn::functional {

// (height, width) pairs of sizes, strides, paddings, dilations.
using Size2 = std::array<int64_t, 2>;

// 2-D convolution (cross-correlation, as torch.nn.functional.conv2d): x [N, Cin, H, W] or
// unbatched [Cin, H, W], weight [Cout, Cin/groups, kH, kW], bias [Cout] or an undefined Tensor
// for none. Gives [N, Cout, OH, OW] with OH = (H + 2 pad_h - dil_h (kH - 1) - 1) / stride_h + 1
// (likewise OW). Input and output channels are split into `groups` independent groups.
Tensor conv2d(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, Size2 stride = {1, 1},
              Size2 padding = {0, 0}, Size2 dilation = {1, 1}, int64_t groups = 1);

// 1-D convolution, as torch.nn.functional.conv1d: x [N, Cin, L] or unbatched [Cin, L], weight
// [Cout, Cin/groups, K], bias [Cout] or undefined. Gives [N, Cout, OL] with
// OL = (L + 2 padding - dilation (K - 1) - 1) / stride + 1. It is conv2d over a height of one
// (x [N, Cin, 1, L], weight [Cout, Cin/groups, 1, K]), so every backend's conv2d kernels and
// backward serve it.
Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias = {}, int64_t stride = 1,
              int64_t padding = 0, int64_t dilation = 1, int64_t groups = 1);

}  // namespace lumen::nn::functional
