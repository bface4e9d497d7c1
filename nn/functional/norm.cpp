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
#include "nn/functional/index.h"

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

// layer_norm's and rms_norm's input: a defined floating tensor whose last dims equal
// normalized_shape (non-empty); returns how many dims that is.
int64_t check_normalized_input(const char* op, const Tensor& x, const Shape& normalized_shape) {
  LUMEN_CHECK(x.defined(), op, ": input is undefined");
  LUMEN_CHECK(is_floating(x.dtype()), op, ": input must be a floating tensor, got dtype ",
              x.dtype(), " of shape ", ShapeStr{x.shape()});
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  bool fits = k >= 1 && x.dim() >= k;
  for (int64_t i = 0; fits && i < k; ++i) fits = x.size(x.dim() - k + i) == normalized_shape[i];
  LUMEN_CHECK(fits, op, ": normalized_shape ", ShapeStr{normalized_shape},
              " must be non-empty and equal the last dims of the input, got input of shape ",
              ShapeStr{x.shape()});
  return k;
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
  const int64_t k = check_normalized_input(op, x, normalized_shape);
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

namespace {

// batch_norm's and sync_batch_norm's arguments, checked: x, weight and bias after autocast (an
// f32 op), weight and bias in x's dtype (synced: its accumulation dtype), the running stats in x's
// accumulation dtype and contiguous (the kernels update them in place; buffers of another dtype
// or layout go through a copy that is written back).
struct BatchNormArgs {
  Tensor x, w, b, rm, rv;
  int64_t c = 0, count = 0;  // channels, values per channel
};

BatchNormArgs check_batch_norm(const char* op, const Tensor& input, const Tensor& running_mean,
                               const Tensor& running_var, const Tensor& weight_in,
                               const Tensor& bias_in, bool training, double eps,
                               bool synced = false) {
  BatchNormArgs a;
  a.x = autocast::to_f32(input);
  const Tensor& x = a.x;
  LUMEN_CHECK(x.defined(), op, ": input is undefined");
  LUMEN_CHECK(is_floating(x.dtype()), op, ": input must be a floating tensor, got dtype ",
              x.dtype(), " of shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(x.dim() >= 2, op, ": input must be [N, C] or [N, C, d1, ...], got shape ",
              ShapeStr{x.shape()});
  LUMEN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  a.c = x.size(1);
  const Shape per_channel{a.c};
  // sync_batch_norm computes in the accumulation dtype, weight and bias included.
  const std::optional<DType> param_dtype =
      synced ? std::optional<DType>(acc_dtype(x.dtype())) : std::nullopt;
  a.w = param_like(op, "weight", autocast::to_f32(weight_in), per_channel, x, param_dtype);
  a.b = param_like(op, "bias", autocast::to_f32(bias_in), per_channel, x, param_dtype);
  LUMEN_CHECK(running_mean.defined() == running_var.defined(), op,
              ": running_mean and running_var must both be given or both be undefined (got ",
              running_mean.defined() ? "running_mean" : "running_var", " only)");
  a.rm = param_like(op, "running_mean", running_mean, per_channel, x, acc_dtype(x.dtype()));
  a.rv = param_like(op, "running_var", running_var, per_channel, x, acc_dtype(x.dtype()));
  LUMEN_CHECK(training || running_mean.defined(), op, ": eval mode (training = false) normalises ",
              "with the running statistics, but running_mean and running_var are undefined ",
              "(input of shape ", ShapeStr{x.shape()}, ")");
  a.count = a.c == 0 ? 0 : x.numel() / a.c;
  // One rank of a synchronised batch norm may hold one value per channel, or none: the group's
  // count is what must exceed 1 (checked after the gather).
  LUMEN_CHECK(!training || synced || a.count > 1, op,
              ": expected more than 1 value per channel when ", "training, got input of shape ",
              ShapeStr{x.shape()});
  return a;
}

// Writes the running stats the kernels updated back to the caller's buffers (a no-op but for
// the version counter where they are the same storage).
void write_back_running_stats(const Tensor& running_mean, const Tensor& rm,
                              const Tensor& running_var, const Tensor& rv) {
  NoGradGuard no_grad;
  for (auto [given, updated] : {std::pair{running_mean, rm}, std::pair{running_var, rv}}) {
    if (!given.defined()) continue;
    if (updated.data_ptr() == given.data_ptr())
      given.bump_version();
    else
      Tensor(given).copy_(updated);
  }
}

}  // namespace

Tensor batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                  const Tensor& weight, const Tensor& bias, bool training, double momentum,
                  double eps) {
  const char* op = "batch_norm";
  BatchNormArgs a =
      check_batch_norm(op, input, running_mean, running_var, weight, bias, training, eps);
  const Tensor &x = a.x, &w = a.w, &b = a.b, &rm = a.rm, &rv = a.rv;
  const int64_t c = a.c;
  const Shape per_channel{c};

  const DType acc = acc_dtype(x.dtype());
  Tensor xc = x.contiguous();
  Tensor y = empty(x.shape(), {x.dtype(), x.device()});
  Tensor mean, invstd;
  if (training) {
    mean = empty(per_channel, {acc, x.device()});
    invstd = empty(per_channel, {acc, x.device()});
    kernels::batch_norm_training(x.device(), y, mean, invstd, rm, rv, xc, w, b, momentum, eps);
    write_back_running_stats(running_mean, rm, running_var, rv);
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

// See the header for the merge. Everything is computed in x's accumulation dtype (f32 for a
// 16-bit x). The backward, with xhat = (x - mean) invstd and the group's sums
//   db = sum dy, dw = sum dy xhat  (over every rank's N values of the channel)
// is batch_norm's training formula with N and the global sums:
//   dx = w invstd (dy - db / N - xhat dw / N) = w invstd dy - x k1 - k0,
//   k1 = w invstd^2 dw / N, k0 = w invstd db / N - mean k1,
// where w invstd dy and this rank's sums come from the eval-mode backward kernel.
Tensor sync_batch_norm(const Tensor& input, const Tensor& running_mean, const Tensor& running_var,
                       const Tensor& weight, const Tensor& bias, double momentum, double eps,
                       std::shared_ptr<ProcessGroup> group) {
  const char* op = "sync_batch_norm";
  LUMEN_CHECK(group != nullptr, op, ": the process group is null");
  BatchNormArgs a =
      check_batch_norm(op, input, running_mean, running_var, weight, bias, true, eps, true);
  const int64_t c = a.c;
  const DType acc = acc_dtype(a.x.dtype());
  const Device device = a.x.device();
  Tensor xs = a.x.detach().to(acc).contiguous();
  std::vector<int64_t> dims{0};
  Shape per_channel_view(static_cast<size_t>(xs.dim()), 1);  // [1, C, 1, ...]
  per_channel_view[1] = c;
  for (int64_t d = 2; d < xs.dim(); ++d) dims.push_back(d);

  Tensor mean, var, total;
  {
    NoGradGuard no_grad;
    // A rank without values (count 0) adds nothing to the merge, whatever its mean and var.
    Tensor local_mean = a.count > 0 ? xs.mean(dims) : zeros({c}, {acc, device});
    Tensor centred = xs - local_mean.view(per_channel_view);
    Tensor local_var = a.count > 0 ? (centred * centred).mean(dims) : zeros({c}, {acc, device});
    Tensor local = cat({local_mean, local_var, full({1}, double(a.count), {acc, device})});
    Tensor all = group->all_gather(local);  // [R, 2C + 1]: rank r's m_r, v_r, n_r
    Tensor means = all.narrow(1, 0, c), vars = all.narrow(1, c, c);
    Tensor counts = all.narrow(1, 2 * c, 1);  // [R, 1]
    total = counts.sum();
    // Only a rank with at most one value can be in a group of at most one: those ranks read the
    // count (every rank that must fail does, and the others need no wait on the device).
    if (a.count <= 1) {
      const double n = total.item();
      LUMEN_CHECK(n > 1, op, ": expected more than 1 value per channel over the group's ",
                  group->world_size(), " ranks when training, got ", n, " (input of shape ",
                  ShapeStr{a.x.shape()}, " on this rank)");
    }
    mean = (means * counts).sum({0}) / total;
    Tensor shift = means - mean;
    var = ((vars + shift * shift) * counts).sum({0}) / total;
    if (a.rm.defined()) {
      a.rm.mul_(1.0 - momentum).add_(mean * momentum);
      a.rv.mul_(1.0 - momentum).add_(var * (total / (total - 1.0)) * momentum);
      write_back_running_stats(running_mean, a.rm, running_var, a.rv);
    }
  }
  Tensor invstd = (1.0 / (var + eps).sqrt()).contiguous();
  mean = mean.contiguous();
  Tensor y = empty(xs.shape(), {acc, device});
  kernels::batch_norm_apply(device, y, xs, mean, invstd, a.w, a.b);
  const DType out_dtype = a.x.dtype();
  return autograd::record(
      op, y.to(out_dtype), {a.x, a.w, a.b},
      [xs, ws = a.w.defined() ? a.w.detach() : Tensor(), mean, invstd, total, c, eps,
       per_channel_view, out_dtype,
       group = std::move(group)](const Tensor& g, const autograd::NeedsGrad& needs) {
        NoGradGuard no_grad;
        const TensorOptions opts{xs.dtype(), xs.device()};
        Tensor dy = g.to(xs.dtype()).contiguous();
        Tensor gx = needs[0] ? empty_like(xs) : Tensor();
        Tensor gw = empty(Shape{c}, opts), gb = empty(Shape{c}, opts);
        kernels::batch_norm_backward(xs.device(), gx, gw, gb, dy, xs, mean, invstd, ws, false, eps);
        if (needs[0]) {
          Tensor sums = cat({gb, gw});
          group->all_reduce_sum(sums);
          Tensor db = sums.narrow(0, 0, c), dw = sums.narrow(0, c, c);
          Tensor scale = (ws.defined() ? ws * invstd : invstd) / total;
          Tensor k1 = scale * invstd * dw;
          Tensor k0 = scale * db - mean * k1;
          gx = (gx - xs * k1.view(per_channel_view) - k0.view(per_channel_view)).to(out_dtype);
        }
        return std::vector<Tensor>{gx, needs[1] ? gw : Tensor(), needs[2] ? gb : Tensor()};
      });
}

// rms_norm and group_norm are composed of differentiable ops (mul, mean, add, sqrt, div), so
// they run wherever those have kernels and autograd derives their backward. 16-bit inputs
// compute in f32 and return to their dtype; under autocast (an f32 op, as layer_norm) the
// result stays f32.
namespace {

// torch.finfo(dtype).eps of the dtype the op computes in: 16-bit inputs compute in f32, so
// they take f32's (as PyTorch's rms_norm and nn.RMSNorm do).
double machine_epsilon(DType t) {
  return t == DType::f64 ? 2.220446049250313e-16    // 2^-52
                         : 1.1920928955078125e-07;  // 2^-23
}

}  // namespace

Tensor rms_norm(const Tensor& input, const Shape& normalized_shape, const Tensor& weight_in,
                std::optional<double> eps_in) {
  const char* op = "rms_norm";
  check_normalized_input(op, input, normalized_shape);
  const Tensor x = autocast::to_f32(input);
  const int64_t k = static_cast<int64_t>(normalized_shape.size());
  const DType compute = is_16bit_float(x.dtype()) ? DType::f32 : x.dtype();
  const double eps = eps_in.value_or(machine_epsilon(compute));
  LUMEN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  Tensor w = param_like(op, "weight", autocast::to_f32(weight_in), normalized_shape, x, compute);
  Tensor xf = x.to(compute);
  std::vector<int64_t> dims;
  for (int64_t i = x.dim() - k; i < x.dim(); ++i) dims.push_back(i);
  Tensor y = xf / sqrt((xf * xf).mean(dims, true) + eps);
  if (w.defined()) y = y * w;
  return y.to(x.dtype());
}

Tensor group_norm(const Tensor& input, int64_t num_groups, const Tensor& weight_in,
                  const Tensor& bias_in, double eps) {
  const char* op = "group_norm";
  LUMEN_CHECK(input.defined(), op, ": input is undefined");
  LUMEN_CHECK(is_floating(input.dtype()), op, ": input must be a floating tensor, got dtype ",
              input.dtype(), " of shape ", ShapeStr{input.shape()});
  const Tensor x = autocast::to_f32(input);
  LUMEN_CHECK(x.dim() >= 2, op, ": expected an input [N, C, *] with at least 2 dims, got shape ",
              ShapeStr{x.shape()});
  const int64_t n = x.size(0), c = x.size(1);
  LUMEN_CHECK(num_groups > 0 && c % num_groups == 0, op, ": ", c,
              " channels do not split into num_groups = ", num_groups,
              " groups (expected a positive divisor of the channel count)");
  LUMEN_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  // PyTorch's _verify_batch_size: one sample whose groups hold one value each normalises to 0
  // whatever it holds.
  int64_t values = n * (c / num_groups);
  for (int64_t d = 2; d < x.dim(); ++d) values *= x.size(d);
  LUMEN_CHECK(values != 1, op, ": expected more than 1 value per group, got input of shape ",
              ShapeStr{x.shape()}, " in ", num_groups, " groups");
  const DType compute = is_16bit_float(x.dtype()) ? DType::f32 : x.dtype();
  Tensor w = param_like(op, "weight", autocast::to_f32(weight_in), {c}, x, compute);
  Tensor b = param_like(op, "bias", autocast::to_f32(bias_in), {c}, x, compute);
  // [N, G, C/G * positions]: one row per sample and group.
  Tensor rows =
      x.to(compute).reshape({n, num_groups, x.numel() / std::max<int64_t>(n * num_groups, 1)});
  Tensor centred = rows - rows.mean({2}, true);
  Tensor y = (centred / sqrt((centred * centred).mean({2}, true) + eps)).reshape(x.shape());
  // weight and bias [C] broadcast as [C, 1, ..., 1] over the positions.
  Shape per_channel(static_cast<size_t>(x.dim() - 1), 1);
  per_channel[0] = c;
  if (w.defined()) y = y * w.reshape(per_channel);
  if (b.defined()) y = y + b.reshape(per_channel);
  return y.to(x.dtype());
}

}  // namespace lumen::nn::functional
