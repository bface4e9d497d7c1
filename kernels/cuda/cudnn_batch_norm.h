#pragma once
// Batch norm in training mode through cuDNN (kernels/norm.h gives the math), for the inputs
// cuDNN takes as Lumen stores them: f32 or f64 x, whose weight, bias, running statistics and
// saved mean / invstd all have x's dtype. Each returns false, having done nothing, for any other
// input; the caller then runs Lumen's own kernels (kernels/cuda/norm.cu).
#include "tensor/tensor.h"

namespace lumen::cuda {

bool cudnn_batch_norm_training(const Tensor& y, const Tensor& mean, const Tensor& invstd,
                               const Tensor& running_mean, const Tensor& running_var,
                               const Tensor& x, const Tensor& weight, const Tensor& bias,
                               double momentum, double eps);

// The backward of a training-mode forward; needs grad_x (cuDNN always computes it).
bool cudnn_batch_norm_backward(const Tensor& grad_x, const Tensor& grad_weight,
                               const Tensor& grad_bias, const Tensor& grad_y, const Tensor& x,
                               const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                               double eps);

}  // namespace lumen::cuda
