#pragma once
// Reductions over dims (all dims when none are given), with keepdim as in PyTorch.
// Floating sums accumulate in f64 on the CPU.
#include <vector>

#include "tensor/tensor.h"

namespace lumen {

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Values of the max/min over one dim, or over all elements when dim is absent. The gradient is
// shared evenly among tied maxima.
Tensor amax(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Index (i64) of the first max/min along dim.
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim = false);
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim = false);

}  // namespace lumen
