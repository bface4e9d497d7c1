#pragma once
// Optimizer base, as torch.optim.Optimizer: parameter groups with their own hyper-parameters,
// per-parameter state, step() and zero_grad(), and a state_dict for checkpoints.
#include <map>
#include <memory>
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

  std::vector<ParamGroup>& param_groups() { return groups_; }
  const std::vector<ParamGroup>& param_groups() const { return groups_; }
  virtual std::string type_name() const = 0;  // "SGD", "Adam", "AdamW"

  // Checkpoint layout (DESIGN.md, /optimizers/<i>): attrs hold each group's hyper-parameters
  // ("group<g>.<name>") and the step count; groups "<p>" (the parameter's index over all
  // groups) hold that parameter's state tensors (e.g. "exp_avg"). load_state_dict checks
  // the optimizer type, group and parameter counts and state shapes, and names what differs.
  virtual State state_dict() const = 0;
  virtual void load_state_dict(const State& state) = 0;

 protected:
  std::vector<ParamGroup> groups_;
};

}  // namespace lumen::optim
