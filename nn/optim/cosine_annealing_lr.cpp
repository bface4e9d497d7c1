#include "nn/optim/cosine_annealing_lr.h"

#include <cmath>
#include <numbers>

namespace lumen::optim {

CosineAnnealingLR::CosineAnnealingLR(Optimizer& optimizer, int64_t T_max, double eta_min)
    : LRScheduler(optimizer), t_max_(T_max), eta_min_(eta_min) {
  LUMEN_CHECK(T_max > 0, "CosineAnnealingLR: T_max must be positive, got ", T_max);
  init_base_lrs();
  step();
}

void CosineAnnealingLR::step() {
  ++last_epoch_;
  ++step_count_;
  const double pi = std::numbers::pi, e = static_cast<double>(last_epoch_);
  const double t_max = static_cast<double>(t_max_);
  std::vector<double> lrs;
  std::span<ParamGroup> managed = groups();
  for (size_t i = 0; i < managed.size(); ++i) {
    const double lr = managed[i].lr();
    if (last_epoch_ == 0) {
      lrs.push_back(lr);
    } else if ((last_epoch_ - 1 - t_max_) % (2 * t_max_) == 0) {
      lrs.push_back(lr + (base_lrs_[i] - eta_min_) * (1 - std::cos(pi / t_max)) / 2);
    } else {
      lrs.push_back((1 + std::cos(pi * e / t_max)) / (1 + std::cos(pi * (e - 1) / t_max)) *
                        (lr - eta_min_) +
                    eta_min_);
    }
  }
  set_lrs(lrs);
}

State CosineAnnealingLR::state_dict() const {
  State s = base_state_dict();
  s.attrs["T_max"] = t_max_;
  s.attrs["eta_min"] = eta_min_;
  return s;
}

void CosineAnnealingLR::load_state_dict(const State& state) {
  const int64_t t_max = state.get_int("T_max");
  const double eta_min = state.get_double("eta_min");
  LUMEN_CHECK(t_max > 0, "CosineAnnealingLR.load_state_dict: T_max ", t_max, " (expected > 0)");
  load_base_state_dict(state);
  t_max_ = t_max;
  eta_min_ = eta_min;
}

}  // namespace lumen::optim
