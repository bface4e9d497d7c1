#include "nn/linear.h"

#include <cmath>

#include "nn/functional/linalg.h"
#include "nn/init.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

Linear::Linear(int64_t in_features, int64_t out_features, LinearOptions options)
    : in_features(in_features), out_features(out_features) {
  LUMEN_CHECK(in_features > 0 && out_features > 0,
              "Linear: in_features and out_features must be positive, got in_features=",
              in_features, ", out_features=", out_features);
  weight = empty({out_features, in_features});
  register_parameter("weight", weight);
  if (options.bias) {
    bias = empty({out_features});
    register_parameter("bias", bias);
  }
  reset_parameters();
}

void Linear::reset_parameters() {
  init::kaiming_uniform_(weight, std::sqrt(5.0));
  if (bias.defined()) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(in_features));
    init::uniform_(bias, -bound, bound);
  }
}

Tensor Linear::forward(const Tensor& x) { return functional::linear(x, weight, bias); }

std::string Linear::extra_repr() const {
  return detail::concat("in_features=", in_features, ", out_features=", out_features,
                        ", bias=", python_bool(bias.defined()));
}

}  // namespace lumen::nn
