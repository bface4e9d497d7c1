// Elementwise front-ends: check arguments, promote and broadcast, allocate the output, run the
// kernel of the inputs' device, record the backward.
#include "nn/functional/elementwise.h"

#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "autograd/node.h"
#include "kernels/elementwise.h"
#include "nn/functional/reduction.h"

namespace lumen {

using kernels::BinaryOp;
using kernels::CompareOp;
using kernels::UnaryArgs;
using kernels::UnaryOp;

namespace {

void check_same_device(const char* op, const Tensor& a, const Tensor& b) {
  LUMEN_CHECK(a.defined() && b.defined(), op, ": got an undefined tensor");
  LUMEN_CHECK(a.device() == b.device(), op, ": tensors are on different devices (", a.device(),
              " and ", b.device(), "); move them to one device with to()");
}

Tensor scalar_like(double v, const Tensor& t) {
  DType dt = t.dtype();
  if (!is_floating(dt) && v != static_cast<double>(static_cast<int64_t>(v))) dt = DType::f32;
  return scalar_tensor(v, {dt, t.device()});
}

Tensor unary_op(const char* name, const Tensor& x, UnaryArgs args) {
  LUMEN_CHECK(x.defined(), name, ": got an undefined tensor");
  LUMEN_CHECK(is_floating(x.dtype()), name, ": expected a floating tensor, got dtype ", x.dtype(),
              " of shape ", ShapeStr{x.shape()});
  Tensor out = empty(x.shape(), {x.dtype(), x.device()});
  kernels::unary(x.device(), out, x, args);
  Tensor xs = x.detach();
  return autograd::record(name, out, {x}, [xs, args](const Tensor& g, const autograd::NeedsGrad&) {
    Tensor gx = empty_like(xs);
    kernels::unary_backward(xs.device(), gx, g, xs, args);
    return std::vector<Tensor>{gx};
  });
}

// The promoted, broadcast output of a binary op, with both inputs cast to its dtype.
struct Broadcast {
  Tensor a, b, out;
};
Broadcast prepare_binary(const char* op, const Tensor& a, const Tensor& b, DType dtype) {
  check_same_device(op, a, b);
  Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  return {a.to(dtype), b.to(dtype), empty(shape, {dtype, a.device()})};
}

Tensor binary_op(const char* name, const Tensor& a, const Tensor& b, BinaryOp op, DType dtype,
                 autograd::BackwardFn backward) {
  Broadcast p = prepare_binary(name, a, b, dtype);
  kernels::binary(p.out.device(), p.out, p.a, p.b, op);
  return autograd::record(name, p.out, {a, b}, std::move(backward));
}

DType arith_type(const Tensor& a, const Tensor& b) { return promote_types(a.dtype(), b.dtype()); }

Tensor compare_op(const char* name, const Tensor& a, const Tensor& b, CompareOp op) {
  Broadcast p = prepare_binary(name, a, b, arith_type(a, b));
  Tensor out = empty(p.out.shape(), {DType::boolean, a.device()});
  kernels::compare(out.device(), out, p.a, p.b, op);
  return out;
}

// Gradients arrive in the output's dtype; each input gets its own back.
struct Meta {  // what add/sub keep of an input: no need to hold its memory alive
  Shape shape;
  DType dtype;
};
Tensor grad_for(const Tensor& g, const Meta& m) { return sum_to(g, m.shape).to(m.dtype); }
Tensor grad_for(const Tensor& g, const Tensor& input) {
  return grad_for(g, Meta{input.shape(), input.dtype()});
}

// Checks an in-place op's destination and counts the write in its storage's version.
void check_inplace(const Tensor& t, const char* op) {
  LUMEN_CHECK(t.defined(), op, ": got an undefined tensor");
  LUMEN_CHECK(!(t.requires_grad() && GradMode::is_enabled()), op,
              ": in-place operation on a tensor that requires grad (shape ", ShapeStr{t.shape()},
              (t.is_leaf() ? ", a leaf" : ", part of a graph"),
              ") is refused while grad mode is on; update parameters under NoGradGuard, or use "
              "the out-of-place op");
  t.bump_version();  // the write follows
}

}  // namespace

Tensor sum_to(const Tensor& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  int64_t lead = grad.dim() - static_cast<int64_t>(shape.size());
  LUMEN_CHECK(lead >= 0, "sum_to: cannot reduce shape ", ShapeStr{grad.shape()}, " to ",
              ShapeStr{shape});
  std::vector<int64_t> dims;
  for (int64_t i = 0; i < grad.dim(); ++i)
    if (i < lead || (shape[i - lead] == 1 && grad.size(i) != 1)) dims.push_back(i);
  Tensor r = dims.empty() ? grad : sum(grad, dims, true);
  return r.reshape(shape);
}

Tensor add(const Tensor& a, const Tensor& b) {
  return binary_op("add", a, b, BinaryOp::Add, arith_type(a, b),
                   [a = Meta{a.shape(), a.dtype()}, b = Meta{b.shape(), b.dtype()}](
                       const Tensor& g, const autograd::NeedsGrad& n) {
                     return std::vector<Tensor>{n[0] ? grad_for(g, a) : Tensor(),
                                                n[1] ? grad_for(g, b) : Tensor()};
                   });
}

Tensor sub(const Tensor& a, const Tensor& b) {
  return binary_op("sub", a, b, BinaryOp::Sub, arith_type(a, b),
                   [a = Meta{a.shape(), a.dtype()}, b = Meta{b.shape(), b.dtype()}](
                       const Tensor& g, const autograd::NeedsGrad& n) {
                     return std::vector<Tensor>{n[0] ? grad_for(g, a) : Tensor(),
                                                n[1] ? grad_for(-g, b) : Tensor()};
                   });
}

// d(ab) = b da + a db
Tensor mul(const Tensor& a, const Tensor& b) {
  return binary_op("mul", a, b, BinaryOp::Mul, arith_type(a, b),
                   [a = a.detach(), b = b.detach()](const Tensor& g, const autograd::NeedsGrad& n) {
                     return std::vector<Tensor>{n[0] ? grad_for(g * b, a) : Tensor(),
                                                n[1] ? grad_for(g * a, b) : Tensor()};
                   });
}

// d(a/b) = da / b - a db / b^2
Tensor div(const Tensor& a, const Tensor& b) {
  DType dt = arith_type(a, b);
  if (!is_floating(dt)) dt = DType::f32;
  return binary_op("div", a, b, BinaryOp::Div, dt,
                   [a = a.detach(), b = b.detach()](const Tensor& g, const autograd::NeedsGrad& n) {
                     return std::vector<Tensor>{n[0] ? grad_for(g / b, a) : Tensor(),
                                                n[1] ? grad_for(-g * a / (b * b), b) : Tensor()};
                   });
}

// d(a^b) = b a^(b-1) da + a^b ln(a) db
Tensor pow(const Tensor& a, const Tensor& b) {
  return binary_op("pow", a, b, BinaryOp::Pow, arith_type(a, b),
                   [a = a.detach(), b = b.detach()](const Tensor& g, const autograd::NeedsGrad& n) {
                     return std::vector<Tensor>{
                         n[0] ? grad_for(g * b * pow(a, b - 1.0), a) : Tensor(),
                         n[1] ? grad_for(g * pow(a, b) * log(a), b) : Tensor()};
                   });
}

// The gradient goes to the larger (smaller) input; ties split it evenly, as PyTorch.
static Tensor extremum(const char* name, const Tensor& a, const Tensor& b, BinaryOp op) {
  return binary_op(
      name, a, b, op, arith_type(a, b),
      [a = a.detach(), b = b.detach(), op](const Tensor& g, const autograd::NeedsGrad& n) {
        Tensor a_wins = op == BinaryOp::Maximum ? gt(a, b) : lt(a, b);
        Tensor tie = eq(a, b);
        Tensor half = g * 0.5;
        Tensor zero = zeros_like(g);
        Tensor ga = where(a_wins, g, where(tie, half, zero));
        Tensor gb = where(a_wins, zero, where(tie, half, g));
        return std::vector<Tensor>{n[0] ? grad_for(ga, a) : Tensor(),
                                   n[1] ? grad_for(gb, b) : Tensor()};
      });
}
Tensor maximum(const Tensor& a, const Tensor& b) {
  return extremum("maximum", a, b, BinaryOp::Maximum);
}
Tensor minimum(const Tensor& a, const Tensor& b) {
  return extremum("minimum", a, b, BinaryOp::Minimum);
}

Tensor pow(const Tensor& a, double e) { return unary_op("pow", a, {UnaryOp::PowScalar, e}); }
Tensor neg(const Tensor& x) { return unary_op("neg", x, {UnaryOp::Neg}); }
Tensor exp(const Tensor& x) { return unary_op("exp", x, {UnaryOp::Exp}); }
Tensor log(const Tensor& x) { return unary_op("log", x, {UnaryOp::Log}); }
Tensor sqrt(const Tensor& x) { return unary_op("sqrt", x, {UnaryOp::Sqrt}); }
Tensor abs(const Tensor& x) { return unary_op("abs", x, {UnaryOp::Abs}); }
Tensor relu(const Tensor& x) { return unary_op("relu", x, {UnaryOp::Relu}); }
Tensor leaky_relu(const Tensor& x, double negative_slope) {
  LUMEN_CHECK(std::isfinite(negative_slope), "leaky_relu: negative_slope must be finite, got ",
              negative_slope);
  return unary_op("leaky_relu", x, {UnaryOp::LeakyRelu, negative_slope});
}
Tensor sigmoid(const Tensor& x) { return unary_op("sigmoid", x, {UnaryOp::Sigmoid}); }
Tensor tanh(const Tensor& x) { return unary_op("tanh", x, {UnaryOp::Tanh}); }
Tensor gelu(const Tensor& x, const std::string& approximate) {
  LUMEN_CHECK(approximate == "none" || approximate == "tanh", "gelu: approximate must be ",
              "\"none\" or \"tanh\", got \"", approximate, "\"");
  return unary_op("gelu", x, {approximate == "tanh" ? UnaryOp::GeluTanh : UnaryOp::GeluErf});
}
Tensor clamp(const Tensor& x, std::optional<double> min, std::optional<double> max) {
  constexpr double inf = std::numeric_limits<double>::infinity();
  double lo = min.value_or(-inf), hi = max.value_or(inf);
  LUMEN_CHECK(lo <= hi, "clamp: min ", lo, " is greater than max ", hi);
  return unary_op("clamp", x, {UnaryOp::Clamp, lo, hi});
}

Tensor eq(const Tensor& a, const Tensor& b) { return compare_op("eq", a, b, CompareOp::Eq); }
Tensor ne(const Tensor& a, const Tensor& b) { return compare_op("ne", a, b, CompareOp::Ne); }
Tensor lt(const Tensor& a, const Tensor& b) { return compare_op("lt", a, b, CompareOp::Lt); }
Tensor le(const Tensor& a, const Tensor& b) { return compare_op("le", a, b, CompareOp::Le); }
Tensor gt(const Tensor& a, const Tensor& b) { return compare_op("gt", a, b, CompareOp::Gt); }
Tensor ge(const Tensor& a, const Tensor& b) { return compare_op("ge", a, b, CompareOp::Ge); }

Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b) {
  LUMEN_CHECK(cond.defined() && cond.dtype() == DType::boolean,
              "where: condition must be a bool tensor, got ",
              cond.defined() ? dtype_name(cond.dtype()) : "undefined");
  check_same_device("where", cond, a);
  check_same_device("where", a, b);
  Shape shape =
      broadcast_shapes(cond.shape(), broadcast_shapes(a.shape(), b.shape(), "where"), "where");
  DType dt = arith_type(a, b);
  Tensor out = empty(shape, {dt, a.device()});
  kernels::where(out.device(), out, cond, a.to(dt), b.to(dt));
  return autograd::record("where", out, {a, b},
                          [c = cond.detach(), a = a.detach(), b = b.detach()](
                              const Tensor& g, const autograd::NeedsGrad& n) {
                            Tensor zero = zeros_like(g);
                            return std::vector<Tensor>{
                                n[0] ? grad_for(where(c, g, zero), a) : Tensor(),
                                n[1] ? grad_for(where(c, zero, g), b) : Tensor()};
                          });
}

