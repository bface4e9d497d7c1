#include "nn/optim/reduce_lr_on_plateau.h"

#include <algorithm>

namespace lumen::optim {
namespace {

void check_options(const ReduceLROnPlateauOptions& o, size_t groups, const char* where) {
  LUMEN_CHECK(o.mode == "min" || o.mode == "max", where,
              ": mode must be \"min\" or \"max\", got \"", o.mode, "\"");
  LUMEN_CHECK(o.threshold_mode == "rel" || o.threshold_mode == "abs", where,
              ": threshold_mode must be \"rel\" or \"abs\", got \"", o.threshold_mode, "\"");
  LUMEN_CHECK(o.factor >= 0 && o.factor < 1, where, ": factor must be in [0, 1), got ", o.factor);
  LUMEN_CHECK(o.patience >= 0 && o.cooldown >= 0, where,
              ": patience and cooldown must be >= 0, got ", o.patience, " and ", o.cooldown);
  LUMEN_CHECK(o.min_lrs.empty() || o.min_lrs.size() == groups, where, ": got ", o.min_lrs.size(),
              " min_lrs for ", groups, " parameter groups");
}

}  // namespace

ReduceLROnPlateau::ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options)
    : LRScheduler(optimizer), options_(std::move(options)) {
  const size_t groups = optimizer.param_groups().size();
  check_options(options_, groups, "ReduceLROnPlateau");
  if (options_.min_lrs.empty()) options_.min_lrs.assign(groups, options_.min_lr);
  best_ = options_.mode == "min" ? std::numeric_limits<double>::infinity()
                                 : -std::numeric_limits<double>::infinity();
  init_base_lrs();
  last_epoch_ = 0;
  for (const ParamGroup& g : optimizer.param_groups()) last_lr_.push_back(g.lr());
}

bool ReduceLROnPlateau::is_better(double a) const {
  const double t = options_.threshold;
  const bool rel = options_.threshold_mode == "rel";
  if (options_.mode == "min") return rel ? a < best_ * (1 - t) : a < best_ - t;
  return rel ? a > best_ * (1 + t) : a > best_ + t;
}

void ReduceLROnPlateau::step() {
  LUMEN_CHECK(false, "ReduceLROnPlateau: step() needs the monitored metric; call step(metric)");
}

void ReduceLROnPlateau::step(double metric) {
  ++last_epoch_;
  if (is_better(metric)) {
    best_ = metric;
    num_bad_epochs_ = 0;
  } else {
    ++num_bad_epochs_;
  }
  if (cooldown_counter_ > 0) {  // bad steps during the cooldown do not count
    --cooldown_counter_;
    num_bad_epochs_ = 0;
  }
  std::span<ParamGroup> groups = this->groups();
  if (num_bad_epochs_ > options_.patience) {
    for (size_t g = 0; g < groups.size(); ++g) {
      const double old_lr = groups[g].lr();
      const double new_lr = std::max(old_lr * options_.factor, options_.min_lrs[g]);
      if (old_lr - new_lr > options_.eps) groups[g].options["lr"] = new_lr;
    }
    cooldown_counter_ = options_.cooldown;
    num_bad_epochs_ = 0;
  }
  last_lr_.clear();
  for (const ParamGroup& g : groups) last_lr_.push_back(g.lr());
}

State ReduceLROnPlateau::state_dict() const {
  State s = base_state_dict();
  s.attrs["best"] = best_;
  s.attrs["num_bad_epochs"] = num_bad_epochs_;
  s.attrs["cooldown_counter"] = cooldown_counter_;
  s.attrs["mode"] = options_.mode;
  s.attrs["factor"] = options_.factor;
  s.attrs["patience"] = options_.patience;
  s.attrs["threshold"] = options_.threshold;
  s.attrs["threshold_mode"] = options_.threshold_mode;
  s.attrs["cooldown"] = options_.cooldown;
  s.attrs["min_lrs"] = options_.min_lrs;
  s.attrs["eps"] = options_.eps;
  return s;
}

void ReduceLROnPlateau::load_state_dict(const State& state) {
  ReduceLROnPlateauOptions o;
  o.mode = state.get_string("mode");
  o.factor = state.get_double("factor");
  o.patience = state.get_int("patience");
  o.threshold = state.get_double("threshold");
  o.threshold_mode = state.get_string("threshold_mode");
  o.cooldown = state.get_int("cooldown");
  o.min_lrs = state.get_doubles("min_lrs");
  o.eps = state.get_double("eps");
  const size_t groups = num_groups_;
  check_options(o, groups, "ReduceLROnPlateau.load_state_dict");
  LUMEN_CHECK(o.min_lrs.size() == groups, "ReduceLROnPlateau.load_state_dict: the state has ",
              o.min_lrs.size(), " min_lrs, the scheduler manages ", groups, " parameter groups");
  const double best = state.get_double("best");
  const int64_t bad = state.get_int("num_bad_epochs"), cooldown = state.get_int("cooldown_counter");
  load_base_state_dict(state);
  options_ = std::move(o);
  best_ = best;
  num_bad_epochs_ = bad;
  cooldown_counter_ = cooldown;
}

}  // namespace lumen::optim
