#pragma once
// ExponentialLR, as torch.optim.lr_scheduler.ExponentialLR: lr = base_lr * gamma^epoch, as
// one multiplication by gamma per step (chainable).
#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class ExponentialLR : public LRScheduler {
 public:
  ExponentialLR(Optimizer& optimizer, double gamma);
  void step() override;
  std::string type_name() const override { return "ExponentialLR"; }
  State state_dict() const override;  // + attr gamma
  void load_state_dict(const State& state) override;

 private:
  double gamma_;
};

}  // namespace lumen::optim
