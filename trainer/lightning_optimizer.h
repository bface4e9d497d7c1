#pragma once
// LightningOptimizer, as Lightning's: what LightningModule::optimizers() hands a training_step
// under manual optimization. It wraps one of the optimizers configure_optimizers returned, and
// its step() goes through the Trainer's precision and hooks as the automatic loop's step does.
#include <memory>
#include <vector>

#include "nn/optim/optimizer.h"

namespace lumen {

class Trainer;

class LightningOptimizer {
 public:
  LightningOptimizer(Trainer& trainer, std::shared_ptr<optim::Optimizer> optimizer);

  // Lightning's LightningOptimizer.step under manual optimization:
  //   [16-mixed: unscale the gradients, unless clip_gradients already did];
  //   on_before_optimizer_step (callbacks, then the module);
  //   the step [16-mixed: skipped when a gradient is inf or NaN];
  //   global_step += 1 (skipped or not, as Lightning).
  // Under 16-mixed the loss scale is adjusted once for the steps taken on one backward's
  // gradients: at the next manual_backward, or when the training step ends. Returns whether the
  // optimizer stepped.
  bool step();
  void zero_grad() { optimizer_->zero_grad(); }

  optim::Optimizer& optimizer() const { return *optimizer_; }
  std::vector<optim::ParamGroup>& param_groups() const { return optimizer_->param_groups(); }

 private:
  std::weak_ptr<Trainer* const> trainer_;  // expires with the Trainer
  std::shared_ptr<optim::Optimizer> optimizer_;
};

}  // namespace lumen
