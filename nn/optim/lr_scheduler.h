#pragma once
// Learning-rate scheduler base, as torch.optim.lr_scheduler.LRScheduler: it owns no
// parameters, only rewrites the "lr" of its optimizer's groups on each step().
#include <string>
#include <vector>

#include "nn/optim/optimizer.h"

namespace lumen::optim {

class LRScheduler {
 public:
  explicit LRScheduler(Optimizer& optimizer) : optimizer_(&optimizer) {}
  virtual ~LRScheduler() = default;

  // Advances one epoch or one step (as configured by the trainer's interval) and sets the
  // new learning rates. Schedulers that follow a metric (ReduceLROnPlateau) override
  // step(metric) and need_metric() returns true.
  virtual void step() = 0;
  virtual void step(double metric) {
    (void)metric;
    step();
  }
  virtual bool needs_metric() const { return false; }

  std::vector<double> get_last_lr() const { return last_lr_; }
  Optimizer& optimizer() const { return *optimizer_; }
  virtual std::string type_name() const = 0;

  // attrs: last_epoch, last_lr, base_lrs and the scheduler's own counters.
  virtual State state_dict() const = 0;
  virtual void load_state_dict(const State& state) = 0;

 protected:
  Optimizer* optimizer_;
  std::vector<double> last_lr_;
};

}  // namespace lumen::optim
