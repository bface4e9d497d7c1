#pragma once
// SWALR, as torch.optim.swa_utils.SWALR: anneals each group's lr from its value when the
// scheduler is built to swa_lr over anneal_epochs steps, then holds swa_lr; the schedule of
// stochastic weight averaging's averaging phase. With alpha_k = f(min(1, k / anneal_epochs)),
// f(t) = (1 - cos(pi t)) / 2 ("cos") or t ("linear"):
//   lr_k = alpha_k swa_lr + (1 - alpha_k) lr_0
// computed, as PyTorch does, from the group's current lr (lr_0 recovered from it through the
// previous alpha), and written into each group as "swa_lr" too.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class SWALR : public LRScheduler {
 public:
  SWALR(Optimizer& optimizer, double swa_lr, int64_t anneal_epochs = 10,
        std::string anneal_strategy = "cos");
  // One swa_lr per parameter group.
  SWALR(Optimizer& optimizer, std::vector<double> swa_lrs, int64_t anneal_epochs = 10,
        std::string anneal_strategy = "cos");
  void step() override;
  std::string type_name() const override { return "SWALR"; }
  // + attrs anneal_epochs, anneal_strategy (the groups' swa_lr come back with the optimizer's
  // state, as their lr does)
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 private:
  double anneal(double t) const;

  int64_t anneal_epochs_;
  std::string anneal_strategy_;
};

}  // namespace lumen::optim
