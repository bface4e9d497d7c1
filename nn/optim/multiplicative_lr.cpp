#include "nn/optim/multiplicative_lr.h"

namespace lumen::optim {

MultiplicativeLR::MultiplicativeLR(Optimizer& optimizer, LrLambda lr_lambda)
    : MultiplicativeLR(optimizer,
                       std::vector<LrLambda>(optimizer.param_groups().size(), lr_lambda)) {}

MultiplicativeLR::MultiplicativeLR(Optimizer& optimizer, std::vector<LrLambda> lr_lambdas)
    : LRScheduler(optimizer), lambdas_(std::move(lr_lambdas)) {
  check_lr_lambdas(lambdas_, optimizer, "MultiplicativeLR");
  init_base_lrs();
  step();
}

void MultiplicativeLR::step() {
  ++last_epoch_;
  ++step_count_;
  std::vector<double> lrs;
  std::span<ParamGroup> managed = groups();
  for (size_t g = 0; g < managed.size(); ++g)
    lrs.push_back(last_epoch_ > 0 ? managed[g].lr() * lambdas_[g](last_epoch_) : managed[g].lr());
  set_lrs(lrs);
}

void MultiplicativeLR::restart() {
  last_epoch_ = 0;
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) lrs.push_back(g.lr());
  set_lrs(lrs);
}

State MultiplicativeLR::state_dict() const { return base_state_dict(); }

void MultiplicativeLR::load_state_dict(const State& state) { load_base_state_dict(state); }

}  // namespace lumen::optim
