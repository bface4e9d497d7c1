#pragma once
// MaxPool2d: the max over sliding windows of [N, C, H, W] or [C, H, W], as torch.nn.MaxPool2d
// (floor mode, no indices).
#include <optional>
#include <string>

#include "nn/int_pair.h"
#include "nn/module.h"

namespace lumen::nn {

struct MaxPool2dOptions {
  // Default: kernel_size. Two sizes are spelt .stride = IntPair{2, 1}.
  std::optional<IntPair> stride = std::nullopt;
  IntPair padding = 0;  // at most half the kernel; counts as -inf
  IntPair dilation = 1;
};

class MaxPool2d : public UnaryModule {
 public:
  explicit MaxPool2d(IntPair kernel_size, MaxPool2dOptions options = {});

  // OH = (H + 2 padding - dilation (kH - 1) - 1) / stride + 1, likewise OW.
  Tensor forward(const Tensor& x) override;

  std::string type_name() const override { return "MaxPool2d"; }
  // "kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False" (sizes as given).
  std::string extra_repr() const override;

  const IntPair kernel_size, stride, padding, dilation;
};

}  // namespace lumen::nn
