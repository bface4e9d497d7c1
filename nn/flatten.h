#pragma once
// Flatten: merges dims start_dim..end_dim into one, as torch.nn.Flatten (the default keeps the
// batch dim: [N, C, H, W] -> [N, C H W]).
#include <cstdint>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

class Flatten : public UnaryModule {
 public:
  explicit Flatten(int64_t start_dim = 1, int64_t end_dim = -1)
      : start_dim(start_dim), end_dim(end_dim) {}

  Tensor forward(const Tensor& x) override;  // a view when the strides allow

  std::string type_name() const override { return "Flatten"; }
  std::string extra_repr() const override;  // "start_dim=1, end_dim=-1"

  const int64_t start_dim, end_dim;
};

}  // namespace lumen::nn
