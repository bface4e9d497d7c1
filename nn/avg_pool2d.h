#pragma once
// AvgPool2d: the mean over sliding windows of [N, C, H, W] or [C, H, W], as torch.nn.AvgPool2d
// (floor mode).
#include <optional>
#include <string>

#include "nn/int_pair.h"
#include "nn/module.h"

namespace lumen::nn {

struct AvgPool2dOptions {
  // Default: kernel_size. Two sizes are spelt .stride = IntPair{2, 1}.
  std::optional<IntPair> stride = std::nullopt;
  IntPair padding = 0;            // at most half the kernel; counts as zeros
  bool count_include_pad = true;  // divide by the whole window, padding included
};

class AvgPool2d : public UnaryModule {
 public:
  explicit AvgPool2d(IntPair kernel_size, AvgPool2dOptions options = {});

  // OH = (H + 2 padding - kH) / stride + 1, likewise OW.
  Tensor forward(const Tensor& x) override;

  std::string type_name() const override { return "AvgPool2d"; }
  std::string extra_repr() const override;  // "kernel_size=2, stride=2, padding=0"

  const IntPair kernel_size, stride, padding;
  const bool count_include_pad;
};

}  // namespace lumen::nn
