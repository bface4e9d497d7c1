#pragma once
// CosineAnnealingWarmRestarts, as torch.optim.lr_scheduler.CosineAnnealingWarmRestarts (SGDR,
// Loshchilov & Hutter, 2017): cosine annealing from base_lr to eta_min over T_i steps, then a
// restart at base_lr with T_{i+1} = T_i * T_mult (T_0 first):
//   lr = eta_min + (base_lr - eta_min) (1 + cos(pi T_cur / T_i)) / 2
// with T_cur the steps since the last restart. Usually stepped per batch ("step" interval).
#include <cstdint>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

class CosineAnnealingWarmRestarts : public LRScheduler {
 public:
  CosineAnnealingWarmRestarts(Optimizer& optimizer, int64_t T_0, int64_t T_mult = 1,
                              double eta_min = 0);
  void step() override;
  std::string type_name() const override { return "CosineAnnealingWarmRestarts"; }
  // Epoch 0 again: T_cur = 0, T_i = T_0, base_lrs.
  void restart() override;
  State state_dict() const override;  // + attrs T_0, T_mult, eta_min, T_i, T_cur
  void load_state_dict(const State& state) override;

 private:
  void apply();

  int64_t t_0_, t_mult_;
  double eta_min_;
  int64_t t_i_, t_cur_ = 0;
};

}  // namespace lumen::optim
