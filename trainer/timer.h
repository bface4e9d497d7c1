#pragma once
// Timer, as Lightning's: stops fit once a time budget is spent (checked after every training
// step, or at every epoch end with interval "epoch") and measures the time spent in each
// stage. The elapsed training time is part of the checkpoint, so a resumed run continues the
// same budget.
#include <chrono>
#include <map>
#include <optional>
#include <string>

#include "trainer/callback.h"

namespace lumen {

// Lightning's duration: "DD:HH:MM:SS" or a number of seconds; unset = no limit.
struct TimerDuration {
  std::optional<double> seconds;
  TimerDuration() = default;
  TimerDuration(double s) : seconds(s) {}  // NOLINT: implicit on purpose
  TimerDuration(int s) : seconds(s) {}     // NOLINT
  TimerDuration(const char* dd_hh_mm_ss);  // NOLINT
  TimerDuration(const std::string& dd_hh_mm_ss) : TimerDuration(dd_hh_mm_ss.c_str()) {}  // NOLINT
};

// Seconds in "DD:HH:MM:SS" (days any number of digits, the rest two digits each).
double parse_duration(const std::string& dd_hh_mm_ss);

struct TimerOptions {
  TimerDuration duration = {};
  std::string interval = "step";  // or "epoch"
  bool verbose = true;
};

class Timer : public Callback {
 public:
  explicit Timer(TimerOptions options = {});
  std::string state_key() const override { return "Timer"; }

  // Stages: "train", "validate", "test". The training time includes what a loaded checkpoint
  // had already spent.
  std::optional<double> start_time(const std::string& stage = "train") const;
  std::optional<double> end_time(const std::string& stage = "train") const;
  double time_elapsed(const std::string& stage = "train") const;
  std::optional<double> time_remaining(const std::string& stage = "train") const;
  std::optional<double> duration() const { return options_.duration.seconds; }

  void on_fit_start(Trainer& trainer, LightningModule&) override;
  void on_train_start(Trainer&, LightningModule&) override { start("train"); }
  void on_train_end(Trainer&, LightningModule&) override { end("train"); }
  void on_validation_start(Trainer&, LightningModule&) override { start("validate"); }
  void on_validation_end(Trainer&, LightningModule&) override { end("validate"); }
  void on_test_start(Trainer&, LightningModule&) override { start("test"); }
  void on_test_end(Trainer&, LightningModule&) override { end("test"); }
  void on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&, const Batch&,
                          int64_t) override;
  void on_train_epoch_end(Trainer& trainer, LightningModule&) override;

  State state_dict() const override;  // attrs "time_elapsed.<stage>" in seconds
  void load_state_dict(const State& state) override;

 private:
  static double now();
  void start(const std::string& stage);
  void end(const std::string& stage);
  void check_time_remaining(Trainer& trainer);

  TimerOptions options_;
  std::map<std::string, double> start_, end_;
  double offset_ = 0.0;  // training seconds spent before a resume
};

}  // namespace lumen
