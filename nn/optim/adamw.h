#pragma once
// AdamW, as torch.optim.AdamW (Loshchilov & Hutter): Adam whose weight decay shrinks the
// parameter directly, p = p * (1 - lr * weight_decay), instead of adding weight_decay * p to
// the gradient (so the decay is not rescaled by the adaptive denominator). Default
// weight_decay 1e-2.
#include <vector>

#include "nn/optim/adam.h"

namespace lumen::optim {

struct AdamWOptions {
  double lr = 1e-3;
  std::array<double, 2> betas = {0.9, 0.999};
  double eps = 1e-8;
  double weight_decay = 1e-2;
  bool amsgrad = false;
  bool maximize = false;
};

class AdamW : public Adam {
 public:
  explicit AdamW(std::vector<Tensor> params, AdamWOptions options = {});
  // Group options as Adam's.
  explicit AdamW(std::vector<ParamGroup> groups, AdamWOptions defaults = {});
};

}  // namespace lumen::optim
