#pragma once
#include "kernels/dispatch.h"

namespace lumen::kernels {

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, ArgMax, ArgMin };

// out has x's rank with size 1 on every reduced dim (keepdim shape); the reduced dims are those
// where out is 1 and x is not. Sum/Mean/Max/Min: out has x's dtype; ArgMax/ArgMin: i64 index
// of the first extreme element along the single reduced dim. NaN wins max and min.
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, ReduceOp)> reduce{"reduce"};

}  // namespace lumen::kernels
