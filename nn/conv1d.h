#pragma once
// Conv1d: 1-D convolution (cross-correlation) over [N, C, L], as torch.nn.Conv1d with
// padding_mode "zeros" (functional::conv1d: conv2d over a height of one).
#include <cstdint>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

struct Conv1dOptions {
  int64_t stride = 1;
  int64_t padding = 0;
  int64_t dilation = 1;
  int64_t groups = 1;
  bool bias = true;
};

class Conv1d : public UnaryModule {
 public:
  // weight [out, in / groups, kernel] and bias [out] start as PyTorch's: kaiming_uniform_
  // (a = sqrt(5)) and U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = in / groups * kernel.
  Conv1d(int64_t in_channels, int64_t out_channels, int64_t kernel_size,
         Conv1dOptions options = {});

  // x [N, in, L] or [in, L] -> [N, out, OL], OL = (L + 2 padding - dilation (k - 1) - 1) /
  // stride + 1.
  Tensor forward(const Tensor& x) override;
  void reset_parameters();

  std::string type_name() const override { return "Conv1d"; }
  // "3, 16, kernel_size=(3,), stride=(1,)": padding, dilation, groups and bias only when not
  // the default, as in PyTorch.
  std::string extra_repr() const override;

  const int64_t in_channels, out_channels, kernel_size, stride, padding, dilation, groups;
  Tensor weight, bias;  // bias undefined without one
};

}  // namespace lumen::nn
