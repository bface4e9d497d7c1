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

}  // namespace lumen::nn::functional
