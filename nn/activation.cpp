#include "nn/activation.h"

#include <cmath>

#include "nn/functional/elementwise.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

Tensor ReLU::forward(const Tensor& x) { return lumen::relu(x); }

LeakyReLU::LeakyReLU(double negative_slope) : negative_slope(negative_slope) {
  LUMEN_CHECK(std::isfinite(negative_slope), "LeakyReLU: negative_slope must be finite, got ",
              negative_slope);
}

Tensor LeakyReLU::forward(const Tensor& x) { return lumen::leaky_relu(x, negative_slope); }

std::string LeakyReLU::extra_repr() const {
  return detail::concat("negative_slope=", python_float(negative_slope));
}

GELU::GELU(GELUOptions options) : approximate(std::move(options.approximate)) {
  LUMEN_CHECK(approximate == "none" || approximate == "tanh", "GELU: approximate must be 'none' ",
              "or 'tanh', got '", approximate, "'");
}

Tensor GELU::forward(const Tensor& x) { return lumen::gelu(x, approximate); }

std::string GELU::extra_repr() const { return detail::concat("approximate='", approximate, "'"); }

// Composed from existing ops; autograd gives d/dx = s + x s (1 - s) with s = sigmoid(x).
Tensor SiLU::forward(const Tensor& x) { return x * lumen::sigmoid(x); }

Tensor Tanh::forward(const Tensor& x) { return lumen::tanh(x); }

Tensor Sigmoid::forward(const Tensor& x) { return lumen::sigmoid(x); }

}  // namespace lumen::nn
