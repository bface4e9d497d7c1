#pragma once
// Learning-rate scheduler base, as torch.optim.lr_scheduler.LRScheduler: it owns no
// parameters, only rewrites the "lr" of its optimizer's groups on each step().
#include <span>
#include <string>
#include <vector>

#include "nn/optim/optimizer.h"

namespace lumen::optim {

class LRScheduler {
 public:
  // The scheduler manages the optimizer's groups of now; a group added later
  // (Optimizer::add_param_group) keeps the learning rate whoever added it sets, as with
  // PyTorch's closed-form schedulers.
  explicit LRScheduler(Optimizer& optimizer)
      : optimizer_(&optimizer), num_groups_(optimizer.param_groups().size()) {}
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

  // attrs: last_epoch, last_lr, base_lrs and the scheduler's own counters. As in PyTorch,
  // load_state_dict restores the scheduler only: the groups' "lr" (and "initial_lr") come
  // back with the optimizer's load_state_dict, so load both.
  virtual State state_dict() const = 0;
  virtual void load_state_dict(const State& state) = 0;

  // Steps taken so far (0 right after construction, as PyTorch's last_epoch).
  int64_t last_epoch() const { return last_epoch_; }
  // Each group's "initial_lr" when the scheduler was built.
  const std::vector<double>& base_lrs() const { return base_lrs_; }
  // Goes back to epoch 0 and sets the epoch-0 learning rates: what torch's SequentialLR does
  // (scheduler.step(0)) when it hands over to this scheduler, as LinearWarmup does. The default
  // sets base_lrs(), the epoch-0 value of every closed form that starts at its base.
  virtual void restart();

 protected:
  // The groups this scheduler manages: the optimizer's first num_groups_.
  std::span<ParamGroup> groups() const;
  // torch's LRScheduler.__init__ with last_epoch = -1: each group's "initial_lr" is set to its
  // "lr" unless a scheduler already set it (setdefault), and becomes base_lrs_.
  void init_base_lrs();
  // Writes lrs[g] into group g's "lr" and records them as last_lr_.
  void set_lrs(const std::vector<double>& lrs);
  // attrs "type", "last_epoch", "step_count", "base_lrs", "last_lr".
  State base_state_dict() const;
  // Checks "type" and that base_lrs has one entry per group, then takes those attrs.
  void load_base_state_dict(const State& state);

  Optimizer* optimizer_;
  size_t num_groups_;
  std::vector<double> last_lr_;
  int64_t last_epoch_ = -1;
  int64_t step_count_ = 0;  // PyTorch's _step_count: calls of step(), the initial one included
  std::vector<double> base_lrs_;
};

}  // namespace lumen::optim
