#include "nn/optim/polynomial_lr.h"

#include <cmath>

namespace lumen::optim {

PolynomialLR::PolynomialLR(Optimizer& optimizer, int64_t total_iters, double power)
    : LRScheduler(optimizer), total_iters_(total_iters), power_(power) {
  LUMEN_CHECK(total_iters > 0, "PolynomialLR: total_iters must be positive, got ", total_iters);
  init_base_lrs();
  step();
}

void PolynomialLR::step() {
  ++last_epoch_;
  ++step_count_;
  const double e = static_cast<double>(last_epoch_), t = static_cast<double>(total_iters_);
  const bool decays = last_epoch_ > 0 && last_epoch_ <= total_iters_;
  const double factor = decays ? std::pow((1.0 - e / t) / (1.0 - (e - 1.0) / t), power_) : 1.0;
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) lrs.push_back(g.lr() * factor);
  set_lrs(lrs);
}

State PolynomialLR::state_dict() const {
  State s = base_state_dict();
  s.attrs["total_iters"] = total_iters_;
  s.attrs["power"] = power_;
  return s;
}

void PolynomialLR::load_state_dict(const State& state) {
  const int64_t total_iters = state.get_int("total_iters");
  const double power = state.get_double("power");
  LUMEN_CHECK(total_iters > 0, "PolynomialLR.load_state_dict: total_iters ", total_iters,
              " (expected > 0)");
  load_base_state_dict(state);
  total_iters_ = total_iters;
  power_ = power;
}

}  // namespace lumen::optim
