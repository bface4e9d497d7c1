#include "nn/batch_norm.h"

#include "autograd/grad_mode.h"
#include "nn/functional/norm.h"
#include "nn/init.h"
#include "nn/repr_format.h"
#include "tensor/error.h"

namespace lumen::nn {

BatchNorm::BatchNorm(int64_t num_features, const BatchNormOptions& options)
    : num_features(num_features),
      eps(options.eps),
      momentum(options.momentum),
      affine(options.affine),
      track_running_stats(options.track_running_stats) {
  LUMEN_CHECK(num_features > 0, "BatchNorm: num_features must be positive, got ", num_features);
  LUMEN_CHECK(eps >= 0, "BatchNorm: eps must be >= 0, got ", eps);
  LUMEN_CHECK(!momentum || (*momentum >= 0 && *momentum <= 1),
              "BatchNorm: momentum must lie in [0, 1], got ", momentum.value_or(0));
  if (affine) {
    weight = empty({num_features});
    bias = empty({num_features});
    register_parameter("weight", weight);
    register_parameter("bias", bias);
  }
  if (track_running_stats) {
    running_mean = empty({num_features});
    running_var = empty({num_features});
    num_batches_tracked = empty({}, {.dtype = DType::i64});
    register_buffer("running_mean", running_mean);
    register_buffer("running_var", running_var);
    register_buffer("num_batches_tracked", num_batches_tracked);
  }
  reset_parameters();
}

void BatchNorm::reset_running_stats() {
  if (!track_running_stats || !running_mean.defined()) return;
  init::zeros_(running_mean);
  init::ones_(running_var);
  init::zeros_(num_batches_tracked);
}

void BatchNorm::reset_parameters() {
  reset_running_stats();
  if (affine) {
    init::ones_(weight);
    init::zeros_(bias);
  }
}

Tensor BatchNorm::forward(const Tensor& x) {
  LUMEN_CHECK(x.defined(), type_name(), ": input is undefined");
  check_input_dim(x);
  LUMEN_CHECK(x.size(1) == num_features, type_name(), ": expected ", num_features,
              " channels in dim 1, got input of shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(!momentum || (*momentum >= 0 && *momentum <= 1), type_name(),
              ": momentum must lie in [0, 1], got ", momentum.value_or(0));
  double factor = momentum.value_or(0.0);
  const bool tracking = track_running_stats && running_mean.defined();
  if (is_training() && tracking) {
    NoGradGuard no_grad;
    num_batches_tracked.add_(
        ones({}, {.dtype = DType::i64, .device = num_batches_tracked.device()}));
    if (!momentum) factor = 1.0 / num_batches_tracked.item();
  }
  // Eval without running stats falls back to the batch's; training with tracking updates them.
  const bool use_batch_stats = is_training() || !running_mean.defined();
  const bool pass_stats = !is_training() || tracking;
  if (is_training() && process_group && process_group->world_size() > 1)
    return functional::sync_batch_norm(x, pass_stats ? running_mean : Tensor(),
                                       pass_stats ? running_var : Tensor(), weight, bias, factor,
                                       eps, process_group);
  return functional::batch_norm(x, pass_stats ? running_mean : Tensor(),
                                pass_stats ? running_var : Tensor(), weight, bias, use_batch_stats,
                                factor, eps);
}

std::string BatchNorm::extra_repr() const {
  return detail::concat(num_features, ", eps=", python_float(eps),
                        ", momentum=", python_float(momentum), ", affine=", python_bool(affine),
                        ", track_running_stats=", python_bool(track_running_stats));
}

void BatchNorm1d::check_input_dim(const Tensor& x) const {
  LUMEN_CHECK(x.dim() == 2 || x.dim() == 3, "BatchNorm1d: expected 2D or 3D input ([N, C] or ",
              "[N, C, L]), got ", x.dim(), "D input of shape ", ShapeStr{x.shape()});
}

void BatchNorm2d::check_input_dim(const Tensor& x) const {
  LUMEN_CHECK(x.dim() == 4, "BatchNorm2d: expected 4D input ([N, C, H, W]), got ", x.dim(),
              "D input of shape ", ShapeStr{x.shape()});
}

}  // namespace lumen::nn
