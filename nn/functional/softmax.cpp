// Softmax front-ends: check, make the input contiguous, run the kernel, record the backward,
// which needs only the output y (saved detached) and the incoming gradient.
#include "nn/functional/softmax.h"

#include <algorithm>

#include "autograd/autocast_mode.h"
#include "autograd/node.h"
#include "kernels/softmax.h"

namespace lumen {
namespace {

Tensor softmax_op(const char* name, const Tensor& input, int64_t dim, bool log) {
  // Autocast: an f32 op.
  Tensor x = autocast::to_f32(input);
  LUMEN_CHECK(x.defined(), name, ": got an undefined tensor");
  LUMEN_CHECK(is_floating(x.dtype()), name, ": expected a floating tensor, got dtype ", x.dtype(),
              " of shape ", ShapeStr{x.shape()});
  // A 0-d tensor accepts dim 0 or -1, as in PyTorch.
  const int64_t d = normalize_dim(dim, std::max<int64_t>(x.dim(), 1), name);
  Tensor xc = x.contiguous();
  Tensor out = empty(x.shape(), {x.dtype(), x.device()});
  kernels::softmax(x.device(), out, xc, d, log);
  return autograd::record(
      name, out, {x}, [y = out.detach(), d, log](const Tensor& g, const autograd::NeedsGrad&) {
        Tensor gx = empty_like(y);
        kernels::softmax_backward(y.device(), gx, g.to(y.dtype()).contiguous(), y, d, log);
        return std::vector<Tensor>{gx};
      });
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) { return softmax_op("softmax", x, dim, false); }
Tensor log_softmax(const Tensor& x, int64_t dim) { return softmax_op("log_softmax", x, dim, true); }

Tensor Tensor::softmax(int64_t dim) const { return lumen::softmax(*this, dim); }
Tensor Tensor::log_softmax(int64_t dim) const { return lumen::log_softmax(*this, dim); }

}  // namespace lumen
