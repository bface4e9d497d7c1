#pragma once
// LinearWarmup: torch.optim.lr_scheduler.LinearLR over warmup_steps, optionally followed by
// another scheduler as torch's SequentialLR([LinearLR, after], milestones=[warmup_steps]).
//   epoch e < warmup_steps:  lr = base_lr (start_factor + (end_factor - start_factor) e / W)
//   without `after`:         lr = base_lr end_factor from epoch W on
//   with `after`:            at epoch W `after` restarts at its epoch 0 (LRScheduler::restart,
//                            torch's step(0)), so lr = its base_lr; epoch W + k is its epoch k.
// The warmup multiplies the group's current lr as LinearLR does (chainable):
//   lr(e) = lr(e-1) (1 + (end - start) / (W start + (e - 1) (end - start))).
// Build `after` on the same optimizer first (it takes its initial step), then LinearWarmup,
// which sets every lr back to initial_lr and starts the warmup, as SequentialLR does. The
// default start_factor is LinearLR's, 1/3; end_factor 1 hands over without a jump.
#include <cstdint>
#include <memory>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

struct LinearWarmupOptions {
  double start_factor = 1.0 / 3.0;  // in (0, 1]
  double end_factor = 1.0;          // in [0, 1]
};

class LinearWarmup : public LRScheduler {
 public:
  LinearWarmup(Optimizer& optimizer, int64_t warmup_steps, LinearWarmupOptions options = {},
               std::shared_ptr<LRScheduler> after = nullptr);

  void step() override;
  std::string type_name() const override { return "LinearWarmup"; }
  // Epoch 0 again: base_lr start_factor.
  void restart() override;
  const std::shared_ptr<LRScheduler>& after() const { return after_; }
  // + attrs warmup_steps, start_factor, end_factor, and group "after" with the state of the
  // scheduler that follows.
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 private:
  int64_t warmup_steps_;
  LinearWarmupOptions options_;
  std::shared_ptr<LRScheduler> after_;
};

}  // namespace lumen::optim
