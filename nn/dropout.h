#pragma once
// Dropout (Srivastava et al., 2014), as torch.nn.Dropout: in training, zeroes each element
// with probability p and scales the rest by 1 / (1 - p); in eval, the identity.
#include <string>

#include "nn/module.h"

namespace lumen::nn {

class Dropout : public UnaryModule {
 public:
  explicit Dropout(double p = 0.5);  // p in [0, 1]

  Tensor forward(const Tensor& x) override;  // masks drawn from the global generator

  std::string type_name() const override { return "Dropout"; }
  // "p=0.5, inplace=False" (PyTorch's text; Lumen's Dropout is never in place).
  std::string extra_repr() const override;

  const double p;
};

}  // namespace lumen::nn