Tensor masked_fill(const Tensor& x, const Tensor& mask, double value) {
  LUMEN_CHECK(mask.defined() && mask.dtype() == DType::boolean,
              "masked_fill: mask must be a bool tensor, got ",
              mask.defined() ? dtype_name(mask.dtype()) : "undefined");
  Shape shape = broadcast_shapes(x.shape(), mask.shape(), "masked_fill");
  LUMEN_CHECK(shape == x.shape(), "masked_fill: mask of shape ", ShapeStr{mask.shape()},
              " must broadcast to the input's shape ", ShapeStr{x.shape()});
  return where(mask, scalar_tensor(value, {x.dtype(), x.device()}), x);
}

Tensor operator+(const Tensor& a, const Tensor& b) { return add(a, b); }
Tensor operator-(const Tensor& a, const Tensor& b) { return sub(a, b); }
Tensor operator*(const Tensor& a, const Tensor& b) { return mul(a, b); }
Tensor operator/(const Tensor& a, const Tensor& b) { return div(a, b); }
Tensor operator-(const Tensor& x) { return neg(x); }
Tensor operator+(const Tensor& a, double b) { return add(a, scalar_like(b, a)); }
Tensor operator-(const Tensor& a, double b) { return sub(a, scalar_like(b, a)); }
Tensor operator*(const Tensor& a, double b) { return mul(a, scalar_like(b, a)); }
Tensor operator/(const Tensor& a, double b) { return div(a, scalar_like(b, a)); }
Tensor operator+(double a, const Tensor& b) { return add(scalar_like(a, b), b); }
Tensor operator-(double a, const Tensor& b) { return sub(scalar_like(a, b), b); }
Tensor operator*(double a, const Tensor& b) { return mul(scalar_like(a, b), b); }
Tensor operator/(double a, const Tensor& b) { return div(scalar_like(a, b), b); }
Tensor operator<(const Tensor& a, const Tensor& b) { return lt(a, b); }
Tensor operator<=(const Tensor& a, const Tensor& b) { return le(a, b); }
Tensor operator>(const Tensor& a, const Tensor& b) { return gt(a, b); }
Tensor operator>=(const Tensor& a, const Tensor& b) { return ge(a, b); }

