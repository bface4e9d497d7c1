#pragma once
// LightningModule, as Lightning's: a Module that also says how to train itself (the steps and
// the optimizers) and receives the loop's hooks. Trainer drives it.
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "nn/module.h"
#include "nn/optim/lr_scheduler.h"
#include "nn/optim/optimizer.h"
#include "trainer/batch.h"
#include "trainer/data_loader.h"
#include "trainer/lightning_optimizer.h"

namespace lumen {

class Trainer;

// log() options, as LightningModule.log's keyword arguments. Unset on_step/on_epoch take
// Lightning's defaults: on_step in training_step, on_epoch in validation/test steps and in
// epoch-end hooks.
struct LogOptions {
  std::optional<bool> on_step = std::nullopt;
  std::optional<bool> on_epoch = std::nullopt;
  bool prog_bar = false;
  bool logger = true;
  std::string reduce = "mean";  // "mean" (weighted by batch_size), "sum", "max", "min"
  int64_t batch_size = 0;       // 0: the size of the current batch's first tensor
  // Under DDP: the value is combined over the ranks when logged, by `reduce` (mean: the
  // average), so every rank (and rank 0's loggers) sees the global value.
  bool sync_dist = false;
};

struct SchedulerConfig {
  std::shared_ptr<optim::LRScheduler> scheduler = nullptr;
  std::string interval = "epoch";  // or "step"
  int64_t frequency = 1;
  std::string monitor = "";  // the metric passed to step(metric) (ReduceLROnPlateau)
  bool strict = true;        // a missing monitor metric is an error (else a warning)
  std::string name = "";     // LearningRateMonitor's key; unset: "lr-<Optimizer type>[-k]"
};

// What configure_optimizers returns: an optimizer, optionally with a scheduler. Converts from
// an optimizer object, so `return optim::AdamW(parameters(), {.lr = 1e-3});` works. Several
// optimizers (Lightning's `return [opt_g, opt_d], [sched_d]`) need manual optimization:
// `return OptimizerConfig({opt_g, opt_d}, {SchedulerConfig{.scheduler = sched_d}});`.
struct OptimizerConfig {
  std::vector<std::shared_ptr<optim::Optimizer>> optimizers;
  std::vector<SchedulerConfig> lr_schedulers;  // each belongs to one of the optimizers

