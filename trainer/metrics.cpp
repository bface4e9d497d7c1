#include "trainer/metrics.h"

#include "autograd/grad_mode.h"
#include "nn/functional/elementwise.h"
#include "nn/functional/reduction.h"
#include "tensor/error.h"

namespace lumen::metrics {

Tensor accuracy(const Tensor& logits_or_preds, const Tensor& target) {
  LUMEN_CHECK(logits_or_preds.defined() && target.defined(), "accuracy: expected defined tensors");
  LUMEN_CHECK(target.dim() == 1, "accuracy: target must hold class indices [N], got shape ",
              ShapeStr{target.shape()});
  LUMEN_CHECK(!is_floating(target.dtype()),
              "accuracy: target must hold integer class indices, got dtype ", target.dtype());
  int64_t n = target.size(0);
  LUMEN_CHECK(n > 0, "accuracy: expected at least one example, got an empty target");
  NoGradGuard no_grad;
  Tensor preds;
  if (logits_or_preds.dim() == 2) {
    LUMEN_CHECK(logits_or_preds.size(0) == n, "accuracy: logits ",
                ShapeStr{logits_or_preds.shape()}, " and target ", ShapeStr{target.shape()},
                " disagree on N");
    preds = logits_or_preds.argmax(-1);
  } else {
    LUMEN_CHECK(logits_or_preds.dim() == 1 && logits_or_preds.size(0) == n,
                "accuracy: expected logits [N, C] or predicted classes [N] with N = ", n,
                " (target ", ShapeStr{target.shape()}, "), got shape ",
                ShapeStr{logits_or_preds.shape()});
    LUMEN_CHECK(!is_floating(logits_or_preds.dtype()),
                "accuracy: 1-D predictions must be integer class indices, got dtype ",
                logits_or_preds.dtype(), " (pass the logits [N, C] for scores)");
    preds = logits_or_preds;
  }
  Tensor correct =
      eq(preds.to(DType::i64), target.to(DType::i64).to(preds.device())).to(DType::f32);
  return correct.mean();
}

}  // namespace lumen::metrics
