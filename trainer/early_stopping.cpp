#include "trainer/early_stopping.h"

#include <cmath>
#include <iostream>
#include <limits>

#include "tensor/error.h"
#include "trainer/python_float_format.h"
#include "trainer/trainer.h"

namespace lumen {

EarlyStopping::EarlyStopping(EarlyStoppingOptions options) : options_(std::move(options)) {
  LUMEN_CHECK(!options_.monitor.empty(),
              "EarlyStopping: monitor must name a logged metric (e.g. \"val_loss\")");
  LUMEN_CHECK(options_.mode == "min" || options_.mode == "max",
              "EarlyStopping: mode can be min, max, got '", options_.mode, "'");
  LUMEN_CHECK(options_.patience >= 0, "EarlyStopping: patience must be >= 0, got ",
              options_.patience);
  minimize_ = options_.mode == "min";
  // Lightning: min_delta *= 1 if monitor_op is gt else -1, then "improved" is
  // monitor_op(current - min_delta, best): current < best - |d| (min), current > best + d (max).
  signed_min_delta_ = minimize_ ? -options_.min_delta : options_.min_delta;
  best_score_ = minimize_ ? std::numeric_limits<double>::infinity()
                          : -std::numeric_limits<double>::infinity();
  check_on_train_epoch_end_ = options_.check_on_train_epoch_end;
}

std::string EarlyStopping::state_key() const {
  return "EarlyStopping{'monitor': '" + options_.monitor + "', 'mode': '" + options_.mode + "'}";
}

void EarlyStopping::setup(Trainer& trainer, LightningModule&, const std::string& stage) {
  (void)stage;
  if (!options_.check_on_train_epoch_end) {
    // Validating several times per epoch, or not every epoch: check after validation.
    const CountOrFraction& v = trainer.options().val_check_interval;
    check_on_train_epoch_end_ =
        !v.is_count && v.value == 1.0 && trainer.options().check_val_every_n_epoch == 1;
  }
}

bool EarlyStopping::should_skip_check(const Trainer& trainer) const {
  return trainer.stage() != "fit" || trainer.sanity_checking();
}

void EarlyStopping::on_train_epoch_end(Trainer& trainer, LightningModule&) {
  if (!check_on_train_epoch_end_.value_or(true) || should_skip_check(trainer)) return;
  run_early_stopping_check(trainer);
}

void EarlyStopping::on_validation_end(Trainer& trainer, LightningModule&) {
  if (check_on_train_epoch_end_.value_or(true) || should_skip_check(trainer)) return;
  run_early_stopping_check(trainer);
}

std::pair<bool, std::string> EarlyStopping::evaluate_stopping_criteria(double current) {
  const std::string& m = options_.monitor;
  const char* order = minimize_ ? "<" : ">";
  std::string cur = python_float_repr(current);
  if (options_.check_finite && !std::isfinite(current)) {
    return {true, "Monitored metric " + m + " = " + cur +
                      " is not finite. Previous best value was " +
                      format_number(best_score_, ".3f") + ". Signaling Trainer to stop."};
  }
  if (options_.stopping_threshold && better(current, *options_.stopping_threshold)) {
    return {true, "Stopping threshold reached: " + m + " = " + cur + " " + order + " " +
                      python_float_repr(*options_.stopping_threshold) +
                      ". Signaling Trainer to stop."};
  }
  // monitor_op(-current, -threshold): current > threshold for "min", < for "max".
  if (options_.divergence_threshold && better(-current, -*options_.divergence_threshold)) {
    return {true, "Divergence threshold reached: " + m + " = " + cur + " " + order + " " +
                      python_float_repr(*options_.divergence_threshold) +
                      ". Signaling Trainer to stop."};
  }
  if (better(current - signed_min_delta_, best_score_)) {
    std::string reason =
        std::isfinite(best_score_)
            ? "Metric " + m + " improved by " +
                  format_number(std::abs(best_score_ - current), ".3f") +
                  " >= min_delta = " + python_float_repr(std::abs(signed_min_delta_)) +
                  ". New best score: " + format_number(current, ".3f")
            : "Metric " + m + " improved. New best score: " + format_number(current, ".3f");
    best_score_ = current;
    wait_count_ = 0;
    return {false, reason};
  }
  ++wait_count_;
  if (wait_count_ >= options_.patience) {
    return {true, "Monitored metric " + m + " did not improve in the last " +
                      std::to_string(wait_count_) + " records. Best score: " +
                      format_number(best_score_, ".3f") + ". Signaling Trainer to stop."};
  }
  return {false, ""};
}

void EarlyStopping::run_early_stopping_check(Trainer& trainer) {
  if (trainer.options().fast_dev_run != 0) return;
  const auto& logs = trainer.callback_metrics();
  auto it = logs.find(options_.monitor);
  if (it == logs.end()) {
    std::string available;
    for (const auto& [key, value] : logs) available += (available.empty() ? "`" : "`, `") + key;
    if (!available.empty()) available += "`";
    std::string msg = "Early stopping conditioned on metric `" + options_.monitor +
                      "` which is not available. Pass in or modify your EarlyStopping callback "
                      "to use any of the following: " +
                      available;
    LUMEN_CHECK(!options_.strict, msg);
    if (options_.verbose) std::cerr << "Warning: " << msg << "\n";
    return;
  }
  auto [stop, reason] = evaluate_stopping_criteria(it->second);
  last_reason_ = reason;
  // Under DDP every rank stops when any does (Lightning's reduce_boolean_decision, all=False).
  stop = trainer.reduce_boolean_decision(stop, false);
  if (stop) {
    trainer.set_should_stop(true);
    stopped_epoch_ = trainer.current_epoch();
  }
  if (!reason.empty() && (stop || options_.verbose) && trainer.is_global_zero())
    std::cout << reason << "\n";
}

State EarlyStopping::state_dict() const {
  State s;
  s.attrs["wait_count"] = wait_count_;
  s.attrs["stopped_epoch"] = stopped_epoch_;
  s.attrs["best_score"] = best_score_;
  s.attrs["patience"] = options_.patience;
  return s;
}

void EarlyStopping::load_state_dict(const State& state) {
  wait_count_ = state.get_int("wait_count");
  stopped_epoch_ = state.get_int("stopped_epoch");
  best_score_ = state.get_double("best_score");
  options_.patience = state.get_int("patience");
}

}  // namespace lumen
