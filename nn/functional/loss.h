#pragma once
// Loss functions, as torch.nn.functional's. `reduction` is "mean" (the default), "sum" or
// "none" (per-element losses); any other string throws.
#include <cstdint>
#include <string>

#include "tensor/tensor.h"

namespace lumen::nn::functional {

struct CrossEntropyOptions {
  int64_t ignore_index = -100;   // targets equal to it contribute no loss and no gradient
  double label_smoothing = 0.0;  // in [0, 1]: the target becomes (1 - e) one_hot + e / C
  std::string reduction = "mean";
};

// Cross entropy of logits [N, C] or [N, C, d1, ...] (or unbatched [C]) against class indices
// (i64) [N] or [N, d1, ...] (or []), with log-softmax fused in. "mean" divides by the number of
// targets that are not ignore_index (NaN when all are, as PyTorch). Targets outside [0, C)
// other than ignore_index throw, naming the index and C. On CUDA the targets are copied to the
// host for this check.
//   cross_entropy(logits, labels, {.label_smoothing = 0.1})
Tensor cross_entropy(const Tensor& logits, const Tensor& target,
                     const CrossEntropyOptions& options = {});

// (input - target)^2, input and target of one shape.
Tensor mse_loss(const Tensor& input, const Tensor& target, const std::string& reduction = "mean");

// -[p y log sigmoid(x) + (1 - y) log(1 - sigmoid(x))], computed from the logits x without
// overflow; target y has x's shape; pos_weight p (optional) broadcasts to it (e.g. [C] for
// x [N, C]) and weighs the positive term.
Tensor binary_cross_entropy_with_logits(const Tensor& logits, const Tensor& target,
                                        const std::string& reduction = "mean",
                                        const Tensor& pos_weight = {});

}  // namespace lumen::nn::functional
