#include "nn/flatten.h"

#include "tensor/error.h"

namespace lumen::nn {

Tensor Flatten::forward(const Tensor& x) { return x.flatten(start_dim, end_dim); }

std::string Flatten::extra_repr() const {
  return detail::concat("start_dim=", start_dim, ", end_dim=", end_dim);
}

}  // namespace lumen::nn
