#pragma once
// OneCycleLR, as torch.optim.lr_scheduler.OneCycleLR (Smith & Topin, "super-convergence"),
// stepped once per batch for total_steps steps. Each group's lr rises from
// initial_lr = max_lr / div_factor to max_lr over the first pct_start of the steps, then falls
// to min_lr = initial_lr / final_div_factor. With three_phase it rises, falls back to
// initial_lr symmetrically, then falls to min_lr. Each phase anneals by
//   cos:    end + (start - end) / 2 * (1 + cos(pi pct))
//   linear: start + (end - start) pct
// with pct the fraction of the phase done; phase ends are at step pct_start total_steps - 1
// (then 2 pct_start total_steps - 2 with three_phase) and total_steps - 1.
// With cycle_momentum the momentum ("momentum" of SGD, beta1 of Adam/AdamW) moves the
// opposite way, between max_momentum and base_momentum. The scheduler writes "initial_lr",
// "max_lr", "min_lr" (and "max_momentum", "base_momentum") into each group, as PyTorch does.
// Stepping past total_steps is an error.
#include <cstdint>
#include <string>
#include <vector>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

struct OneCycleLROptions {
  double pct_start = 0.3;
  std::string anneal_strategy = "cos";  // or "linear"
  bool cycle_momentum = true;
  double base_momentum = 0.85;
  double max_momentum = 0.95;
  double div_factor = 25;
  double final_div_factor = 1e4;
  bool three_phase = false;
};

class OneCycleLR : public LRScheduler {
 public:
  OneCycleLR(Optimizer& optimizer, double max_lr, int64_t total_steps,
             OneCycleLROptions options = {});
  // One max_lr per parameter group.
  OneCycleLR(Optimizer& optimizer, std::vector<double> max_lrs, int64_t total_steps,
             OneCycleLROptions options = {});

  void step() override;
  std::string type_name() const override { return "OneCycleLR"; }
  // Epoch 0 again: initial_lr and max_momentum, as step(0) in PyTorch.
  void restart() override;
  // + attrs total_steps and the options (anneal_strategy as a string, flags as 0/1).
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 private:
  struct Phase {
    double end_step;
    const char *start_lr, *end_lr, *start_momentum, *end_momentum;  // group option names
  };
  std::vector<Phase> phases() const;
  // Sets lr (and momentum) of every group for last_epoch_.
  void apply();

  int64_t total_steps_;
  OneCycleLROptions options_;
  bool use_beta1_ = false;  // the momentum is "betas0" (Adam) rather than "momentum" (SGD)
};

}  // namespace lumen::optim
