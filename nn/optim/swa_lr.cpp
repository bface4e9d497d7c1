#include "nn/optim/swa_lr.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace lumen::optim {

namespace {

void check_options(int64_t anneal_epochs, const std::string& strategy, const char* where) {
  LUMEN_CHECK(strategy == "cos" || strategy == "linear", where,
              ": anneal_strategy must be \"cos\" or \"linear\", got \"", strategy, "\"");
  LUMEN_CHECK(anneal_epochs >= 0, where, ": anneal_epochs must be >= 0, got ", anneal_epochs);
}

}  // namespace

SWALR::SWALR(Optimizer& optimizer, double swa_lr, int64_t anneal_epochs,
             std::string anneal_strategy)
    : SWALR(optimizer, std::vector<double>(optimizer.param_groups().size(), swa_lr), anneal_epochs,
            std::move(anneal_strategy)) {}

SWALR::SWALR(Optimizer& optimizer, std::vector<double> swa_lrs, int64_t anneal_epochs,
             std::string anneal_strategy)
    : LRScheduler(optimizer),
      anneal_epochs_(anneal_epochs),
      anneal_strategy_(std::move(anneal_strategy)) {
  check_options(anneal_epochs_, anneal_strategy_, "SWALR");
  std::span<ParamGroup> managed = groups();
  LUMEN_CHECK(swa_lrs.size() == managed.size(), "SWALR: got ", swa_lrs.size(),
              " swa_lr values for ", managed.size(), " parameter groups");
  for (size_t g = 0; g < managed.size(); ++g) {
    LUMEN_CHECK(swa_lrs[g] >= 0, "SWALR: swa_lr must be >= 0, got ", swa_lrs[g], " for group ", g);
    managed[g].options["swa_lr"] = swa_lrs[g];
  }
  init_base_lrs();
  step();
}

double SWALR::anneal(double t) const {
  return anneal_strategy_ == "cos" ? (1 - std::cos(std::numbers::pi * t)) / 2 : t;
}

void SWALR::step() {
  ++last_epoch_;
  ++step_count_;
  int64_t k = step_count_ - 1;
  if (anneal_epochs_ == 0) k = std::max<int64_t>(1, k);
  const double span = static_cast<double>(std::max<int64_t>(1, anneal_epochs_));
  const double prev_alpha = anneal(std::clamp(static_cast<double>(k - 1) / span, 0.0, 1.0));
  const double alpha = anneal(std::clamp(static_cast<double>(k) / span, 0.0, 1.0));
  std::vector<double> lrs;
  for (const ParamGroup& g : groups()) {
    const double swa_lr = g.options.at("swa_lr");
    // The lr the annealing started from, recovered from the current one.
    const double start =
        prev_alpha == 1 ? swa_lr : (g.lr() - prev_alpha * swa_lr) / (1 - prev_alpha);
    lrs.push_back(swa_lr * alpha + start * (1 - alpha));
  }
  set_lrs(lrs);
}

State SWALR::state_dict() const {
  State s = base_state_dict();
  s.attrs["anneal_epochs"] = anneal_epochs_;
  s.attrs["anneal_strategy"] = anneal_strategy_;
  return s;
}

void SWALR::load_state_dict(const State& state) {
  const int64_t anneal_epochs = state.get_int("anneal_epochs");
  const std::string strategy = state.get_string("anneal_strategy");
  check_options(anneal_epochs, strategy, "SWALR.load_state_dict");
  load_base_state_dict(state);
  anneal_epochs_ = anneal_epochs;
  anneal_strategy_ = strategy;
}

}  // namespace lumen::optim
