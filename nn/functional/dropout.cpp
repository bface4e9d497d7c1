// Dropout: out = x * m / (1 - p) with m ~ Bernoulli(1 - p) elementwise, so E[out] = x. The mask
// is a function of the generator's (seed, offset) and the element's position (DropoutMask in
// kernels/elementwise_ops.h), so it is not stored: the backward, g * m / (1 - p), is the same
// kernel run on g with the same (seed, offset).
#include "nn/functional/dropout.h"

#include "autograd/node.h"
#include "kernels/elementwise.h"
#include "nn/functional/elementwise.h"

namespace lumen::nn::functional {
namespace {

Tensor dropout_impl(const char* op, const Tensor& x, const Tensor& residual, double p,
                    bool training, Generator* gen) {
  LUMEN_CHECK(x.defined(), op, ": got an undefined tensor");
  LUMEN_CHECK(p >= 0.0 && p <= 1.0, op, ": probability p must be in [0, 1], got ", p);
  LUMEN_CHECK(is_floating(x.dtype()), op, ": expected a floating tensor, got dtype ", x.dtype(),
              " of shape ", ShapeStr{x.shape()});
  if (residual.defined()) {
    LUMEN_CHECK(residual.shape() == x.shape() && residual.dtype() == x.dtype() &&
                    residual.device() == x.device(),
                op, ": residual ", residual.dtype(), " ", ShapeStr{residual.shape()}, " on ",
                residual.device(), " must match x ", x.dtype(), " ", ShapeStr{x.shape()}, " on ",
                x.device());
  }
  if (!training || p == 0.0) return residual.defined() ? x + residual : x;
  const Device dev = x.device();
  uint64_t seed = 0, offset = 0;
  if (p < 1.0) {  // p = 1 drops everything: no draw
    Generator& g = gen ? *gen : default_generator();
    seed = g.seed();
    offset = g.reserve(kernels::random_fill_blocks(kernels::RandomKind::Bernoulli, x.dtype(),
                                                   static_cast<uint64_t>(x.numel())));
  }
  const kernels::DropoutMask mask(p, seed, offset);
  Tensor out = empty(x.shape(), {x.dtype(), dev});
  kernels::dropout(dev, out, x, residual, mask);
  std::vector<Tensor> inputs = {x};
  if (residual.defined()) inputs.push_back(residual);
  return autograd::record(op, out, inputs,
                          [mask](const Tensor& g, const autograd::NeedsGrad& needs) {
                            Tensor gx;
                            if (needs[0]) {
                              gx = empty(g.shape(), {g.dtype(), g.device()});
                              kernels::dropout(g.device(), gx, g, Tensor(), mask);
                            }
                            return std::vector<Tensor>{gx, g};  // residual: g itself
                          });
}

}  // namespace

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  return dropout_impl("dropout", x, Tensor(), p, training, gen);
}

Tensor dropout_add(const Tensor& x, const Tensor& residual, double p, bool training,
                   Generator* gen) {
  LUMEN_CHECK(residual.defined(), "dropout_add: got an undefined residual");
  return dropout_impl("dropout_add", x, residual, p, training, gen);
}

}  // namespace lumen::nn::functional
