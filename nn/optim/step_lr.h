#pragma once
// StepLR, as torch.optim.lr_scheduler.StepLR: every step_size epochs the learning rate is
// multiplied by gamma, lr = base_lr * gamma^floor(epoch / step_size). Chainable as PyTorch's:
// each step multiplies the group's current lr, so other changes to it carry on.
#include <cstdint>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class StepLR : public LRScheduler {
 public:
  StepLR(Optimizer& optimizer, int64_t step_size, double gamma = 0.1);
  void step() override;
  std::string type_name() const override { return "StepLR"; }
  State state_dict() const override;  // + attrs step_size, gamma
  void load_state_dict(const State& state) override;

 private:
  int64_t step_size_;
  double gamma_;
};

}  // namespace lumen::optim
