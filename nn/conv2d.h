#pragma once
// Conv2d: 2-D convolution (cross-correlation) over [N, C, H, W], as torch.nn.Conv2d with
// padding_mode "zeros".
#include <cstdint>
#include <string>

#include "nn/int_pair.h"
#include "nn/module.h"

namespace lumen::nn {

struct Conv2dOptions {
  IntPair stride = 1;
  IntPair padding = 0;
  IntPair dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv2d : public UnaryModule {
 public:
  // weight [out, in / groups, kH, kW] and bias [out] start as PyTorch's: kaiming_uniform_
  // (a = sqrt(5)) and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups * kH * kW.
  //   Conv2d(3, 16, 3, {.padding = 1})
  Conv2d(int64_t in_channels, int64_t out_channels, IntPair kernel_size,
         Conv2dOptions options = {});

  // x [N, in, H, W] or [in, H, W] -> [N, out, OH, OW] with
  // OH = (H + 2 padding - dilation (kH - 1) - 1) / stride + 1, likewise OW.
  Tensor forward(const Tensor& x) override;
  void reset_parameters();

  std::string type_name() const override { return "Conv2d"; }
  // "3, 16, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1)": padding, dilation, groups and
  // bias appear only when not the default, as in PyTorch.
  std::string extra_repr() const override;

  const int64_t in_channels, out_channels;
  const IntPair kernel_size, stride, padding, dilation;
  const int64_t groups;
  Tensor weight, bias;  // bias undefined without one
};

}  // namespace lumen::nn
