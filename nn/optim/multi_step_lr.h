#pragma once
// MultiStepLR, as torch.optim.lr_scheduler.MultiStepLR: the learning rate is multiplied by
// gamma at each milestone epoch, lr = base_lr * gamma^(number of milestones <= epoch). A
// milestone listed twice multiplies by gamma twice (PyTorch counts them). Chainable.
#include <cstdint>
#include <vector>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class MultiStepLR : public LRScheduler {
 public:
  MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma = 0.1);
  void step() override;
  std::string type_name() const override { return "MultiStepLR"; }
  State state_dict() const override;  // + attrs milestones (sorted), gamma
  void load_state_dict(const State& state) override;

 private:
  std::vector<int64_t> milestones_;  // sorted, repeats kept
  double gamma_;
};

}  // namespace lumen::optim
