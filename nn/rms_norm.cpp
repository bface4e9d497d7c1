#include "nn/rms_norm.h"

#include "nn/functional/norm.h"
#include "nn/init.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

RMSNorm::RMSNorm(Shape normalized_shape_, RMSNormOptions options)
    : normalized_shape(std::move(normalized_shape_)),
      eps(options.eps),
      elementwise_affine(options.elementwise_affine) {
  LUMEN_CHECK(!normalized_shape.empty(), "RMSNorm: normalized_shape must have at least one dim");
  for (int64_t s : normalized_shape)
    LUMEN_CHECK(s > 0, "RMSNorm: normalized_shape must have positive sizes, got ",
                ShapeStr{normalized_shape});
  LUMEN_CHECK(!eps || *eps >= 0, "RMSNorm: eps must be >= 0, got ", eps.value_or(0));
  if (elementwise_affine) {
    weight = empty(normalized_shape);
    register_parameter("weight", weight);
  }
  reset_parameters();
}

void RMSNorm::reset_parameters() {
  if (weight.defined()) init::ones_(weight);
}

Tensor RMSNorm::forward(const Tensor& x) {
  return functional::rms_norm(x, normalized_shape, weight, eps);
}

std::string RMSNorm::extra_repr() const {
  return detail::concat(python_tuple(normalized_shape), ", eps=", python_float(eps),
                        ", elementwise_affine=", python_bool(elementwise_affine));
}

}  // namespace lumen::nn
