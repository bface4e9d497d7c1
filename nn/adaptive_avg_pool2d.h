#pragma once
// AdaptiveAvgPool2d: averages [N, C, H, W] or [C, H, W] down to a fixed output size, as
// torch.nn.AdaptiveAvgPool2d. Output cell (i, j) is the mean of rows [floor(i H / OH),
// ceil((i + 1) H / OH)) and columns [floor(j W / OW), ceil((j + 1) W / OW)).
#include <string>

#include "nn/int_pair.h"
#include "nn/module.h"

namespace lumen::nn {

class AdaptiveAvgPool2d : public UnaryModule {
 public:
  explicit AdaptiveAvgPool2d(IntPair output_size);

  Tensor forward(const Tensor& x) override;

  std::string type_name() const override { return "AdaptiveAvgPool2d"; }
  std::string extra_repr() const override;  // "output_size=(1, 1)" (as given)

  const IntPair output_size;
};

}  // namespace lumen::nn
