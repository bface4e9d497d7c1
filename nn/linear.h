#pragma once
// Linear: y = x W^T + b, as torch.nn.Linear.
#include <cstdint>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

struct LinearOptions {
  bool bias = true;
};

class Linear : public UnaryModule {
 public:
  // weight [out, in] and bias [out] start as PyTorch's: kaiming_uniform_(a = sqrt(5)), which
  // is U(-1/sqrt(in), 1/sqrt(in)), and the bias U(-1/sqrt(in), 1/sqrt(in)).
  Linear(int64_t in_features, int64_t out_features, LinearOptions options = {});

  // x [..., in] -> [..., out].
  Tensor forward(const Tensor& x) override;
  void reset_parameters();

  std::string type_name() const override { return "Linear"; }
  std::string extra_repr() const override;  // "in_features=784, out_features=256, bias=True"

  const int64_t in_features, out_features;
  Tensor weight, bias;  // bias undefined without one
};

}  // namespace lumen::nn
