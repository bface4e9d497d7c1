#include "nn/optim/exponential_lr.h"

namespace lumen::optim {

ExponentialLR::ExponentialLR(Optimizer& optimizer, double gamma)
    : LRScheduler(optimizer), gamma_(gamma) {
  LUMEN_CHECK(gamma > 0, "ExponentialLR: gamma must be positive, got ", gamma);
  init_base_lrs();
  step();
}

void ExponentialLR::step() {
  ++last_epoch_;
  ++step_count_;
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) lrs.push_back(last_epoch_ == 0 ? g.lr() : g.lr() * gamma_);
  set_lrs(lrs);
}

State ExponentialLR::state_dict() const {
  State s = base_state_dict();
  s.attrs["gamma"] = gamma_;
  return s;
}

void ExponentialLR::load_state_dict(const State& state) {
  const double gamma = state.get_double("gamma");
  load_base_state_dict(state);
  gamma_ = gamma;
}

}  // namespace lumen::optim
