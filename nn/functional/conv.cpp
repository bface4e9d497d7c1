// Convolution front-end: check arguments, give the kernels contiguous NCHW tensors, record the
// backward (grad input and grad weight from their kernels, grad bias as a sum).
#include "nn/functional/conv.h"

#include "autograd/autocast_mode.h"
#include "autograd/node.h"
#include "kernels/conv.h"
#include "nn/functional/reduction.h"

namespace lumen::nn::functional {
namespace {

void check_operand(const char* what, const Tensor& x, const Tensor& t) {
  LUMEN_CHECK(t.device() == x.device(), "conv2d: ", what, " of shape ", ShapeStr{t.shape()},
              " is on ", t.device(), " but the input is on ", x.device());
  LUMEN_CHECK(t.dtype() == x.dtype(), "conv2d: ", what, " has dtype ", t.dtype(),
              " but the input has dtype ", x.dtype(), "; expected one dtype");
}

// [N, Cin, H, W] input: the differentiable primitive.
Tensor conv2d_4d(const Tensor& x, const Tensor& weight, const Tensor& bias, Size2 stride,
                 Size2 padding, Size2 dilation, int64_t groups) {
  const int64_t N = x.size(0), C = x.size(1), H = x.size(2), W = x.size(3);
  const int64_t O = weight.size(0), KH = weight.size(2), KW = weight.size(3);
  LUMEN_CHECK(C % groups == 0 && O % groups == 0, "conv2d: input of shape ", ShapeStr{x.shape()},
              " (", C, " channels) and weight of shape ", ShapeStr{weight.shape()}, " (", O,
              " output channels) must both have a channel count divisible by groups = ", groups);
  LUMEN_CHECK(weight.size(1) * groups == C, "conv2d: weight of shape ", ShapeStr{weight.shape()},
              " with groups = ", groups, " expects ", weight.size(1) * groups,
              " input channels, but the input of shape ", ShapeStr{x.shape()}, " has ", C);
  const int64_t eh = dilation[0] * (KH - 1) + 1, ew = dilation[1] * (KW - 1) + 1;
  const int64_t ph = H + 2 * padding[0], pw = W + 2 * padding[1];
  LUMEN_CHECK(eh <= ph && ew <= pw, "conv2d: kernel of size [", KH, ", ", KW, "] (", eh, "x", ew,
              " with dilation) is larger than the padded input [", ph, ", ", pw, "] (input shape ",
              ShapeStr{x.shape()}, ", padding [", padding[0], ", ", padding[1], "])");
  if (bias.defined()) {
    check_operand("bias", x, bias);
    LUMEN_CHECK(bias.dim() == 1 && bias.size(0) == O, "conv2d: bias of shape ",
                ShapeStr{bias.shape()}, " does not match weight of shape ",
                ShapeStr{weight.shape()}, ": expected [", O, "]");
  }
  kernels::Conv2dParams p{stride[0],   stride[1],   padding[0], padding[1],
                          dilation[0], dilation[1], groups};
  Tensor out =
      empty({N, O, (ph - eh) / stride[0] + 1, (pw - ew) / stride[1] + 1}, {x.dtype(), x.device()});
  Tensor xc = x.detach().contiguous(), wc = weight.detach().contiguous();
  kernels::conv2d(x.device(), out, xc, wc, bias.defined() ? bias.detach().contiguous() : Tensor(),
                  p);
  return autograd::record("conv2d", out, {x, weight, bias},
                          [xc, wc, p](const Tensor& g, const autograd::NeedsGrad& needs) {
                            Tensor gc = g.contiguous();
                            Tensor gx, gw, gb;
                            if (needs[0]) {
                              gx = empty(xc.shape(), {xc.dtype(), xc.device()});
                              kernels::conv2d_backward_input(gx.device(), gx, gc, wc, p);
                            }
                            if (needs[1]) {
                              gw = empty(wc.shape(), {wc.dtype(), wc.device()});
                              kernels::conv2d_backward_weight(gw.device(), gw, gc, xc, p);
                            }
                            if (needs[2]) gb = sum(gc, {0, 2, 3});
                            return std::vector<Tensor>{gx, gw, gb};
                          });
}

}  // namespace

Tensor conv2d(const Tensor& input, const Tensor& weight_in, const Tensor& bias_in, Size2 stride,
              Size2 padding, Size2 dilation, int64_t groups) {
  // Autocast: a low-precision op (tensor cores, f32 accumulation).
  Tensor x = autocast::to_lower_precision(input), weight = autocast::to_lower_precision(weight_in),
         bias = autocast::to_lower_precision(bias_in);
  LUMEN_CHECK(x.defined() && weight.defined(), "conv2d: got an undefined input or weight");
  LUMEN_CHECK(is_floating(x.dtype()), "conv2d: expected a floating input, got dtype ", x.dtype(),
              " of shape ", ShapeStr{x.shape()});
  check_operand("weight", x, weight);
  LUMEN_CHECK(x.dim() == 3 || x.dim() == 4, "conv2d: expected a 3-D [C, H, W] or 4-D ",
              "[N, C, H, W] input, got shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(weight.dim() == 4, "conv2d: expected a 4-D weight [Cout, Cin/groups, kH, kW], ",
              "got shape ", ShapeStr{weight.shape()});
  LUMEN_CHECK(groups >= 1, "conv2d: groups must be positive, got ", groups);
  LUMEN_CHECK(stride[0] >= 1 && stride[1] >= 1 && dilation[0] >= 1 && dilation[1] >= 1 &&
                  padding[0] >= 0 && padding[1] >= 0,
              "conv2d: expected stride >= 1, dilation >= 1 and padding >= 0, got stride [",
              stride[0], ", ", stride[1], "], padding [", padding[0], ", ", padding[1],
              "], dilation [", dilation[0], ", ", dilation[1], "]");
  if (x.dim() == 3)
    return conv2d_4d(x.unsqueeze(0), weight, bias, stride, padding, dilation, groups).squeeze(0);
  return conv2d_4d(x, weight, bias, stride, padding, dilation, groups);
}

Tensor conv1d(const Tensor& x, const Tensor& weight, const Tensor& bias, int64_t stride,
              int64_t padding, int64_t dilation, int64_t groups) {
  LUMEN_CHECK(x.defined() && weight.defined(), "conv1d: input and weight must be defined");
  LUMEN_CHECK(x.dim() == 2 || x.dim() == 3, "conv1d: expected an input [N, C, L] or [C, L], got ",
              "shape ", ShapeStr{x.shape()});
  LUMEN_CHECK(weight.dim() == 3, "conv1d: expected a weight [out, in / groups, kernel], got shape ",
              ShapeStr{weight.shape()});
  // The length is the width of a one-row image; the row dim is inserted before it.
  Tensor y = conv2d(x.unsqueeze(-2), weight.unsqueeze(2), bias, {1, stride}, {0, padding},
                    {1, dilation}, groups);
  return y.squeeze(-2);
}

}  // namespace lumen::nn::functional