Tensor Tensor::exp() const { return lumen::exp(*this); }
Tensor Tensor::log() const { return lumen::log(*this); }
Tensor Tensor::sqrt() const { return lumen::sqrt(*this); }
Tensor Tensor::abs() const { return lumen::abs(*this); }
Tensor Tensor::neg() const { return lumen::neg(*this); }
Tensor Tensor::relu() const { return lumen::relu(*this); }
Tensor Tensor::sigmoid() const { return lumen::sigmoid(*this); }
Tensor Tensor::tanh() const { return lumen::tanh(*this); }
Tensor Tensor::pow(double e) const { return lumen::pow(*this, e); }

const Tensor& Tensor::fill_(double value) const {
  check_inplace(*this, "fill_");
  kernels::fill(device(), *this, value);
  return *this;
}

const Tensor& Tensor::copy_(const Tensor& src) const {
  check_inplace(*this, "copy_");
  LUMEN_CHECK(src.defined(), "copy_: source is undefined");
  Shape shape = broadcast_shapes(this->shape(), src.shape(), "copy_");
  LUMEN_CHECK(shape == this->shape(), "copy_: source of shape ", ShapeStr{src.shape()},
              " does not broadcast to the destination's shape ", ShapeStr{this->shape()});
  Tensor s = src.device() == device() ? src : src.to(device());
  kernels::copy(device(), *this, s);
  return *this;
}

