#pragma once
// Normalisation layers' functional forms, as torch.nn.functional's. weight and bias are
// optional (an undefined Tensor means 1 and 0); they are used in x's dtype.
#include <cstdint>
#include <memory>
#include <optional>

#include "nn/process_group.h"
#include "tensor/tensor.h"

namespace lumen::nn::functional {

// Normalises over the last dims of x, which must equal normalized_shape, with the biased
// variance: y = (x - mean) / sqrt(var + eps) * weight + bias; weight and bias have
// normalized_shape.
Tensor layer_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

// Batch norm of x [N, C] or [N, C, d1, ...] per channel C (weight, bias, running stats [C]).
// training: normalises with the batch's mean and biased variance and, when the running stats
// are defined, updates them in place as PyTorch does:
//   running_mean = (1 - momentum) running_mean + momentum mean
//   running_var  = (1 - momentum) running_var  + momentum var * n / (n - 1)  (unbiased)
// eval (training = false): normalises with the running stats, which must be defined.
Tensor batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum = 0.1,
                  double eps = 1e-5);

// Training-mode batch norm with the statistics of the whole group's batch (torch.nn.SyncBatchNorm):
// each rank's per-channel count n_r, mean m_r and biased variance v_r are gathered and merged,
//   N = sum n_r, mean = sum n_r m_r / N, var = sum n_r (v_r + (m_r - mean)^2) / N,
// and the running stats move as batch_norm's with n = N. The backward all-reduces the two
// per-channel sums it needs, so each rank's grad_x is the gradient of the sum of all ranks'
// losses with respect to its own x; grad_weight and grad_bias are this rank's part, which DDP's
// gradient average completes. Every rank of the group must call it, in the same order.
Tensor sync_batch_norm(const Tensor& x, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight, const Tensor& bias, double momentum, double eps,
                       std::shared_ptr<ProcessGroup> group);

// RMS normalisation (Zhang & Sennrich, 2019), as torch.nn.functional.rms_norm: over the last
// dims of x, which must equal normalized_shape,
//   y = x / sqrt(mean(x^2) + eps) * weight,
// eps unset: the machine epsilon of the dtype it computes in (f64's for f64, else f32's: 16-bit
// inputs compute in f32), as PyTorch's.
Tensor rms_norm(const Tensor& x, const Shape& normalized_shape, const Tensor& weight = {},
                std::optional<double> eps = std::nullopt);

// Group normalisation (Wu & He, 2018), as torch.nn.functional.group_norm: x [N, C, *] has its C
// channels in num_groups groups of C / num_groups; each sample's group is normalised with the
// mean and biased variance over its channels and positions, then scaled per channel:
//   y[n, c, ...] = (x - mean[n, g]) / sqrt(var[n, g] + eps) * weight[c] + bias[c]
Tensor group_norm(const Tensor& x, int64_t num_groups, const Tensor& weight = {},
                  const Tensor& bias = {}, double eps = 1e-5);

}  // namespace lumen::nn::functional
