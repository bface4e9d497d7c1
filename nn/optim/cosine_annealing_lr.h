#pragma once
// CosineAnnealingLR, as torch.optim.lr_scheduler.CosineAnnealingLR (SGDR without restarts):
//   lr(e) = eta_min + (base_lr - eta_min) (1 + cos(pi e / T_max)) / 2
// computed, as PyTorch does, recursively from the group's current lr:
//   lr(e) = eta_min + (lr(e-1) - eta_min) (1 + cos(pi e / T_max)) / (1 + cos(pi (e-1) / T_max))
// and, one step past each minimum ((e - 1 - T_max) % (2 T_max) == 0), where that ratio is 0/0,
//   lr(e) = lr(e-1) + (base_lr - eta_min) (1 - cos(pi / T_max)) / 2.
// Past T_max the rate rises again (period 2 T_max), as PyTorch's.
#include <cstdint>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class CosineAnnealingLR : public LRScheduler {
 public:
  CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min = 0);
  void step() override;
  std::string type_name() const override { return "CosineAnnealingLR"; }
  State state_dict() const override;  // + attrs T_max, eta_min
  void load_state_dict(const State& state) override;

 private:
  int64_t t_max_;
  double eta_min_;
};

}  // namespace lumen::optim
