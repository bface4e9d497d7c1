#pragma once
// The activation layers, as torch.nn's ReLU, LeakyReLU, GELU, SiLU, Tanh and Sigmoid.
#include <string>

#include "nn/module.h"

namespace lumen::nn {

// max(x, 0).
class ReLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "ReLU"; }
};

// x for x > 0, negative_slope * x otherwise.
class LeakyReLU : public UnaryModule {
 public:
  explicit LeakyReLU(double negative_slope = 0.01);
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "LeakyReLU"; }
  std::string extra_repr() const override;  // "negative_slope=0.2"
  const double negative_slope;
};

struct GELUOptions {
  // "none": x Phi(x) with the normal CDF Phi (erf); "tanh": Hendrycks & Gimpel's
  // 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))).
  std::string approximate = "none";
};

class GELU : public UnaryModule {
 public:
  explicit GELU(GELUOptions options = {});
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "GELU"; }
  std::string extra_repr() const override;  // "approximate='none'"
  const std::string approximate;
};

// x sigmoid(x), also known as swish (Ramachandran et al., 2017).
class SiLU : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "SiLU"; }
};

class Tanh : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Tanh"; }
};

// 1 / (1 + exp(-x)).
class Sigmoid : public UnaryModule {
 public:
  Tensor forward(const Tensor& x) override;
  std::string type_name() const override { return "Sigmoid"; }
};

}  // namespace lumen::nn
