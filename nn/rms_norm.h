#pragma once
// RMS normalisation (Zhang & Sennrich, 2019) over the trailing normalized_shape dims, as
// torch.nn.RMSNorm: y = x / sqrt(mean(x^2) + eps) * weight. Layer norm without the centring
// and the bias, as in LLaMA-style transformers.
#include <cstdint>
#include <optional>
#include <string>

#include "nn/module.h"

namespace lumen::nn {

struct RMSNormOptions {
  // Unset: the machine epsilon of the dtype it computes in (f32's for 16-bit and f32 inputs),
  // as PyTorch's eps=None.
  std::optional<double> eps = std::nullopt;
  bool elementwise_affine = true;  // a learnable weight (ones) of normalized_shape
};

class RMSNorm : public UnaryModule {
 public:
  RMSNorm(Shape normalized_shape, RMSNormOptions options = {});
  RMSNorm(int64_t normalized_size, RMSNormOptions options = {})
      : RMSNorm(Shape{normalized_size}, options) {}

  // x [..., *normalized_shape] -> the same shape.
  Tensor forward(const Tensor& x) override;
  void reset_parameters();

  std::string type_name() const override { return "RMSNorm"; }
  std::string extra_repr() const override;  // "(10,), eps=None, elementwise_affine=True"

  const Shape normalized_shape;
  const std::optional<double> eps;
  const bool elementwise_affine;
  Tensor weight;  // normalized_shape, when elementwise_affine
};

}  // namespace lumen::nn