  OptimizerConfig() = default;
  OptimizerConfig(std::shared_ptr<optim::Optimizer> opt,
                  std::optional<SchedulerConfig> sched = std::nullopt)
      : optimizers{std::move(opt)} {
    if (sched) lr_schedulers.push_back(std::move(*sched));
  }
  OptimizerConfig(std::vector<std::shared_ptr<optim::Optimizer>> opts,
                  std::vector<SchedulerConfig> scheds = {})
      : optimizers(std::move(opts)), lr_schedulers(std::move(scheds)) {}
  template <class O>
  requires std::is_base_of_v<optim::Optimizer, std::decay_t<O>> OptimizerConfig(
      O&& opt)  // NOLINT: implicit on purpose
      : optimizers{std::make_shared<std::decay_t<O>>(std::forward<O>(opt))} {}
};

class LightningModule : public nn::Module {
 public:
  virtual Tensor training_step(const Batch& batch, int64_t batch_idx) = 0;
  virtual void validation_step(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  virtual void test_step(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  // The default throws: a module used with Trainer::predict must define it.
  virtual Tensor predict_step(const Batch& batch, int64_t batch_idx);
  virtual OptimizerConfig configure_optimizers() = 0;

  virtual void on_fit_start() {}
  virtual void on_fit_end() {}
  virtual void on_train_start() {}
  virtual void on_train_end() {}
  virtual void on_train_epoch_start() {}
  virtual void on_train_epoch_end() {}
  // Lightning's setup and teardown hooks: after the DataModule's and the callbacks' (setup runs
  // before the module moves to its device and configure_optimizers, so layers built here train).
  virtual void setup(const std::string& stage) { (void)stage; }
  virtual void teardown(const std::string& stage) { (void)stage; }
  virtual void on_validation_start() {}
  virtual void on_validation_end() {}
  virtual void on_validation_batch_start(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  virtual void on_validation_batch_end(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  virtual void on_test_start() {}
  virtual void on_test_end() {}
  virtual void on_test_batch_start(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  virtual void on_test_batch_end(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  virtual void on_predict_start() {}
  virtual void on_predict_end() {}
  virtual void on_predict_epoch_start() {}
  virtual void on_predict_epoch_end() {}
  virtual void on_predict_batch_start(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
  }
  virtual void on_predict_batch_end(const Tensor& output, const Batch& batch, int64_t batch_idx) {
    (void)output;
    (void)batch;
    (void)batch_idx;
  }
  virtual void on_validation_epoch_start() {}
  virtual void on_validation_epoch_end() {}
  virtual void on_test_epoch_start() {}
  virtual void on_test_epoch_end() {}
  // Returning false skips the rest of the epoch (Lightning's "return -1").
  virtual bool on_train_batch_start(const Batch& batch, int64_t batch_idx) {
    (void)batch;
    (void)batch_idx;
    return true;
  }
  virtual void on_train_batch_end(const Tensor& loss, const Batch& batch, int64_t batch_idx) {
    (void)loss;
    (void)batch;
    (void)batch_idx;
  }
  // The Callback hooks of the same names (trainer/callback.h), called after the callbacks'.
  virtual void on_before_zero_grad(optim::Optimizer& optimizer) { (void)optimizer; }
  virtual void on_before_backward(const Tensor& loss) { (void)loss; }
  virtual void on_after_backward() {}
  virtual void on_before_optimizer_step(optim::Optimizer& optimizer) { (void)optimizer; }
  virtual void on_save_checkpoint(State& checkpoint) { (void)checkpoint; }
  virtual void on_load_checkpoint(const State& checkpoint) { (void)checkpoint; }

  // Lightning's data hooks: the loaders of trainer.fit(model) (and validate, test, predict)
  // when no DataModule is given; a loader passed to the Trainer takes the place of its hook.
  virtual std::shared_ptr<DataLoader> train_dataloader() { return nullptr; }
  virtual std::shared_ptr<DataLoader> val_dataloader() { return nullptr; }
  virtual std::shared_ptr<DataLoader> test_dataloader() { return nullptr; }
  virtual std::shared_ptr<DataLoader> predict_dataloader() { return nullptr; }

  // Records a metric for the progress bar, the loggers and callback_metrics (which
  // ModelCheckpoint and EarlyStopping monitor). Only valid while a trainer runs this module.
  void log(const std::string& name, const Tensor& value, LogOptions options = {});
  void log(const std::string& name, double value, LogOptions options = {});

  // Manual optimization (Lightning's automatic_optimization = False): set it to false in the
  // constructor and training_step does the backward and the steps itself, e.g. for a GAN:
  //   auto [opt_g, opt_d] = optimizers<2>();
  //   opt_d.zero_grad(); manual_backward(d_loss); opt_d.step();
  // The Trainer then runs no backward and steps no optimizer or scheduler (lr_schedulers() are
  // the module's to step); gradient_clip_val and accumulate_grad_batches are refused, since the
  // module clips (clip_gradients) and accumulates itself. Several optimizers need it.
  bool automatic_optimization = true;

  // The optimizers of the running fit, from configure_optimizers; optimizers<N>() also checks
  // that there are N of them, for `auto [opt_g, opt_d] = optimizers<2>();`.
  std::vector<LightningOptimizer> optimizers() const;
  template <size_t N>
  std::array<LightningOptimizer, N> optimizers() const {
    std::vector<LightningOptimizer> all = optimizers();
    check_optimizer_count(all.size(), N);
    return [&]<size_t... I>(std::index_sequence<I...>) {
      return std::array<LightningOptimizer, N>{all[I]...};
    }
    (std::make_index_sequence<N>{});
  }
  std::vector<std::shared_ptr<optim::LRScheduler>> lr_schedulers() const;
  // Lightning's manual_backward: on_before_backward; backward [16-mixed: of the scaled loss];
  // under DDP the gradients averaged over the ranks; on_after_backward. Manual optimization
  // only, inside the training part of fit.
  void manual_backward(const Tensor& loss);
  // Clips the optimizer's gradients in place: rescaled so that their total 2-norm is at most
  // gradient_clip_val ("norm"), or each clamped to [-gradient_clip_val, gradient_clip_val]
  // ("value"); 0 clips nothing. Under 16-mixed they are unscaled first.
  void clip_gradients(const LightningOptimizer& optimizer, double gradient_clip_val,
                      const std::string& gradient_clip_algorithm = "norm");
  // Lightning's toggle_optimizer: until untoggle_optimizer, the parameters of the other
  // optimizers require no gradient, so a backward for this one computes none for them.
  void toggle_optimizer(const LightningOptimizer& optimizer);
  void untoggle_optimizer(const LightningOptimizer& optimizer);

  // Stored in checkpoints (/hparams) and sent to the loggers at fit start.
  void save_hyperparameters(std::map<std::string, AttrValue> hparams) {
    hparams_ = std::move(hparams);
  }
  const std::map<std::string, AttrValue>& hparams() const { return hparams_; }

  // The Trainer whose stage runs or last ran this module, or null (none yet, or it is gone).
  Trainer* trainer() const;
  // Lightning's self.device: where this module's parameters are (the Trainer moves them to its
  // device when a stage starts), else the attached Trainer's device, else the CPU. Tensors a
  // step makes (masks, positions, class weights) go there.
  Device device() const;
  std::string type_name() const override { return "LightningModule"; }

 private:
  friend class Trainer;
  friend class Tuner;  // lr_find trains on a Trainer of its own, then re-attaches this one's
  void check_optimizer_count(size_t have, size_t want) const;
  void untoggle_all();  // every parameter toggle_optimizer changed gets its setting back
  // Expires with the Trainer (Trainer::Loop::attachment), so a module that outlives its
  // Trainer reports none instead of a dangling one.
  std::weak_ptr<Trainer* const> trainer_link_;
  std::map<std::string, AttrValue> hparams_;
  // What toggle_optimizer changed: each parameter's requires_grad before it.
  std::vector<std::pair<Tensor, bool>> requires_grad_before_toggle_;
};

}  // namespace lumen
