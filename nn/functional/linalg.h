#pragma once
// Matrix products with broadcasting and autograd.
#include "tensor/tensor.h"

namespace lumen {

// The matrix product with torch.matmul's rules:
//   1-D @ 1-D: the dot product (a 0-d tensor);
//   2-D @ 2-D: the matrix product;
//   a 1-D operand is treated as a row (first) or column (second) vector, and that dim is
//   removed from the result;
//   more dims: a batch of matrices in the last two dims, batch dims broadcast NumPy-style,
//   e.g. [B, 1, M, K] @ [H, K, N] -> [B, H, M, N].
// Both operands must have one floating dtype and one device.
Tensor matmul(const Tensor& a, const Tensor& b);

namespace nn::functional {

// The activation a linear layer may apply inside its GEMM: none, relu, gelu (erf) or gelu with
// the tanh approximation.
enum class Activation { None, ReLU, GELU, GELUTanh };

// y = act(x W^T + b), as torch.nn.functional.linear followed by the activation, computed in one
// fused kernel where the backend has one (the GEMM's epilogue adds the bias and applies act):
// x [..., in], weight [out, in], bias [out] or an undefined Tensor for none; y [..., out].
Tensor linear(const Tensor& x, const Tensor& weight, const Tensor& bias = {},
              Activation activation = Activation::None);

}  // namespace nn::functional
}  // namespace lumen
