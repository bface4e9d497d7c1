#pragma once
// Softmax and log-softmax along one dim, numerically stable (the max along dim is subtracted
// before exponentiating). Floating dtypes; the output has x's shape and dtype.
#include <cstdint>

#include "tensor/tensor.h"

namespace lumen {

Tensor softmax(const Tensor& x, int64_t dim);
Tensor log_softmax(const Tensor& x, int64_t dim);

}  // namespace lumen
