// Matrix-product front-ends: check arguments, broadcast batch dims, give the kernel operands it
// can hand to a GEMM unchanged (transposed views included), record the backward.
#include "nn/functional/linalg.h"

#include "autograd/autocast_mode.h"
#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "kernels/linalg.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/reduction.h"

namespace lumen {
namespace {

void check_operands(const char* op, const Tensor& a, const Tensor& b) {
  LUMEN_CHECK(a.defined() && b.defined(), op, ": got an undefined tensor");
  LUMEN_CHECK(a.device() == b.device(), op, ": operands of shapes ", ShapeStr{a.shape()}, " and ",
              ShapeStr{b.shape()}, " are on different devices (", a.device(), " and ", b.device(),
              ")");
  LUMEN_CHECK(is_floating(a.dtype()) && a.dtype() == b.dtype(), op,
              ": expected two floating tensors of one dtype, got ", a.dtype(), " ",
              ShapeStr{a.shape()}, " and ", b.dtype(), " ", ShapeStr{b.shape()});
}

Shape batch_of(const Tensor& t) { return Shape(t.shape().begin(), t.shape().end() - 2); }

// `t` (no graph) as a view of shape batch + its last two dims, with a layout the GEMM takes:
// a strided slice is copied first; broadcast batch dims get stride 0.
Tensor gemm_operand(Tensor t, const Shape& batch) {
  if (!kernels::gemm_layout_ok(t)) t = t.contiguous();
  size_t nb = batch.size(), lead = nb - (t.shape().size() - 2);
  Shape shape = batch, strides(nb, 0);
  for (size_t i = lead; i < nb; ++i)
    if (t.size(static_cast<int64_t>(i - lead)) != 1)
      strides[i] = t.stride(static_cast<int64_t>(i - lead));
  shape.push_back(t.size(-2));
  shape.push_back(t.size(-1));
  strides.push_back(t.stride(-2));
  strides.push_back(t.stride(-1));
  return make_view(t, shape, strides, t.offset());
}

// a [..., M, K] @ b [..., K, N], both at least 2-D with broadcastable batch dims: the one
// differentiable primitive behind matmul and linear.
//   C = A B:  dA = dC B^T,  dB = A^T dC,
// each summed over the batch dims its operand was broadcast along.
Tensor matmul_nd(const Tensor& a, const Tensor& b) {
  Shape ba = batch_of(a), bb = batch_of(b);
  size_t nb = std::max(ba.size(), bb.size());
  Shape batch(nb);
  for (size_t i = 0; i < nb; ++i) {
    int64_t x = i + ba.size() >= nb ? ba[i + ba.size() - nb] : 1;
    int64_t y = i + bb.size() >= nb ? bb[i + bb.size() - nb] : 1;
    LUMEN_CHECK(x == y || x == 1 || y == 1, "matmul: batch dims ", ShapeStr{ba}, " of ",
                ShapeStr{a.shape()}, " and ", ShapeStr{bb}, " of ", ShapeStr{b.shape()},
                " do not broadcast");
    batch[i] = x == 1 ? y : x;
  }
  Shape out_shape = batch;
  out_shape.push_back(a.size(-2));
  out_shape.push_back(b.size(-1));
  Tensor out = empty(out_shape, {a.dtype(), a.device()});
  kernels::matmul(a.device(), out, gemm_operand(a.detach(), batch),
                  gemm_operand(b.detach(), batch));
  return autograd::record(
      "matmul", out, {a, b},
      [a = a.detach(), b = b.detach()](const Tensor& g, const autograd::NeedsGrad& needs) {
        return std::vector<Tensor>{
            needs[0] ? sum_to(matmul_nd(g, b.transpose(-1, -2)), a.shape()) : Tensor(),
            needs[1] ? sum_to(matmul_nd(a.transpose(-1, -2), g), b.shape()) : Tensor()};
      });
}

}  // namespace

Tensor matmul(const Tensor& a_in, const Tensor& b_in) {
  // Autocast: a low-precision op (tensor cores, f32 accumulation).
  Tensor a = autocast::to_lower_precision(a_in), b = autocast::to_lower_precision(b_in);
  check_operands("matmul", a, b);
  LUMEN_CHECK(a.dim() >= 1 && b.dim() >= 1, "matmul: both operands must be at least 1-D, got ",
              "shapes ", ShapeStr{a.shape()}, " and ", ShapeStr{b.shape()});
  int64_t ka = a.size(-1), kb = b.size(b.dim() == 1 ? 0 : -2);
  LUMEN_CHECK(
      ka == kb, "matmul: shapes ", ShapeStr{a.shape()}, " and ", ShapeStr{b.shape()},
      " cannot be multiplied: the last dim of the first (", ka, ") must equal ",
      b.dim() == 1 ? "the length of the second (" : "the second-to-last dim of the second (", kb,
      ")");
  if (a.dim() == 1 && b.dim() == 1) return matmul_nd(a.unsqueeze(0), b.unsqueeze(1)).reshape({});
  if (a.dim() == 1) return matmul_nd(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul_nd(a, b.unsqueeze(1)).squeeze(-1);
  // A stack of matrices times one matrix is one tall GEMM: [..., M, K] -> [(... M), K].
  if (a.dim() > 2 && b.dim() == 2 && a.is_contiguous()) {
    Shape out_shape = a.shape();
    out_shape.back() = b.size(1);
    return matmul_nd(a.reshape({-1, ka}), b).reshape(out_shape);
  }
  return matmul_nd(a, b);
}

Tensor Tensor::matmul(const Tensor& other) const { return lumen::matmul(*this, other); }

namespace nn::functional {

namespace {

std::optional<kernels::UnaryArgs> activation_args(Activation act) {
  switch (act) {
    case Activation::None:
      return std::nullopt;
    case Activation::ReLU:
      return kernels::UnaryArgs{kernels::UnaryOp::Relu};
    case Activation::GELU:
      return kernels::UnaryArgs{kernels::UnaryOp::GeluErf};
    case Activation::GELUTanh:
      return kernels::UnaryArgs{kernels::UnaryOp::GeluTanh};
  }
  return std::nullopt;
}

}  // namespace

Tensor linear(const Tensor& input, const Tensor& weight_in, const Tensor& bias_in,
              Activation activation) {
  // Autocast: a low-precision op (tensor cores, f32 accumulation).
  Tensor x = autocast::to_lower_precision(input), weight = autocast::to_lower_precision(weight_in),
         bias = autocast::to_lower_precision(bias_in);
  check_operands("linear", x, weight);
  LUMEN_CHECK(weight.dim() == 2, "linear: weight must be 2-D [out_features, in_features], got ",
              ShapeStr{weight.shape()});
  LUMEN_CHECK(x.dim() >= 1 && x.size(-1) == weight.size(1), "linear: input of shape ",
              ShapeStr{x.shape()}, " does not match weight of shape ", ShapeStr{weight.shape()},
              ": expected the input's last dim to be in_features = ", weight.size(1));
  if (bias.defined()) {
    check_operands("linear", x, bias);
    LUMEN_CHECK(bias.dim() == 1 && bias.size(0) == weight.size(0), "linear: bias of shape ",
                ShapeStr{bias.shape()}, " does not match weight of shape ",
                ShapeStr{weight.shape()}, ": expected [", weight.size(0), "]");
  }
  // y = act(x W^T + b) over the rows of x [..., in], as one GEMM on x viewed as [N, in] (W^T is
  // a column-major view the GEMM reads in place) with the bias and activation in its epilogue.
  // With z = x W^T + b and g the gradient of y:
  //   dz = g act'(z),   dx = dz W  ([N, out] x [out, in]),   dW = dz^T x  ([out, N] x [N, in]),
  //   db = sum over rows of dz.
  // dW comes out [out, in] row-major like W itself (through matmul and transpose it would come
  // out transposed, and accumulating it would cost a transposing copy per step). ReLU's
  // derivative reads from y itself (y > 0 exactly where z > 0); other activations keep z.
  const int64_t in = weight.size(1), out_features = weight.size(0);
  const std::optional<kernels::UnaryArgs> act = activation_args(activation);
  std::vector<Tensor> inputs = {x, weight};
  if (bias.defined()) inputs.push_back(bias);
  const bool keep_pre =
      act && act->op != kernels::UnaryOp::Relu && autograd::any_requires_grad(inputs);
  Tensor x2 = gemm_operand(x.detach().reshape({-1, in}), {});
  Tensor w = weight.detach();
  const Device dev = x.device();
  Tensor y = empty({x2.size(0), out_features}, {x.dtype(), dev});
  Tensor pre = keep_pre ? empty(y.shape(), {x.dtype(), dev}) : Tensor();
  // An epilogue reads the bias as a plain vector.
  kernels::linear(dev, y, pre, x2, gemm_operand(w.t(), {}),
                  bias.defined() ? bias.detach().contiguous() : Tensor(), act);
  Shape out_shape = x.shape();
  out_shape.back() = out_features;
  Tensor act_input = !act ? Tensor() : keep_pre ? pre : y.detach();
  y = autograd::record("linear", y.reshape(out_shape), inputs,
                       [x2, w, act, act_input, x_shape = x.shape(), out_features](
                           const Tensor& g, const autograd::NeedsGrad& needs) {
                         Tensor dz = g.reshape({-1, out_features});
                         if (act) {
                           Tensor gz = empty(dz.shape(), {dz.dtype(), dz.device()});
                           kernels::unary_backward(dz.device(), gz, dz, act_input, *act);
                           dz = gz;
                         }
                         std::vector<Tensor> grads = {
                             needs[0] ? lumen::matmul(dz, w).reshape(x_shape) : Tensor(),
                             needs[1] ? lumen::matmul(dz.t(), x2) : Tensor()};
                         if (needs.size() > 2)
                           grads.push_back(needs[2] ? lumen::sum(dz, {0}) : Tensor());
                         return grads;
                       });
  return y;
}

}  // namespace nn::functional
}  // namespace lumen
