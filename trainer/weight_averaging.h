#pragma once
// WeightAveraging and EMAWeightAveraging, as Lightning's (lightning.pytorch.callbacks): keep an
// average of the module's weights (optim::AveragedModel) while fitting, validate with it, and
// leave it in the module when training ends.
//
//   Trainer({.callbacks = {EMAWeightAveraging({.decay = 0.999})}})
//
// When: should_update(step_idx, epoch_idx) is asked after every optimizer step (step_idx, from 0)
// and every training epoch (epoch_idx); the default updates after every step. Subclass and
// override it for SWA over the last epochs, say.
// Validation: each validation epoch runs with the averaged weights swapped in, and swaps back.
// Checkpoints: /state_dict holds the average (what validate/test/predict then load), the
// module's own weights go to /current_model_state and the average's count to /averaging_state;
// resuming a fit restores both. Weights-only checkpoints (ModelCheckpoint's save_weights_only)
// skip the callbacks' hooks, as Lightning's, and hold the module's own weights.
//
// Choices where Lightning does something else:
// - Before the first update, validation uses the module's weights and the end of training
//   leaves them in place (Lightning swaps in, and at the end copies over, the weights the
//   average was made from at setup, i.e. the untrained ones).
// - Integer buffers take the module's value instead of a truncated average (AveragedModel).
// - The callback's state also keeps the epoch of the last update, so an epoch-end update is
//   not repeated after resuming.
#include <cstdint>
#include <memory>
#include <optional>

#include "nn/optim/averaged_model.h"
#include "trainer/callback.h"

namespace lumen {

struct WeightAveragingOptions {
  // Where the average lives; unset: the module's device (the Trainer's).
  std::optional<Device> device = std::nullopt;
  // Average the buffers too (running statistics); Lightning's default, unlike AveragedModel's.
  bool use_buffers = true;
  optim::AverageFn avg_fn = nullptr;  // null: the equally weighted mean (SWA)
};

class WeightAveraging : public Callback {
 public:
  explicit WeightAveraging(WeightAveragingOptions options = {});
  std::string state_key() const override { return "WeightAveraging"; }

  // Whether to update the average after optimizer step `step_idx` or after training epoch
  // `epoch_idx` (exactly one is set). Default: after every step.
  virtual bool should_update(std::optional<int64_t> step_idx, std::optional<int64_t> epoch_idx);

  // The average of the running fit (made at its setup), or null outside one.
  const optim::AveragedModel* average_model() const { return average_.get(); }

  void setup(Trainer& trainer, LightningModule& module, const std::string& stage) override;
  void on_fit_start(Trainer& trainer, LightningModule& module) override;
  void on_train_batch_end(Trainer& trainer, LightningModule& module, const Tensor& loss,
                          const Batch& batch, int64_t batch_idx) override;
  void on_train_epoch_end(Trainer& trainer, LightningModule& module) override;
  void on_train_end(Trainer& trainer, LightningModule& module) override;
  void on_validation_epoch_start(Trainer& trainer, LightningModule& module) override;
  void on_validation_epoch_end(Trainer& trainer, LightningModule& module) override;
  // A validation that fails leaves the module with its own weights again.
  void on_exception(Trainer& trainer, LightningModule& module, const std::exception& e) override;
  void on_save_checkpoint(Trainer& trainer, LightningModule& module, State& checkpoint) override;
  void on_load_checkpoint(Trainer& trainer, LightningModule& module,
                          const State& checkpoint) override;
  State state_dict() const override;  // attrs latest_update_step, latest_update_epoch
  void load_state_dict(const State& state) override;

 private:
  WeightAveragingOptions options_;
  std::unique_ptr<optim::AveragedModel> average_;
  bool swapped_ = false;  // the module holds the average (inside a validation epoch)
  bool fitted_ = false;   // the last stage set up was a fit: checkpoints carry the average
  // global_step and epoch of the last update (0 and -1: none yet, as Lightning's).
  int64_t latest_update_step_ = 0;
  int64_t latest_update_epoch_ = -1;
};

struct EMAWeightAveragingOptions {
  std::optional<Device> device = std::nullopt;
  bool use_buffers = true;
  double decay = 0.999;  // avg = decay avg + (1 - decay) weights
  // Update after optimizer steps step_idx % update_every_n_steps == 0 (0: never after a step),
  int64_t update_every_n_steps = 1;
  // from this step on (unset: from the first),
  std::optional<int64_t> update_starting_at_step = std::nullopt;
  // and, when set, also after every training epoch from this one on.
  std::optional<int64_t> update_starting_at_epoch = std::nullopt;
};

class EMAWeightAveraging : public WeightAveraging {
 public:
  explicit EMAWeightAveraging(EMAWeightAveragingOptions options = {});
  std::string state_key() const override { return "EMAWeightAveraging"; }
  bool should_update(std::optional<int64_t> step_idx, std::optional<int64_t> epoch_idx) override;

 private:
  EMAWeightAveragingOptions ema_;
};

}  // namespace lumen
