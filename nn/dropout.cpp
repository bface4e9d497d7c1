#include "nn/dropout.h"

#include "nn/functional/dropout.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

Dropout::Dropout(double p) : p(p) {
  LUMEN_CHECK(p >= 0.0 && p <= 1.0, "Dropout: probability p has to be between 0 and 1, got ", p);
}

Tensor Dropout::forward(const Tensor& x) { return functional::dropout(x, p, is_training()); }

std::string Dropout::extra_repr() const {
  return detail::concat("p=", python_float(p), ", inplace=False");
}

}  // namespace lumen::nn
