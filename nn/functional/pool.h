#pragma once
// 2-D pooling with autograd, as torch.nn.functional (floor mode).
#include <array>
#include <cstdint>
#include <optional>

#include "tensor/tensor.h"

namespace lumen::nn::functional {

using Size2 = std::array<int64_t, 2>;  // (height, width)

// Max over windows of x [N, C, H, W] or [C, H, W]; stride defaults to the kernel size. Padding
// (at most half the kernel) counts as -inf. Output size per dim:
// (H + 2 pad - dil (k - 1) - 1) / stride + 1.
Tensor max_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride = std::nullopt,
                  Size2 padding = {0, 0}, Size2 dilation = {1, 1});

// Mean over windows; padding counts as zeros, and the divisor counts the padding too when
// count_include_pad (as PyTorch), else only the taps inside the image.
Tensor avg_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride = std::nullopt,
                  Size2 padding = {0, 0}, bool count_include_pad = true);

}  // namespace lumen::nn::functional
