// Pooling front-ends: check the window against the input, run the kernel on a contiguous
// input, record the backward (max pooling keeps the argmax indices for it).
#include "nn/functional/pool.h"

#include "autograd/node.h"
#include "kernels/pool.h"

namespace lumen::nn::functional {
namespace {

// Checks x and the window, and gives the kernel parameters and the output shape.
std::pair<kernels::Pool2dParams, Shape> plan(const char* op, const Tensor& x, Size2 k,
                                             std::optional<Size2> stride_opt, Size2 pad,
                                             Size2 dil) {
  LUMEN_CHECK(x.defined(), op, ": got an undefined tensor");
  LUMEN_CHECK(x.dim() == 3 || x.dim() == 4, op, ": expected a 3-D [C, H, W] or 4-D [N, C, H, W] ",
              "input, got shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(is_floating(x.dtype()), op, ": expected a floating input, got dtype ", x.dtype(),
              " of shape ", ShapeStr{x.shape()});
  Size2 s = stride_opt.value_or(k);
  LUMEN_CHECK(k[0] >= 1 && k[1] >= 1 && s[0] >= 1 && s[1] >= 1 && dil[0] >= 1 && dil[1] >= 1, op,
              ": expected kernel, stride and dilation >= 1, got kernel [", k[0], ", ", k[1],
              "], stride [", s[0], ", ", s[1], "], dilation [", dil[0], ", ", dil[1], "]");
  LUMEN_CHECK(pad[0] >= 0 && pad[1] >= 0 && pad[0] <= k[0] / 2 && pad[1] <= k[1] / 2, op,
              ": padding [", pad[0], ", ", pad[1], "] must be non-negative and at most half the ",
              "kernel [", k[0], ", ", k[1], "]");
  const int64_t H = x.size(-2), W = x.size(-1);
  LUMEN_CHECK(H > 0 && W > 0, op, ": expected a non-empty height and width, got input of shape ",
              ShapeStr{x.shape()});
  const int64_t eh = dil[0] * (k[0] - 1) + 1, ew = dil[1] * (k[1] - 1) + 1;
  LUMEN_CHECK(eh <= H + 2 * pad[0] && ew <= W + 2 * pad[1], op, ": kernel [", k[0], ", ", k[1],
              "] (", eh, "x", ew, " with dilation) is larger than the padded input [",
              H + 2 * pad[0], ", ", W + 2 * pad[1], "] (input shape ", ShapeStr{x.shape()},
              ", padding [", pad[0], ", ", pad[1], "])");
  Shape out = x.shape();
  out[out.size() - 2] = (H + 2 * pad[0] - eh) / s[0] + 1;
  out[out.size() - 1] = (W + 2 * pad[1] - ew) / s[1] + 1;
  kernels::Pool2dParams p{k[0], k[1], s[0], s[1], pad[0], pad[1], dil[0], dil[1], true};
  return {p, out};
}

}  // namespace

Tensor max_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride, Size2 padding,
                  Size2 dilation) {
  auto [p, shape] = plan("max_pool2d", x, kernel, stride, padding, dilation);
  Tensor out = empty(shape, {x.dtype(), x.device()});
  Tensor indices = empty(shape, {DType::i64, x.device()});
  kernels::max_pool2d(x.device(), out, indices, x.detach().contiguous(), p);
  return autograd::record(
      "max_pool2d", out, {x},
      [indices, p, x_shape = x.shape()](const Tensor& g, const autograd::NeedsGrad&) {
        Tensor gx = empty(x_shape, {g.dtype(), g.device()});
        kernels::max_pool2d_backward(g.device(), gx, g.contiguous(), indices, p);
        return std::vector<Tensor>{gx};
      });
}

Tensor avg_pool2d(const Tensor& x, Size2 kernel, std::optional<Size2> stride, Size2 padding,
                  bool count_include_pad) {
  auto [p, shape] = plan("avg_pool2d", x, kernel, stride, padding, {1, 1});
  p.count_include_pad = count_include_pad;
  Tensor out = empty(shape, {x.dtype(), x.device()});
  kernels::avg_pool2d(x.device(), out, x.detach().contiguous(), p);
  return autograd::record("avg_pool2d", out, {x},
                          [p, x_shape = x.shape()](const Tensor& g, const autograd::NeedsGrad&) {
                            Tensor gx = empty(x_shape, {g.dtype(), g.device()});
                            kernels::avg_pool2d_backward(g.device(), gx, g.contiguous(), p);
                            return std::vector<Tensor>{gx};
                          });
}

}  // namespace lumen::nn::functional
