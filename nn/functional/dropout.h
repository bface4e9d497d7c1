#pragma once
// Dropout (Srivastava et al., 2014) with the inverted scaling of PyTorch.
#include "tensor/generator.h"
#include "tensor/tensor.h"

namespace lumen::nn::functional {

// When training, zeroes each element of x with probability p and scales the others by
// 1 / (1 - p), so the expectation is unchanged; the mask is drawn from `gen` (default: the
// global generator). Returns x itself when !training or p == 0, and zeros when p == 1.
// p must lie in [0, 1]; x must be floating.
Tensor dropout(const Tensor& x, double p = 0.5, bool training = true, Generator* gen = nullptr);

// residual + dropout(x, p, training, gen) in one pass (a transformer block's "dropout, then add
// the skip connection"), with the mask dropout would draw. residual has x's shape, dtype and
// device.
Tensor dropout_add(const Tensor& x, const Tensor& residual, double p = 0.5, bool training = true,
                   Generator* gen = nullptr);

}  // namespace lumen::nn::functional
