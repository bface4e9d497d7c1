#pragma once
// LearningRateMonitor, as Lightning's: logs each optimizer's learning rates to the trainer's
// loggers. Keys are "lr-<Optimizer type>" (SchedulerConfig::name replaces the whole key),
// "-<n>" added for the second and later optimizers of one type, "/pg<i>" (1-based) when an
// optimizer has several parameter groups; with log_momentum also "<key>-momentum" (the
// group's "momentum", or "betas0" for Adam-style optimizers).
//
// logging_interval "step": every log_every_n_steps-th step (on_train_batch_start); "epoch":
// at each epoch start; unset: each scheduler at its own interval, optimizers without a
// scheduler at every logged step.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "trainer/callback.h"

namespace lumen {

struct LearningRateMonitorOptions {
  std::optional<std::string> logging_interval = std::nullopt;  // "step", "epoch" or unset
  bool log_momentum = false;
};

class LearningRateMonitor : public Callback {
 public:
  explicit LearningRateMonitor(LearningRateMonitorOptions options = {});
  std::string state_key() const override { return "LearningRateMonitor"; }

  void on_train_start(Trainer& trainer, LightningModule&) override;
  void on_train_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                            int64_t batch_idx) override;
  void on_train_epoch_start(Trainer& trainer, LightningModule&) override;

  // The values this callback would log now for `interval` ("step", "epoch" or "any").
  std::map<std::string, double> extract_stats(const Trainer& trainer, const std::string& interval);
  // Every value logged so far, by key.
  const std::map<std::string, std::vector<double>>& lrs() const { return lrs_; }

 private:
  void log(Trainer& trainer, const std::map<std::string, double>& stats);
  LearningRateMonitorOptions options_;
  std::map<std::string, std::vector<double>> lrs_;
};

}  // namespace lumen
