#include "nn/optim/cosine_annealing_warm_restarts.h"

#include <cmath>
#include <numbers>

namespace lumen::optim {

CosineAnnealingWarmRestarts::CosineAnnealingWarmRestarts(Optimizer& optimizer, int64_t T_0,
                                                         int64_t T_mult, double eta_min)
    : LRScheduler(optimizer), t_0_(T_0), t_mult_(T_mult), eta_min_(eta_min), t_i_(T_0) {
  LUMEN_CHECK(T_0 > 0, "CosineAnnealingWarmRestarts: T_0 must be a positive integer, got ", T_0);
  LUMEN_CHECK(T_mult >= 1, "CosineAnnealingWarmRestarts: T_mult must be an integer >= 1, got ",
              T_mult);
  init_base_lrs();
  last_epoch_ = 0;
  step_count_ = 1;
  apply();
}

void CosineAnnealingWarmRestarts::step() {
  ++last_epoch_;
  ++step_count_;
  if (++t_cur_ >= t_i_) {
    t_cur_ -= t_i_;
    t_i_ *= t_mult_;
  }
  apply();
}

void CosineAnnealingWarmRestarts::restart() {
  last_epoch_ = 0;
  t_cur_ = 0;
  t_i_ = t_0_;
  apply();
}

void CosineAnnealingWarmRestarts::apply() {
  const double c =
      std::cos(std::numbers::pi * static_cast<double>(t_cur_) / static_cast<double>(t_i_));
  std::vector<double> lrs;
  for (double base : base_lrs_) lrs.push_back(eta_min_ + (base - eta_min_) * (1 + c) / 2);
  set_lrs(lrs);
}

State CosineAnnealingWarmRestarts::state_dict() const {
  State s = base_state_dict();
  s.attrs["T_0"] = t_0_;
  s.attrs["T_mult"] = t_mult_;
  s.attrs["eta_min"] = eta_min_;
  s.attrs["T_i"] = t_i_;
  s.attrs["T_cur"] = t_cur_;
  return s;
}

void CosineAnnealingWarmRestarts::load_state_dict(const State& state) {
  const int64_t t_0 = state.get_int("T_0"), t_mult = state.get_int("T_mult");
  const int64_t t_i = state.get_int("T_i"), t_cur = state.get_int("T_cur");
  const double eta_min = state.get_double("eta_min");
  LUMEN_CHECK(t_0 > 0 && t_mult >= 1 && t_i >= t_0 && t_cur >= 0 && t_cur < t_i,
              "CosineAnnealingWarmRestarts.load_state_dict: T_0 ", t_0, ", T_mult ", t_mult,
              ", T_i ", t_i, ", T_cur ", t_cur,
              " (expected T_0 > 0, T_mult >= 1, T_i >= T_0, 0 <= T_cur < T_i)");
  load_base_state_dict(state);
  t_0_ = t_0;
  t_mult_ = t_mult;
  eta_min_ = eta_min;
  t_i_ = t_i;
  t_cur_ = t_cur;
}

}  // namespace lumen::optim
