#pragma once
// Optimizer base, as torch.optim.Optimizer: parameter groups with their own hyper-parameters,
// per-parameter state, step() and zero_grad(), and a state_dict for checkpoints.
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "nn/state.h"
#include "tensor/tensor.h"

namespace lumen::optim {

struct ParamGroup {
  std::vector<Tensor> params;
  // Hyper-parameters by name ("lr", "momentum", "weight_decay", "betas0", ...). Schedulers
  // and LearningRateMonitor read and write "lr" (and "initial_lr", set by schedulers).
  std::map<std::string, double> options;
  double lr() const { return options.at("lr"); }
};

class Optimizer {
 public:
  virtual ~Optimizer() = default;

  // One update of every parameter that has a gradient; parameters without one are skipped.
  // Runs under NoGradGuard.
  virtual void step() = 0;
  // Drops gradients (set_to_none, PyTorch's default).
  void zero_grad();

  // torch's add_param_group: a group added while training (BaseFinetuning unfreezing a
  // backbone). Its missing options come from the optimizer's defaults; the checks are the
  // constructor's, and its parameters may not be in another group. Learning-rate schedulers
  // built before keep to the groups they were built with.
  void add_param_group(ParamGroup group);

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  virtual std::string type_name() const = 0;  // "SGD", "Adam", "AdamW"

  // Checkpoint layout (DESIGN.md, /optimizers/<i>): attrs hold each group's hyper-parameters
  // ("group<g>.<name>") and the step count; groups "<p>" (the parameter's index over all
  // groups) hold that parameter's state tensors (e.g. "exp_avg"). load_state_dict checks
  // the optimizer type, group and parameter counts and state shapes, and names what differs.
  // The tensors of state_dict() are the live state, not copies (as PyTorch's): write them out
  // before the next step() or clone them.
  virtual State state_dict() const = 0;
  virtual void load_state_dict(const State& state) = 0;

  // Calls of step() so far (attr "step" of the state_dict).
  int64_t step_count() const { return step_count_; }
  // Parameters over all groups; a parameter's index in this order names its state.
  int64_t num_params() const;
  // Every group's parameters, in order (what clipping by optimizer works on).
  std::vector<Tensor> parameters() const;

 protected:
  Optimizer() = default;
  // Movable (OptimizerConfig moves optimizers into a shared_ptr); not copyable, since two
  // copies would update the same state tensors. A scheduler holds its optimizer's address, so
  // build schedulers on the optimizer's final home.
  Optimizer(Optimizer&&) = default;
  Optimizer& operator=(Optimizer&&) = default;
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  // Takes the groups, fills each group's missing options from `defaults` and checks them:
  // at least one parameter, each a defined floating leaf that appears once; option names must
  // be those of `defaults` or the ones schedulers add ("initial_lr", "max_lr", "min_lr",
  // "base_momentum", "max_momentum", "swa_lr"); then check_group. Errors start with type_name().
  // Parameters that do not require grad are accepted, as PyTorch does (a frozen backbone that a
  // fine-tuning callback unfreezes later); step() skips them while they have no gradient.
  void init_groups(std::vector<ParamGroup> groups, const std::map<std::string, double>& defaults);
  // An optimizer's own checks of a group's option values (lr >= 0, betas in [0, 1), ...).
  virtual void check_group(const ParamGroup& group, size_t index) const {
    (void)group;
    (void)index;
  }
  // attrs "type", "step", "group_sizes" and "group<g>.<name>" for every option.
  State base_state_dict() const;
  // Checks "type", the group count and sizes and that every state group names a parameter
  // ("0" .. num_params()-1), then takes the options and the step count.
  void load_base_state_dict(const State& state);

  // Fills a group's options from defaults_ and checks it (init_groups' rules), `seen` holding
  // the parameters of the groups before it.
  void prepare_group(ParamGroup& group, size_t index, std::set<const TensorImpl*>& seen) const;

  int64_t step_count_ = 0;
  std::vector<ParamGroup> groups_;
  std::map<std::string, double> defaults_;  // what init_groups filled missing options with
};

}  // namespace lumen::optim
