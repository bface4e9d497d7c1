#pragma once
// EarlyStopping, as Lightning's: stops fit when a monitored metric stops improving.
//
// At each check (the end of the training epoch when validation runs once per epoch every
// epoch, else the end of validation; check_on_train_epoch_end overrides), with `current` the
// metric:
//   - not finite (check_finite)                 -> stop;
//   - better than stopping_threshold            -> stop (good enough);
//   - worse than divergence_threshold           -> stop (diverged);
//   - better than best by more than min_delta   -> best = current, wait = 0;
//   - otherwise wait += 1, and stop once wait >= patience.
// "Better" is < for mode "min" and > for "max". Stopping goes through
// trainer.set_should_stop(true), which honours min_epochs.
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include "trainer/callback.h"

namespace lumen {

struct EarlyStoppingOptions {
  std::string monitor = "";
  double min_delta = 0.0;
  int64_t patience = 3;
  std::string mode = "min";
  bool strict = true;  // a missing metric is an error (else the check is skipped)
  bool check_finite = true;
  std::optional<double> stopping_threshold = std::nullopt;
  std::optional<double> divergence_threshold = std::nullopt;
  std::optional<bool> check_on_train_epoch_end = std::nullopt;
  bool verbose = false;  // also print improvements (stop reasons are always printed)
};

class EarlyStopping : public Callback {
 public:
  explicit EarlyStopping(EarlyStoppingOptions options);

  // "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}", as Lightning.
  std::string state_key() const override;

  void setup(Trainer& trainer, LightningModule&, const std::string& stage) override;
  void on_train_epoch_end(Trainer& trainer, LightningModule&) override;
  void on_validation_end(Trainer& trainer, LightningModule&) override;

  State state_dict() const override;  // wait_count, stopped_epoch, best_score, patience
  void load_state_dict(const State& state) override;

  // One check on a value, without a trainer: updates best score and wait count and returns
  // (should_stop, reason); the reason is "" when nothing is worth saying.
  std::pair<bool, std::string> evaluate_stopping_criteria(double current);

  int64_t wait_count() const { return wait_count_; }
  int64_t stopped_epoch() const { return stopped_epoch_; }
  double best_score() const { return best_score_; }
  int64_t patience() const { return options_.patience; }
  const std::string& last_reason() const { return last_reason_; }
  const EarlyStoppingOptions& options() const { return options_; }

 private:
  bool should_skip_check(const Trainer& trainer) const;
  void run_early_stopping_check(Trainer& trainer);
  bool better(double a, double b) const { return minimize_ ? a < b : a > b; }

  EarlyStoppingOptions options_;
  bool minimize_ = true;
  double signed_min_delta_ = 0.0;  // +|min_delta| for "max", -|min_delta| for "min"
  int64_t wait_count_ = 0;
  int64_t stopped_epoch_ = 0;
  double best_score_;
  std::optional<bool> check_on_train_epoch_end_;
  std::string last_reason_;
};

}  // namespace lumen
