#include "nn/functional/reduction.h"

#include <algorithm>

#include "autograd/autocast_mode.h"
#include "autograd/node.h"
#include "kernels/reduction.h"
#include "nn/functional/elementwise.h"

namespace lumen {

using kernels::ReduceOp;

namespace {

// The keepdim output shape; `dims` empty means every dim.
Shape reduced_shape(const char* op, const Tensor& x, const std::vector<int64_t>& dims) {
  Shape s = x.shape();
  if (dims.empty()) {
    std::fill(s.begin(), s.end(), 1);
    return s;
  }
  std::vector<bool> seen(x.dim());
  for (int64_t d : dims) {
    int64_t n = normalize_dim(d, x.dim(), op);
    if (x.dim() == 0) continue;
    LUMEN_CHECK(!seen[n], op, ": dim ", d, " appears twice in the reduction dims");
    seen[n] = true;
    s[n] = 1;
  }
  return s;
}

Shape drop_reduced(const Shape& x, const Shape& keep, const std::vector<int64_t>& dims) {
  Shape s;
  for (size_t d = 0; d < x.size(); ++d) {
    bool reduced = dims.empty();
    for (int64_t r : dims)
      if (normalize_dim(r, static_cast<int64_t>(x.size()), "reduce") == static_cast<int64_t>(d))
        reduced = true;
    if (!reduced) s.push_back(keep[d]);
  }
  return s;
}

Tensor run_reduce(const char* op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
                  ReduceOp kind, DType out_dtype, Shape* keep_shape = nullptr) {
  LUMEN_CHECK(x.defined(), op, ": got an undefined tensor");
  Shape keep = reduced_shape(op, x, dims);
  if (kind != ReduceOp::Sum && kind != ReduceOp::Mean)
    LUMEN_CHECK(x.numel() > 0, op, ": cannot reduce an empty tensor of shape ", ShapeStr{x.shape()},
                " (no identity for max/min)");
  Tensor out = zeros(keep, {out_dtype, x.device()});
  kernels::reduce(x.device(), out, x, kind);
  if (keep_shape) *keep_shape = keep;
  return keepdim ? out : out.view(drop_reduced(x.shape(), keep, dims));
}

Tensor extreme(const char* op, const Tensor& x, const std::vector<int64_t>& dims, bool keepdim,
               ReduceOp kind) {
  Shape keep;
  Tensor out = run_reduce(op, x, dims, keepdim, kind, x.dtype(), &keep);
  // d max / dx_i = 1/k on the k elements equal to the max, 0 elsewhere.
  return autograd::record(op, out, {x},
                          [xs = x.detach(), m = out.detach().reshape(keep), keep](
                              const Tensor& g, const autograd::NeedsGrad&) {
                            Tensor hit = eq(xs, m).to(xs.dtype());
                            Tensor count = sum(
                                hit,
                                [&] {
                                  std::vector<int64_t> d;
                                  for (int64_t i = 0; i < xs.dim(); ++i)
                                    if (keep[i] == 1 && xs.size(i) != 1) d.push_back(i);
                                  return d;
                                }(),
                                true);
                            return std::vector<Tensor>{hit * (g.reshape(keep) / count)};
                          });
}

}  // namespace

Tensor sum(const Tensor& input, const std::vector<int64_t>& dims, bool keepdim) {
  // Autocast: an f32 op.
  Tensor x = autocast::to_f32(input);
  DType dt = is_floating(x.dtype()) ? x.dtype() : DType::i64;
  Tensor xi = x.to(dt);
  Tensor out = run_reduce("sum", xi, dims, keepdim, ReduceOp::Sum, dt);
  return autograd::record("sum", out, {x},
                          [shape = x.shape(), keep = reduced_shape("sum", x, dims)](
                              const Tensor& g, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{g.reshape(keep).expand(shape)};
                          });
}

Tensor mean(const Tensor& input, const std::vector<int64_t>& dims, bool keepdim) {
  // Autocast: an f32 op.
  Tensor x = autocast::to_f32(input);
  LUMEN_CHECK(x.defined() && is_floating(x.dtype()), "mean: expects a floating tensor, got ",
              x.defined() ? dtype_name(x.dtype()) : "undefined");
  Shape keep = reduced_shape("mean", x, dims);
  Tensor out = run_reduce("mean", x, dims, keepdim, ReduceOp::Mean, x.dtype());
  double count = keep.empty() ? 1.0 : static_cast<double>(x.numel()) / numel_of(keep);
  return autograd::record(
      "mean", out, {x},
      [shape = x.shape(), keep, count](const Tensor& g, const autograd::NeedsGrad&) {
        return std::vector<Tensor>{(g / count).reshape(keep).expand(shape)};
      });
}

Tensor amax(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme("amax", x, dims, keepdim, ReduceOp::Max);
}
Tensor amin(const Tensor& x, const std::vector<int64_t>& dims, bool keepdim) {
  return extreme("amin", x, dims, keepdim, ReduceOp::Min);
}
Tensor argmax(const Tensor& x, int64_t dim, bool keepdim) {
  return run_reduce("argmax", x, {dim}, keepdim, ReduceOp::ArgMax, DType::i64);
}
Tensor argmin(const Tensor& x, int64_t dim, bool keepdim) {
  return run_reduce("argmin", x, {dim}, keepdim, ReduceOp::ArgMin, DType::i64);
}

Tensor Tensor::sum() const { return lumen::sum(*this); }
Tensor Tensor::sum(const std::vector<int64_t>& dims, bool keepdim) const {
  return lumen::sum(*this, dims, keepdim);
}
Tensor Tensor::mean() const { return lumen::mean(*this); }
Tensor Tensor::mean(const std::vector<int64_t>& dims, bool keepdim) const {
  return lumen::mean(*this, dims, keepdim);
}
Tensor Tensor::max() const { return amax(*this); }
Tensor Tensor::max(int64_t dim, bool keepdim) const { return amax(*this, {dim}, keepdim); }
Tensor Tensor::min() const { return amin(*this); }
Tensor Tensor::min(int64_t dim, bool keepdim) const { return amin(*this, {dim}, keepdim); }
Tensor Tensor::argmax(int64_t dim, bool keepdim) const {
  return lumen::argmax(*this, dim, keepdim);
}

}  // namespace lumen
