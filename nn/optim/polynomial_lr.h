#pragma once
// PolynomialLR, as torch.optim.lr_scheduler.PolynomialLR: the lr decays to 0 over total_iters
// steps as lr(e) = base_lr (1 - min(e, total_iters) / total_iters)^power, computed as PyTorch
// does, chainably from the group's current lr:
//   lr(e) = lr(e-1) ((1 - e / T) / (1 - (e - 1) / T))^power  for 0 < e <= T, unchanged after.
#include <cstdint>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class PolynomialLR : public LRScheduler {
 public:
  PolynomialLR(Optimizer& optimizer, int64_t total_iters = 5, double power = 1.0);
  void step() override;
  std::string type_name() const override { return "PolynomialLR"; }
  State state_dict() const override;  // + attrs total_iters, power
  void load_state_dict(const State& state) override;

 private:
  int64_t total_iters_;
  double power_;
};

}  // namespace lumen::optim
