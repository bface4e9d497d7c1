#pragma once
// Layer normalisation (Ba et al., 2016) over the trailing normalized_shape dims, as
// torch.nn.LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias, biased variance.
#include <cstdint>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

struct LayerNormOptions {
  double eps = 1e-5;
  bool elementwise_affine = true;  // learnable weight (ones) and bias (zeros) of normalized_shape
  bool bias = true;                // with elementwise_affine: false keeps the weight only
};

class LayerNorm : public UnaryModule {
 public:
  LayerNorm(Shape normalized_shape, LayerNormOptions options = {});
  LayerNorm(int64_t normalized_size, LayerNormOptions options = {})
      : LayerNorm(Shape{normalized_size}, options) {}

  // x [..., *normalized_shape] -> the same shape.
  Tensor forward(const Tensor& x) override;
  void reset_parameters();

  std::string type_name() const override { return "LayerNorm"; }
  std::string extra_repr() const override;  // "(10,), eps=1e-05, elementwise_affine=True"

  const Shape normalized_shape;
  const double eps;
  const bool elementwise_affine;
  Tensor weight, bias;  // normalized_shape, when elementwise_affine (bias also needs .bias)
};

}  // namespace lumen::nn
