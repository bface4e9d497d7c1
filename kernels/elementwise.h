#pragma once
// Elementwise kernels. The caller (nn/functional) allocates `out` with the broadcast shape
// and the result dtype; inputs have out's dtype (unless stated) and any strides, and broadcast
// to out's shape. Kernels only compute.
#include "kernels/dispatch.h"
#include "kernels/elementwise_ops.h"
#include "tensor/generator.h"

namespace lumen::kernels {

// out = f(x)
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, UnaryArgs)> unary{"unary"};
// grad_x = grad_out * f'(x)
inline constinit OpKernel<void(const Tensor& grad_x, const Tensor& grad_out, const Tensor& x,
                               UnaryArgs)>
    unary_backward{"unary_backward"};
// out = a op b
inline constinit OpKernel<void(const Tensor& out, const Tensor& a, const Tensor& b, BinaryOp)>
    binary{"binary"};
// out = f(a + b): a layer's bias add and activation in one pass (no intermediate tensor)
inline constinit OpKernel<void(const Tensor& out, const Tensor& a, const Tensor& b, UnaryArgs)>
    add_act{"add_act"};
// out (bool) = a cmp b
inline constinit OpKernel<void(const Tensor& out, const Tensor& a, const Tensor& b, CompareOp)>
    compare{"compare"};
// out = cond ? a : b, cond bool
inline constinit OpKernel<void(const Tensor& out, const Tensor& cond, const Tensor& a,
                               const Tensor& b)>
    where{"where"};
// out = src, converting dtype (src may have any dtype and any strides; both on one device)
inline constinit OpKernel<void(const Tensor& out, const Tensor& src)> copy{"copy"};
// out[...] = value
inline constinit OpKernel<void(const Tensor& out, double value)> fill{"fill"};

// A random fill of a contiguous out: element i = random_value<T>(kind, param, seed, offset, i).
inline constinit OpKernel<void(const Tensor& out, RandomKind, double param, uint64_t seed,
                               uint64_t offset)>
    random_fill{"random_fill"};

// out = residual + dropout(x) with the mask of DropoutMask(p, seed, offset) (elementwise_ops.h),
// in one pass and without a mask tensor; residual may be undefined (none). out is contiguous
// and of x's shape (its offsets are the elements' positions); x and residual any strides.
inline constinit OpKernel<void(const Tensor& out, const Tensor& x, const Tensor& residual,
                               DropoutMask mask)>
    dropout{"dropout"};

}  // namespace lumen::kernels

namespace lumen::kernels {
// Philox blocks a random_fill of n elements consumes (how far the generator must advance):
// random_per_block's layout (f16 and bf16 draw as f32).
inline uint64_t random_fill_blocks(RandomKind kind, DType dtype, uint64_t n) {
  const uint64_t k =
      dtype == DType::f64 ? random_per_block<double>(kind) : random_per_block<float>(kind);
  return (n + k - 1) / k;
}
}  // namespace lumen::kernels
