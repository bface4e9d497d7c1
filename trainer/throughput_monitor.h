#pragma once
// ThroughputMonitor, as Lightning's: logs the throughput of training, validation, test and
// predict to the trainer's loggers (trainer/throughput.h for the rates), under keys prefixed with
// the stage: "train/time", "train/samples", "train/device/samples_per_sec", "validate/...".
// Training logs when an optimizer step ends (the step's time included); the other stages after
// each batch, with their batch count over the Trainer's stage as the step. As Lightning's, all of
// them only on the logging steps (Trainer::should_update_logs: every log_every_n_steps-th
// optimizer step), so a validate/test/predict run on its own logs with log_every_n_steps = 1
// only. Each run of a stage (each validation inside a fit) counts its time, batches, samples
// and lengths from zero. Time spent in validation does not count toward training time. On a GPU
// each update first waits for the device, so the times are the device's.
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "trainer/callback.h"
#include "trainer/throughput.h"

namespace lumen {

struct ThroughputMonitorOptions {
  // The examples in a batch (required), and optionally its items (tokens of a sequence batch).
  std::function<int64_t(const Batch&)> batch_size_fn = nullptr;
  std::function<int64_t(const Batch&)> length_fn = nullptr;
  // This device's FLOPs per batch (Lightning reads the module's flops_per_batch), and its peak
  // FLOP/s for the model FLOPs utilisation (device/mfu); unset: neither is logged.
  std::optional<double> flops_per_batch = std::nullopt;
  std::optional<double> available_flops = std::nullopt;
  int64_t window_size = 100;
  std::string separator = "/";
};

class ThroughputMonitor : public Callback {
 public:
  explicit ThroughputMonitor(ThroughputMonitorOptions options);
  std::string state_key() const override { return "ThroughputMonitor"; }

  void setup(Trainer& trainer, LightningModule&, const std::string& stage) override;
  void on_train_start(Trainer& trainer, LightningModule&) override;
  void on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&, const Batch& batch,
                          int64_t batch_idx) override;
  void on_validation_start(Trainer& trainer, LightningModule&) override;
  void on_validation_batch_end(Trainer& trainer, LightningModule&, const Batch& batch,
                               int64_t) override;
  void on_validation_end(Trainer& trainer, LightningModule&) override;
  void on_test_start(Trainer& trainer, LightningModule&) override;
  void on_test_batch_end(Trainer& trainer, LightningModule&, const Batch& batch, int64_t) override;
  void on_predict_start(Trainer& trainer, LightningModule&) override;
  void on_predict_batch_end(Trainer& trainer, LightningModule&, const Batch& batch,
                            int64_t) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Stage {
    Throughput throughput;
    Clock::time_point t0;
    int64_t batches = 0, samples = 0, lengths = 0;  // of this run of the stage
    int64_t total_batches = 0;                      // over the Trainer's stage: the log step
  };
  void start(Trainer& trainer, const std::string& stage);
  void update(Trainer& trainer, const std::string& stage, const Batch& batch);
  void log(Trainer& trainer, const std::string& stage, std::optional<int64_t> step);
  void evaluation_batch_end(Trainer& trainer, const std::string& stage, const Batch& batch);

  ThroughputMonitorOptions options_;
  std::map<std::string, Stage> stages_;
};

}  // namespace lumen
