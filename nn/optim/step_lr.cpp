#include "nn/optim/step_lr.h"

namespace lumen::optim {

StepLR::StepLR(Optimizer& optimizer, int64_t step_size, double gamma)
    : LRScheduler(optimizer), step_size_(step_size), gamma_(gamma) {
  LUMEN_CHECK(step_size > 0, "StepLR: step_size must be positive, got ", step_size);
  LUMEN_CHECK(gamma > 0, "StepLR: gamma must be positive, got ", gamma);
  init_base_lrs();
  step();
}

void StepLR::step() {
  ++last_epoch_;
  ++step_count_;
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) {
    const bool boundary = last_epoch_ != 0 && last_epoch_ % step_size_ == 0;
    lrs.push_back(boundary ? g.lr() * gamma_ : g.lr());
  }
  set_lrs(lrs);
}

State StepLR::state_dict() const {
  State s = base_state_dict();
  s.attrs["step_size"] = step_size_;
  s.attrs["gamma"] = gamma_;
  return s;
}

void StepLR::load_state_dict(const State& state) {
  const int64_t step_size = state.get_int("step_size");
  const double gamma = state.get_double("gamma");
  LUMEN_CHECK(step_size > 0, "StepLR.load_state_dict: step_size ", step_size, " (expected > 0)");
  load_base_state_dict(state);
  step_size_ = step_size;
  gamma_ = gamma;
}

}  // namespace lumen::optim
