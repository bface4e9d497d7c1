#include "nn/loss.h"

#include "tensor/error.h"

namespace lumen::nn {

namespace {
// Checked when the loss is built, so a typo fails at construction rather than mid-training.
const std::string& checked_reduction(const char* loss, const std::string& reduction) {
  LUMEN_CHECK(reduction == "mean" || reduction == "sum" || reduction == "none", loss,
              ": reduction must be 'mean', 'sum' or 'none', got '", reduction, "'");
  return reduction;
}
}  // namespace

CrossEntropyLoss::CrossEntropyLoss(functional::CrossEntropyOptions options)
    : options(std::move(options)) {
  checked_reduction("CrossEntropyLoss", this->options.reduction);
  LUMEN_CHECK(this->options.label_smoothing >= 0.0 && this->options.label_smoothing <= 1.0,
              "CrossEntropyLoss: label_smoothing must lie in [0, 1], got ",
              this->options.label_smoothing);
}

Tensor CrossEntropyLoss::forward(const Tensor& input, const Tensor& target) const {
  return functional::cross_entropy(input, target, options);
}

MSELoss::MSELoss(MSELossOptions options)
    : reduction(checked_reduction("MSELoss", options.reduction)) {}

Tensor MSELoss::forward(const Tensor& input, const Tensor& target) const {
  return functional::mse_loss(input, target, reduction);
}

BCEWithLogitsLoss::BCEWithLogitsLoss(BCEWithLogitsLossOptions options)
    : reduction(checked_reduction("BCEWithLogitsLoss", options.reduction)),
      pos_weight(std::move(options.pos_weight)) {
  if (pos_weight.defined()) {
    LUMEN_CHECK(is_floating(pos_weight.dtype()),
                "BCEWithLogitsLoss: pos_weight must be a floating tensor, got dtype ",
                pos_weight.dtype());
    register_buffer("pos_weight", pos_weight);
  }
}

Tensor BCEWithLogitsLoss::forward(const Tensor& input, const Tensor& target) const {
  return functional::binary_cross_entropy_with_logits(input, target, reduction, pos_weight);
}

}  // namespace lumen::nn
