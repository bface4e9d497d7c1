#pragma once
// Metrics to log from validation and test steps (a small part of torchmetrics' functional API).
#include "tensor/tensor.h"

namespace lumen::metrics {

// The fraction of correct predictions, as a 0-d f32 tensor. `logits_or_preds` is either
// scores [N, C] (the prediction is the argmax over the last dim) or class indices [N]
// (any integer dtype); `target` holds class indices [N]. N must be positive.
Tensor accuracy(const Tensor& logits_or_preds, const Tensor& target);

}  // namespace lumen::metrics
