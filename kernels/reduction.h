#pragma once
#include <type_traits>

#include "kernels/dispatch.h"

namespace lumen::kernels {

// What a sum of T accumulates in, on every backend: i64 for integers, f64 for floating types
// (an f32 sum of 10^7 terms in f32 would drift past the CPU-vs-CUDA tolerance).
template <class T>
using sum_t = std::conditional_t<std::is_integral_v<T>, int64_t, double>;

enum class ReduceOp : uint8_t { Sum, Mean, Max, Min, ArgMax, ArgMin };

// out has x's rank with size 1 on every reduced dim (keepdim shape); the reduced dims are those
// where out is 1 and x is not. Sum/Mean/Max/Min: out has x's dtype; ArgMax/ArgMin: i64 index
// of the first extreme element along the single reduced dim. NaN wins max and min.
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, ReduceOp)> reduce{"reduce"};

}  // namespace lumen::kernels
