#include "nn/layer_norm.h"

#include "nn/functional/norm.h"
#include "nn/init.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

LayerNorm::LayerNorm(Shape normalized_shape_, LayerNormOptions options)
    : normalized_shape(std::move(normalized_shape_)),
      eps(options.eps),
      elementwise_affine(options.elementwise_affine) {
  LUMEN_CHECK(!normalized_shape.empty(), "LayerNorm: normalized_shape must have at least one dim");
  for (int64_t s : normalized_shape)
    LUMEN_CHECK(s > 0, "LayerNorm: normalized_shape must have positive sizes, got ",
                ShapeStr{normalized_shape});
  LUMEN_CHECK(eps >= 0, "LayerNorm: eps must be >= 0, got ", eps);
  if (elementwise_affine) {
    weight = empty(normalized_shape);
    register_parameter("weight", weight);
    if (options.bias) {
      bias = empty(normalized_shape);
      register_parameter("bias", bias);
    }
  }
  reset_parameters();
}

void LayerNorm::reset_parameters() {
  if (weight.defined()) init::ones_(weight);
  if (bias.defined()) init::zeros_(bias);
}

Tensor LayerNorm::forward(const Tensor& x) {
  return functional::layer_norm(x, normalized_shape, weight, bias, eps);
}

std::string LayerNorm::extra_repr() const {
  return detail::concat(python_tuple(normalized_shape), ", eps=", python_float(eps),
                        ", elementwise_affine=", python_bool(elementwise_affine));
}

}  // namespace lumen::nn
