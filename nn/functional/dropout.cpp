// Dropout: out = x * m / (1 - p) with m ~ Bernoulli(1 - p) elementwise, so E[out] = x. The
// scaled mask m / (1 - p) is kept for the backward, g * m / (1 - p).
#include "nn/functional/dropout.h"

#include "autograd/node.h"
#include "kernels/elementwise.h"
#include "nn/functional/elementwise.h"

namespace lumen::nn::functional {

Tensor dropout(const Tensor& x, double p, bool training, Generator* gen) {
  LUMEN_CHECK(x.defined(), "dropout: got an undefined tensor");
  LUMEN_CHECK(p >= 0.0 && p <= 1.0, "dropout: probability p must be in [0, 1], got ", p);
  LUMEN_CHECK(is_floating(x.dtype()), "dropout: expected a floating tensor, got dtype ", x.dtype(),
              " of shape ", ShapeStr{x.shape()});
  if (!training || p == 0.0) return x;
  Device dev = x.device();
  Tensor mask = empty(x.shape(), {x.dtype(), dev});
  if (p == 1.0) {
    kernels::fill(dev, mask, 0.0);  // every element dropped; no draw needed
  } else {
    Generator& g = gen ? *gen : default_generator();
    uint64_t n = static_cast<uint64_t>(mask.numel());
    uint64_t offset =
        g.reserve(kernels::random_fill_blocks(kernels::RandomKind::Bernoulli, x.dtype(), n));
    kernels::random_fill(dev, mask, kernels::RandomKind::Bernoulli, 1.0 - p, g.seed(), offset);
    kernels::binary(dev, mask, mask, scalar_tensor(1.0 / (1.0 - p), {x.dtype(), dev}),
                    kernels::BinaryOp::Mul);
  }
  Tensor out = empty(x.shape(), {x.dtype(), dev});
  kernels::binary(dev, out, x, mask, kernels::BinaryOp::Mul);
  return autograd::record("dropout", out, {x},
                          [mask](const Tensor& grad, const autograd::NeedsGrad&) {
                            return std::vector<Tensor>{grad * mask};
                          });
}

}  // namespace lumen::nn::functional