const Tensor& Tensor::add_(const Tensor& other, double alpha) const {
  check_inplace(*this, "add_");
  check_same_device("add_", *this, other);
  LUMEN_CHECK(broadcast_shapes(shape(), other.shape(), "add_") == shape(),
              "add_: operand of shape ", ShapeStr{other.shape()}, " does not broadcast to ",
              ShapeStr{shape()});
  NoGradGuard no_grad;
  Tensor o = other.to(dtype());
  if (alpha != 1.0) o = o * alpha;
  kernels::binary(device(), *this, *this, o, BinaryOp::Add);
  return *this;
}

const Tensor& Tensor::mul_(const Tensor& other) const {
  check_inplace(*this, "mul_");
  check_same_device("mul_", *this, other);
  LUMEN_CHECK(broadcast_shapes(shape(), other.shape(), "mul_") == shape(),
              "mul_: operand of shape ", ShapeStr{other.shape()}, " does not broadcast to ",
              ShapeStr{shape()});
  NoGradGuard no_grad;
  kernels::binary(device(), *this, *this, other.to(dtype()), BinaryOp::Mul);
  return *this;
}

const Tensor& Tensor::mul_(double value) const {
  return mul_(scalar_tensor(value, {dtype(), device()}));
}

}  // namespace lumen
