// Normalisation front-ends: check shapes, cast weight and bias to x's dtype (a differentiable
// cast, so their gradients reach parameters kept in another dtype), run the kernels, record the
// backward with the statistics the forward saved.
#include "nn/functional/norm.h"

#include <optional>

#include "autograd/autocast_mode.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "kernels/norm.h"
#include "nn/functional/elementwise.h"

namespace lumen::nn::functional {
namespace {

DType acc_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

// Checks an optional per-feature tensor and returns it in `dtype` (default: x's; undefined stays
// so).
Tensor param_like(const char* op, const char* what, const Tensor& p, const Shape& expected,
                  const Tensor& x, std::optional<DType> dtype = std::nullopt) {
  if (!p.defined()) return p;
  LUMEN_CHECK(is_floating(p.dtype()), op, ": ", what, " must be a floating tensor, got dtype ",
              p.dtype(), " of shape ", ShapeStr{p.shape()});
  LUMEN_CHECK(p.shape() == expected, op, ": ", what, " has shape ", ShapeStr{p.shape()},
              " but input of shape ", ShapeStr{x.shape()}, " needs ", ShapeStr{expected});
  LUMEN_CHECK(p.device() == x.device(), op, ": ", what, " is on ", p.device(),
              " but the input is on ", x.device(), "; move both to one device");
  return p.to(dtype.value_or(x.dtype())).contiguous();  // kernels index them as plain arrays
}

}  // namespace

Tensor layer_norm(const Tensor& input, const Shape& normalized_shape, const Tensor& weight_in,
                  const Tensor& bias_in, double eps) {
  // Autocast: an f32 op, fused: a 16-bit input is read as it is (and kept so for the backward)
  // while the output, weight and bias are f32 and the math is f32.
  const bool widen = autocast::reads_as_f32(input);
  const Tensor& x = input;
  Tensor weight = autocast::to_f32(weight_in), bias = autocast::to_f32(bias_in);
  const char* op = "layer_norm";
  LUMEN_CHECK(x.defined(), op, ": input is undefined");
  LUMEN_CHECK(is_floating(x.dtype()), op, ": input must be a floating tensor, got dtype ",
              x.dtype(), " of shape ", ShapeStr{x.shape()});
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  bool fits = k >= 1 && x.dim() >= k;
  for (int64_t i = 0; fits && i < k; ++i) fits = x.size(x.dim() - k + i) == normalized_shape[i];
  LUMEN_CHECK(fits, op, ": normalized_shape ", ShapeStr{normalized_shape},
              " must be non-empty and equal the last dims of the input, got input of shape ",
              ShapeStr{x.shape()});
  LUMEN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  // The dtype of y, weight, bias and their gradients.
  const DType wide = widen ? DType::f32 : x.dtype();
  Tensor w = param_like(op, "weight", weight, normalized_shape, x, wide);
  Tensor b = param_like(op, "bias", bias, normalized_shape, x, wide);

  const int64_t d = numel_of(normalized_shape);
  Shape rows(x.shape().begin(), x.shape().end() - k);
  Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), {wide, x.device()});
  Tensor mean = empty(rows, {acc_dtype(x.dtype()), x.device()});
  Tensor rstd = empty(rows, {acc_dtype(x.dtype()), x.device()});
  kernels::layer_norm(x.device(), y, mean, rstd, xc, w, b, d, eps);
  return autograd::record(
      op, y, {x, w, b},
      [xs = xc.detach(), ws = w.defined() ? w.detach() : Tensor(), mean, rstd, d, normalized_shape,
       wide](const Tensor& g, const autograd::NeedsGrad& needs) {
        const TensorOptions opts{wide, xs.device()};
        Tensor gx = needs[0] ? empty_like(xs) : Tensor();
        Tensor gw = needs[1] ? empty(normalized_shape, opts) : Tensor();
        Tensor gb = needs[2] ? empty(normalized_shape, opts) : Tensor();
        kernels::layer_norm_backward(xs.device(), gx, gw, gb, g.to(wide).contiguous(), xs, mean,
                                     rstd, ws, d);
        return std::vector<Tensor>{gx, gw, gb};
      });
}

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight_in, const Tensor& bias_in, bool training, double momentum,
                  double eps) {
  // Autocast: an f32 op.
  Tensor x = autocast::to_f32(input), weight = autocast::to_f32(weight_in),
         bias = autocast::to_f32(bias_in);
  const char* op = "batch_norm";
  LUMEN_CHECK(x.defined(), op, ": input is undefined");
  LUMEN_CHECK(is_floating(x.dtype()), op, ": input must be a floating tensor, got dtype ",
              x.dtype(), " of shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(x.dim() >= 2, op, ": input must be [N, C] or [N, C, d1, ...], got shape ",
              ShapeStr{x.shape()});
  LUMEN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  const int64_t c = x.size(1);
  const Shape per_channel{c};
  Tensor w = param_like(op, "weight", weight, per_channel, x);
  Tensor b = param_like(op, "bias", bias, per_channel, x);
  LUMEN_CHECK(running_mean.defined() == running_var.defined(), op,
              ": running_mean and running_var must both be given or both be undefined (got ",
              running_mean.defined() ? "running_mean" : "running_var", " only)");
  const bool track = running_mean.defined();
  // In x's accumulation dtype (f32 for a 16-bit x) and contiguous: the training kernel updates
  // them in place (buffers of another dtype or layout go through a copy that is written back).
  Tensor rm = param_like(op, "running_mean", running_mean, per_channel, x, acc_dtype(x.dtype()));
  Tensor rv = param_like(op, "running_var", running_var, per_channel, x, acc_dtype(x.dtype()));
  LUMEN_CHECK(training || track, op, ": eval mode (training = false) normalises with the ",
              "running statistics, but running_mean and running_var are undefined (input of ",
              "shape ", ShapeStr{x.shape()}, ")");
  const int64_t count = c == 0 ? 0 : x.numel() / c;
  LUMEN_CHECK(!training || count > 1, op, ": expected more than 1 value per channel when ",
              "training, got input of shape ", ShapeStr{x.shape()});

  const DType acc = acc_dtype(x.dtype());
  Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mean, invstd;
  if (training) {
    mean = empty(per_channel, {acc, x.device()});
    invstd = empty(per_channel, {acc, x.device()});
    kernels::batch_norm_training(x.device(), y, mean, invstd, rm, rv, xc, w, b, momentum, eps);
    NoGradGuard no_grad;
    for (auto [given, updated] : {std::pair{running_mean, rm}, std::pair{running_var, rv}}) {
      if (!given.defined()) continue;
      if (updated.data_ptr() == given.data_ptr())
        given.bump_version();
      else
        Tensor(given).copy_(updated);
    }
  } else {
    NoGradGuard no_grad;
    // A copy, so a later in-place update of the running stats leaves the backward's intact.
    mean = rm.to(acc).clone();
    invstd = 1.0 / (rv.to(acc) + eps).sqrt();
    kernels::batch_norm_apply(x.device(), y, xc, mean, invstd, w, b);
  }
  return autograd::record(
      op, y, {x, w, b},
      [xs = xc.detach(), ws = w.defined() ? w.detach() : Tensor(), mean, invstd, training, c, eps](
          const Tensor& g, const autograd::NeedsGrad& needs) {
        Tensor gx = needs[0] ? empty_like(xs) : Tensor();
        Tensor gw = needs[1] ? empty(Shape{c}, {xs.dtype(), xs.device()}) : Tensor();
        Tensor gb = needs[2] ? empty(Shape{c}, {xs.dtype(), xs.device()}) : Tensor();
        kernels::batch_norm_backward(xs.device(), gx, gw, gb, g.to(xs.dtype()).contiguous(), xs,
                                     mean, invstd, ws, training, eps);
        return std::vector<Tensor>{gx, gw, gb};
      });
}

}  // namespace lumen::nn::functional
