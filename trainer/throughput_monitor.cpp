#include "trainer/throughput_monitor.h"

#include "tensor/error.h"
#include "tensor/storage.h"
#include "trainer/trainer.h"

namespace lumen {

ThroughputMonitor::ThroughputMonitor(ThroughputMonitorOptions options)
    : options_(std::move(options)) {
  LUMEN_CHECK(static_cast<bool>(options_.batch_size_fn),
              "ThroughputMonitor: batch_size_fn is required (the examples in a batch, e.g. "
              "[](const Batch& b) { return b[0].size(0); })");
  Throughput check({.available_flops = options_.available_flops,
                    .window_size = options_.window_size,
                    .separator = options_.separator});  // the same checks, now
}

// Lightning's setup: fit measures validation too.
void ThroughputMonitor::setup(Trainer& trainer, LightningModule&, const std::string& stage) {
  const ThroughputOptions o{.available_flops = options_.available_flops,
                            .world_size = trainer.world_size(),
                            .window_size = options_.window_size,
                            .separator = options_.separator};
  stages_.clear();
  if (stage == "fit") {
    stages_.emplace("train", Stage{Throughput(o), Clock::now()});
    stages_.emplace("validate", Stage{Throughput(o), Clock::now()});
  } else {
    stages_.emplace(stage, Stage{Throughput(o), Clock::now()});
  }
}

// Each run of a stage starts from zero (Lightning's _start).
void ThroughputMonitor::start(Trainer& trainer, const std::string& stage) {
  Stage& s = stages_.at(stage);
  synchronize(trainer.device());
  s.throughput.reset();
  s.batches = s.samples = s.lengths = 0;
  s.t0 = Clock::now();
}

void ThroughputMonitor::update(Trainer& trainer, const std::string& stage, const Batch& batch) {
  Stage& s = stages_.at(stage);
  synchronize(trainer.device());  // the device's time, not the launches'
  const double elapsed = std::chrono::duration<double>(Clock::now() - s.t0).count();
  s.batches += 1;
  s.total_batches += 1;
  s.samples += options_.batch_size_fn(batch);
  std::optional<int64_t> lengths;
  if (options_.length_fn) lengths = s.lengths += options_.length_fn(batch);
  s.throughput.update(elapsed, s.batches, s.samples, lengths, options_.flops_per_batch);
}

// Lightning's _compute: on the logging steps only, keys prefixed with the stage.
void ThroughputMonitor::log(Trainer& trainer, const std::string& stage,
                            std::optional<int64_t> step) {
  if (!trainer.should_update_logs()) return;
  std::map<std::string, double> metrics;
  for (const auto& [key, value] : stages_.at(stage).throughput.compute())
    metrics[stage + options_.separator + key] = value;
  trainer.log_metrics(metrics, step);
}

void ThroughputMonitor::on_train_start(Trainer& trainer, LightningModule&) {
  start(trainer, "train");
}

void ThroughputMonitor::on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&,
                                           const Batch& batch, int64_t batch_idx) {
  update(trainer, "train", batch);
  // Only once an accumulation window ends, so the optimizer step's time is in.
  const int64_t accumulate = trainer.accumulate_grad_batches();
  if ((batch_idx + 1) % accumulate == 0 || trainer.is_last_batch()) log(trainer, "train", {});
}

void ThroughputMonitor::on_validation_start(Trainer& trainer, LightningModule&) {
  if (trainer.sanity_checking()) return;
  start(trainer, "validate");
}

void ThroughputMonitor::on_validation_batch_end(Trainer& trainer, LightningModule&,
                                                const Batch& batch, int64_t) {
  if (trainer.sanity_checking()) return;
  evaluation_batch_end(trainer, "validate", batch);
}

// Every batch of validation, test and predict logs, with the stage's batch count as the step.
void ThroughputMonitor::evaluation_batch_end(Trainer& trainer, const std::string& stage,
                                             const Batch& batch) {
  update(trainer, stage, batch);
  log(trainer, stage, stages_.at(stage).total_batches);
}

// Training's clock moves past the validation run (and the gap before it), so validation does
// not lower the training rates.
void ThroughputMonitor::on_validation_end(Trainer& trainer, LightningModule&) {
  if (trainer.sanity_checking() || !stages_.count("train")) return;
  Stage& train = stages_.at("train");
  synchronize(trainer.device());
  const Clock::time_point training_finished =
      train.t0 + std::chrono::duration_cast<Clock::duration>(
                     std::chrono::duration<double>(train.throughput.last_time()));
  train.t0 += Clock::now() - training_finished;
}

void ThroughputMonitor::on_test_start(Trainer& trainer, LightningModule&) {
  start(trainer, "test");
}

void ThroughputMonitor::on_test_batch_end(Trainer& trainer, LightningModule&, const Batch& batch,
                                          int64_t) {
  evaluation_batch_end(trainer, "test", batch);
}

void ThroughputMonitor::on_predict_start(Trainer& trainer, LightningModule&) {
  start(trainer, "predict");
}

void ThroughputMonitor::on_predict_batch_end(Trainer& trainer, LightningModule&, const Batch& batch,
                                             int64_t) {
  evaluation_batch_end(trainer, "predict", batch);
}

}  // namespace lumen
