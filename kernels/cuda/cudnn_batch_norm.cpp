// cuDNN's spatial batch norm (CUDNN_BATCHNORM_SPATIAL: statistics per channel over N and every
// spatial position) on x [N, C, S...] described as [N, C, S, 1]. cuDNN saves the batch mean and
// 1 / sqrt(var + eps) for the backward, and moves the running statistics as PyTorch does
// (factor = momentum, the variance unbiased), so its results are the ones kernels/norm.h states.
#include "kernels/cuda/cudnn_batch_norm.h"

#include "kernels/cuda/cudnn_handle.h"

namespace lumen::cuda {
namespace {

constexpr const char* kOp = "batch_norm";

// cuDNN's descriptors hold int sizes and strides (the N stride is C S). PyTorch also keeps
// batches over 880801 off cuDNN's spatial batch norm (32-bit limits inside some of its kernels,
// _select_batch_norm_backend); those take our own kernels, as 16-bit inputs do.
bool takes(const Tensor& x) {
  return (x.dtype() == DType::f32 || x.dtype() == DType::f64) && x.numel() <= INT32_MAX &&
         x.size(0) <= 880801;
}

int64_t spatial_size(const Tensor& x) {
  int64_t s = 1;
  for (int64_t i = 2; i < x.dim(); ++i) s *= x.size(i);
  return s;
}

// The descriptors of x (and y, dy, dx) and of the per-channel tensors.
struct BatchNormDescriptors {
  CudnnTensor4d x, channel;
  explicit BatchNormDescriptors(const Tensor& t)
      : x(cudnn_type(t.dtype(), kOp), t.size(0), t.size(1), spatial_size(t), 1, kOp),
        channel(cudnn_type(t.dtype(), kOp), 1, t.size(1), 1, 1, kOp) {}
};

// weight or bias as given, or the identity's (ones or zeros) where undefined: cuDNN needs both.
Tensor or_filled(const Tensor& p, const Tensor& x, double value) {
  if (p.defined()) return p;
  return value == 0.0 ? zeros({x.size(1)}, {x.dtype(), x.device()})
                      : ones({x.size(1)}, {x.dtype(), x.device()});
}

}  // namespace

bool cudnn_batch_norm_training(const Tensor& y, const Tensor& mean, const Tensor& invstd,
                               const Tensor& running_mean, const Tensor& running_var,
                               const Tensor& x, const Tensor& weight, const Tensor& bias,
                               double momentum, double eps) {
  if (!takes(x) || x.numel() == 0) return false;
  const int dev = x.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  const BatchNormDescriptors d(x);
  const Tensor w = or_filled(weight, x, 1.0), b = or_filled(bias, x, 0.0);
  const CudnnScalars s(x.dtype());
  LUMEN_CUDNN_CHECK(cudnnBatchNormalizationForwardTraining(
      cudnn_handle(dev), CUDNN_BATCHNORM_SPATIAL, s.alpha(), s.beta(), d.x, x.data_ptr(), d.x,
      y.data_ptr(), d.channel, w.data_ptr(), b.data_ptr(), momentum,
      running_mean.defined() ? running_mean.data_ptr() : nullptr,
      running_var.defined() ? running_var.data_ptr() : nullptr, eps, mean.data_ptr(),
      invstd.data_ptr()));
  return true;
}

bool cudnn_batch_norm_backward(const Tensor& grad_x, const Tensor& grad_weight,
                               const Tensor& grad_bias, const Tensor& grad_y, const Tensor& x,
                               const Tensor& mean, const Tensor& invstd, const Tensor& weight,
                               double eps) {
  if (!takes(x) || !grad_x.defined() || x.numel() == 0) return false;
  const int dev = x.device().index;
  LUMEN_CUDA_CHECK(cudaSetDevice(dev));
  const BatchNormDescriptors d(x);
  const Tensor w = or_filled(weight, x, 1.0);
  // cuDNN writes both parameter gradients: scratch where they are not wanted.
  const Tensor gw =
      grad_weight.defined() ? grad_weight : empty({x.size(1)}, {x.dtype(), x.device()});
  const Tensor gb = grad_bias.defined() ? grad_bias : empty({x.size(1)}, {x.dtype(), x.device()});
  const CudnnScalars s(x.dtype());
  LUMEN_CUDNN_CHECK(cudnnBatchNormalizationBackward(
      cudnn_handle(dev), CUDNN_BATCHNORM_SPATIAL, s.alpha(), s.beta(), s.alpha(), s.beta(), d.x,
      x.data_ptr(), d.x, grad_y.data_ptr(), d.x, grad_x.data_ptr(), d.channel, w.data_ptr(),
      gw.data_ptr(), gb.data_ptr(), eps, mean.data_ptr(), invstd.data_ptr()));
  return true;
}

}  // namespace lumen::cuda
