#pragma once
// Loss modules, as torch.nn's: each holds its options and calls the functional form
// (nn/functional/loss.h). They take an input and a target, so they are plain Modules:
//   nn::CrossEntropyLoss criterion({.label_smoothing = 0.1});
//   Tensor loss = criterion(logits, labels);
#include <string>

#include "nn/functional/loss.h"
#include "nn/module.h"

namespace lumen::nn {

// Cross entropy of logits [N, C] (or [N, C, d1, ...], or [C]) against i64 class indices.
class CrossEntropyLoss : public Module {
 public:
  explicit CrossEntropyLoss(functional::CrossEntropyOptions options = {});
  Tensor forward(const Tensor& input, const Tensor& target) const;
  Tensor operator()(const Tensor& input, const Tensor& target) const {
    return forward(input, target);
  }
  std::string type_name() const override { return "CrossEntropyLoss"; }
  const functional::CrossEntropyOptions options;
};

struct MSELossOptions {
  std::string reduction = "mean";  // "mean", "sum" or "none"
};

// (input - target)^2, reduced.
class MSELoss : public Module {
 public:
  explicit MSELoss(MSELossOptions options = {});
  Tensor forward(const Tensor& input, const Tensor& target) const;
  Tensor operator()(const Tensor& input, const Tensor& target) const {
    return forward(input, target);
  }
  std::string type_name() const override { return "MSELoss"; }
  const std::string reduction;
};

struct BCEWithLogitsLossOptions {
  std::string reduction = "mean";  // "mean", "sum" or "none"
  // Weight of the positive term, broadcast to the input (e.g. [C] for [N, C]); a buffer
  // named "pos_weight" when given, as in PyTorch, so it follows to() and the state_dict.
  Tensor pos_weight = {};
};

// Binary cross entropy on logits with the sigmoid fused in (no overflow for large |x|).
class BCEWithLogitsLoss : public Module {
 public:
  explicit BCEWithLogitsLoss(BCEWithLogitsLossOptions options = {});
  Tensor forward(const Tensor& input, const Tensor& target) const;
  Tensor operator()(const Tensor& input, const Tensor& target) const {
    return forward(input, target);
  }
  std::string type_name() const override { return "BCEWithLogitsLoss"; }
  const std::string reduction;
  Tensor pos_weight;
};

}  // namespace lumen::nn
