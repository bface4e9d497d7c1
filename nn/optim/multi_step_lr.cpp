#include "nn/optim/multi_step_lr.h"

#include <algorithm>
#include <cmath>

namespace lumen::optim {

MultiStepLR::MultiStepLR(Optimizer& optimizer, std::vector<int64_t> milestones, double gamma)
    : LRScheduler(optimizer), milestones_(std::move(milestones)), gamma_(gamma) {
  std::sort(milestones_.begin(), milestones_.end());
  LUMEN_CHECK(milestones_.empty() || milestones_.front() > 0,
              "MultiStepLR: milestones must be positive epochs, got ", milestones_.front());
  LUMEN_CHECK(gamma > 0, "MultiStepLR: gamma must be positive, got ", gamma);
  init_base_lrs();
  step();
}

void MultiStepLR::step() {
  ++last_epoch_;
  ++step_count_;
  const auto hits = std::count(milestones_.begin(), milestones_.end(), last_epoch_);
  const double factor = hits == 0 ? 1.0 : std::pow(gamma_, static_cast<double>(hits));
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) lrs.push_back(hits == 0 ? g.lr() : g.lr() * factor);
  set_lrs(lrs);
}

State MultiStepLR::state_dict() const {
  State s = base_state_dict();
  s.attrs["milestones"] = milestones_;
  s.attrs["gamma"] = gamma_;
  return s;
}

void MultiStepLR::load_state_dict(const State& state) {
  std::vector<int64_t> milestones = state.get_ints("milestones");
  const double gamma = state.get_double("gamma");
  std::sort(milestones.begin(), milestones.end());
  load_base_state_dict(state);
  milestones_ = std::move(milestones);
  gamma_ = gamma;
}

}  // namespace lumen::optim
