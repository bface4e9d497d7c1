// Loss front-ends: check arguments, run the fused kernels (cross entropy, BCE with logits) or
// compose existing ops (MSE), then apply the reduction with ordinary differentiable ops.
#include "nn/functional/loss.h"

#include "autograd/autocast_mode.h"
#include "autograd/node.h"
#include "kernels/loss.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/reduction.h"

namespace lumen::nn::functional {
namespace {

enum class Reduction { Mean, Sum, None };

Reduction parse_reduction(const char* op, const std::string& r) {
  if (r == "mean") return Reduction::Mean;
  if (r == "sum") return Reduction::Sum;
  if (r == "none") return Reduction::None;
  detail::throw_error(op, ": reduction must be \"mean\", \"sum\" or \"none\", got \"", r, "\"");
}

Tensor reduce(const Tensor& loss, Reduction r) {
  switch (r) {
    case Reduction::Mean:
      return mean(loss);
    case Reduction::Sum:
      return sum(loss);
    case Reduction::None:
      break;
  }
  return loss;
}

void check_float(const char* op, const char* what, const Tensor& t) {
  LUMEN_CHECK(t.defined(), op, ": ", what, " is undefined");
  LUMEN_CHECK(is_floating(t.dtype()), op, ": ", what, " must be a floating tensor, got dtype ",
              t.dtype(), " of shape ", ShapeStr{t.shape()});
}

void check_device(const char* op, const char* what, const Tensor& t, const Tensor& ref) {
  LUMEN_CHECK(t.device() == ref.device(), op, ": ", what, " is on ", t.device(),
              " but the input is on ", ref.device(), "; move both to one device");
}

DType acc_dtype(DType t) { return t == DType::f64 ? DType::f64 : DType::f32; }

Shape without_dim1(const Shape& s) {
  Shape r = s;
  r.erase(r.begin() + 1);
  return r;
}

}  // namespace

Tensor cross_entropy(const Tensor& logits_in, const Tensor& target,
                     const CrossEntropyOptions& options) {
  // Autocast: an f32 op, fused: 16-bit logits are read as they are and the loss computed and
  // written in f32 (no f32 copy of the logits; their gradient comes back in 16 bits, rounded
  // once, as through a cast).
  const bool widen = autocast::reads_as_f32(logits_in);
  const Tensor& logits = logits_in;
  const char* op = "cross_entropy";
  const Reduction red = parse_reduction(op, options.reduction);
  check_float(op, "logits", logits);
  LUMEN_CHECK(target.defined(), op, ": target is undefined");
  LUMEN_CHECK(
      target.dtype() == DType::i64, op, ": target must hold class indices as i64, got ", "dtype ",
      target.dtype(), " of shape ", ShapeStr{target.shape()},
      " (class-probability targets are not supported; convert indices with to(DType::i64))");
  check_device(op, "target", target, logits);
  const double e = options.label_smoothing;
  LUMEN_CHECK(e >= 0.0 && e <= 1.0, op, ": label_smoothing must be in [0, 1], got ", e);
  LUMEN_CHECK(logits.dim() >= 1, op, ": logits must be [N, C], [N, C, d1, ...] or [C], got shape ",
              ShapeStr{logits.shape()});

  // Unbatched logits [C] with a 0-d target are one sample.
  const bool unbatched = logits.dim() == 1;
  Tensor x = unbatched ? logits.unsqueeze(0) : logits;
  Tensor t = unbatched && target.dim() == 0 ? target.unsqueeze(0) : target;
  const Shape expected = without_dim1(x.shape());
  LUMEN_CHECK(t.shape() == expected && (!unbatched || target.dim() == 0), op, ": target of shape ",
              ShapeStr{target.shape()}, " does not fit logits of shape ", ShapeStr{logits.shape()},
              "; expected target shape ", ShapeStr{unbatched ? Shape{} : expected},
              " (logits [N, C, d1, ...] take class indices [N, d1, ...])");
  const int64_t c = x.size(1);

  // Validate the indices on the host and count the targets that are not ignored (the mean's
  // denominator). Targets that came from the host (a loader's batch) are read there, so a GPU
  // step does not wait for the device here.
  Tensor tc = t.contiguous();
  Tensor th = host_values(tc);
  const int64_t* pt = th.data<int64_t>();
  int64_t counted = 0;
  for (int64_t i = 0; i < th.numel(); ++i) {
    const int64_t y = pt[i];
    if (y == options.ignore_index) continue;
    LUMEN_CHECK(y >= 0 && y < c, op, ": target index ", y, " (at flat position ", i,
                ") is out of range for ", c, " classes (logits of shape ", ShapeStr{logits.shape()},
                "); expected 0 <= index < ", c, " or ignore_index ", options.ignore_index);
    ++counted;
  }

  Tensor xc = x.contiguous();
  Tensor loss = empty(t.shape(), {widen ? DType::f32 : x.dtype(), x.device()});
  Tensor lse = empty(t.shape(), {acc_dtype(x.dtype()), x.device()});
  const int64_t ignore = options.ignore_index;
  kernels::cross_entropy(x.device(), loss, lse, xc, tc, ignore, e);
  loss = autograd::record(op, loss, {x},
                          [xs = xc.detach(), tc, lse, ignore, e, loss_dtype = loss.dtype()](
                              const Tensor& g, const autograd::NeedsGrad&) {
                            Tensor gx = empty_like(xs);
                            kernels::cross_entropy_backward(xs.device(), gx,
                                                            g.to(loss_dtype).contiguous(), xs, tc,
                                                            lse, ignore, e);
                            return std::vector<Tensor>{gx};
                          });
  switch (red) {
    case Reduction::Mean:
      // Over the targets that count: 0 / 0 = NaN when every target is ignored.
      return sum(loss) / static_cast<double>(counted);
    case Reduction::Sum:
      return sum(loss);
    case Reduction::None:
      break;
  }
  return unbatched ? loss.reshape(target.shape()) : loss;
}

Tensor mse_loss(const Tensor& input_in, const Tensor& target_in, const std::string& reduction) {
  // Autocast: an f32 op.
  Tensor input = autocast::to_f32(input_in), target = autocast::to_f32(target_in);
  const char* op = "mse_loss";
  const Reduction red = parse_reduction(op, reduction);
  check_float(op, "input", input);
  check_float(op, "target", target);
  check_device(op, "target", target, input);
  LUMEN_CHECK(input.shape() == target.shape(), op, ": target of shape ", ShapeStr{target.shape()},
              " does not match input of shape ", ShapeStr{input.shape()},
              "; expected equal shapes");
  // d(d^2)/d input = 2 d, d/d target = -2 d: the composition's own backward.
  Tensor d = input - target;
  return reduce(d * d, red);
}

Tensor binary_cross_entropy_with_logits(const Tensor& logits_in, const Tensor& target_in,
                                        const std::string& reduction, const Tensor& pos_weight_in) {
  // Autocast: an f32 op.
  Tensor logits = autocast::to_f32(logits_in), target = autocast::to_f32(target_in),
         pos_weight = autocast::to_f32(pos_weight_in);
  const char* op = "binary_cross_entropy_with_logits";
  const Reduction red = parse_reduction(op, reduction);
  check_float(op, "logits", logits);
  check_float(op, "target", target);
  check_device(op, "target", target, logits);
  LUMEN_CHECK(logits.shape() == target.shape(), op, ": target of shape ", ShapeStr{target.shape()},
              " does not match logits of shape ", ShapeStr{logits.shape()},
              "; expected equal shapes");
  const DType dt = logits.dtype();
  Tensor y = target.to(dt);
  Tensor pw;
  if (pos_weight.defined()) {
    check_float(op, "pos_weight", pos_weight);
    check_device(op, "pos_weight", pos_weight, logits);
    const Shape& ps = pos_weight.shape();
    const int64_t lead = logits.dim() - pos_weight.dim();
    bool fits = lead >= 0;
    for (int64_t i = 0; fits && i < pos_weight.dim(); ++i)
      fits = ps[i] == 1 || ps[i] == logits.size(lead + i);
    LUMEN_CHECK(fits, op, ": pos_weight of shape ", ShapeStr{pos_weight.shape()},
                " does not broadcast to logits of shape ", ShapeStr{logits.shape()});
    pw = pos_weight.to(dt);
  }
  Tensor xc = logits.contiguous(), yc = y.contiguous();
  Tensor out = empty(logits.shape(), {dt, logits.device()});
  kernels::bce_logits(logits.device(), out, xc, yc, pw);
  out = autograd::record(
      op, out, {logits, y, pw},
      [xs = xc.detach(), ys = yc.detach(), ps = pw.defined() ? pw.detach() : Tensor()](
          const Tensor& g, const autograd::NeedsGrad& needs) {
        Tensor gx = needs[0] ? empty_like(xs) : Tensor();
        Tensor gy = needs[1] ? empty_like(xs) : Tensor();
        Tensor gp = needs[2] ? empty_like(xs) : Tensor();
        kernels::bce_logits_backward(xs.device(), gx, gy, gp, g.to(xs.dtype()).contiguous(), xs, ys,
                                     ps);
        if (gp.defined()) gp = sum_to(gp, ps.shape());
        return std::vector<Tensor>{gx, gy, gp};
      });
  return reduce(out, red);
}

}  // namespace lumen::nn::functional
