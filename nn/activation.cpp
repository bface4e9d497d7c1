#include "nn/activation.h"

#include "nn/functional/elementwise.h"
#include "tensor/error.h"

namespace lumen::nn {

Tensor ReLU::forward(const Tensor& x) { return lumen::relu(x); }

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
