#pragma once
// Callback base, as Lightning's Callback: hooks the trainer calls around the loops. Every hook
// gets the trainer and the module; callbacks with state (ModelCheckpoint's best score,
// EarlyStopping's wait count) save it under /callbacks/<state_key()> in checkpoints.
#include <cstdint>
#include <string>

#include "nn/optim/optimizer.h"
#include "nn/state.h"
#include "trainer/batch.h"

namespace lumen {

class Trainer;
class LightningModule;

class Callback {
 public:
  virtual ~Callback() = default;
  // Unique among a trainer's callbacks; the default is the type name.
  virtual std::string state_key() const = 0;

  virtual void setup(Trainer&, LightningModule&, const std::string& stage) { (void)stage; }
  virtual void teardown(Trainer&, LightningModule&, const std::string& stage) { (void)stage; }
  virtual void on_fit_start(Trainer&, LightningModule&) {}
  virtual void on_fit_end(Trainer&, LightningModule&) {}
  virtual void on_sanity_check_start(Trainer&, LightningModule&) {}
  virtual void on_sanity_check_end(Trainer&, LightningModule&) {}
  virtual void on_train_start(Trainer&, LightningModule&) {}
  virtual void on_train_end(Trainer&, LightningModule&) {}
  virtual void on_train_epoch_start(Trainer&, LightningModule&) {}
  virtual void on_train_epoch_end(Trainer&, LightningModule&) {}
  virtual void on_train_batch_start(Trainer&, LightningModule&, const Batch&, int64_t batch_idx) {
    (void)batch_idx;
  }
  // `loss` is the (unscaled, detached) value training_step returned, divided by
  // accumulate_grad_batches as Lightning's outputs["loss"]; under manual optimization it is as
  // returned, and may be an undefined tensor (a training_step that returns none).
  virtual void on_train_batch_end(Trainer&, LightningModule&, const Tensor& loss, const Batch&,
                                  int64_t batch_idx) {
    (void)loss;
    (void)batch_idx;
  }
  // Before optimizer.zero_grad() (the first batch of each accumulation window).
  virtual void on_before_zero_grad(Trainer&, LightningModule&, optim::Optimizer&) {}
  // Around the backward of each training batch. `loss` is what backward starts from, before
  // any loss scaling: training_step's loss / accumulate_grad_batches. After the backward, the
  // gradients are complete (averaged over the ranks under DDP) but still scaled under
  // "16-mixed" (they are unscaled before on_before_optimizer_step), as in Lightning.
  virtual void on_before_backward(Trainer&, LightningModule&, const Tensor& loss) { (void)loss; }
  virtual void on_after_backward(Trainer&, LightningModule&) {}
  virtual void on_before_optimizer_step(Trainer&, LightningModule&, optim::Optimizer&) {}
  virtual void on_validation_start(Trainer&, LightningModule&) {}
  virtual void on_validation_end(Trainer&, LightningModule&) {}
  virtual void on_validation_epoch_start(Trainer&, LightningModule&) {}
  virtual void on_validation_epoch_end(Trainer&, LightningModule&) {}
  virtual void on_validation_batch_start(Trainer&, LightningModule&, const Batch&,
                                         int64_t batch_idx) {
    (void)batch_idx;
  }
  virtual void on_validation_batch_end(Trainer&, LightningModule&, const Batch&,
                                       int64_t batch_idx) {
    (void)batch_idx;
  }
  virtual void on_test_start(Trainer&, LightningModule&) {}
  virtual void on_test_end(Trainer&, LightningModule&) {}
  virtual void on_test_epoch_start(Trainer&, LightningModule&) {}
  virtual void on_test_epoch_end(Trainer&, LightningModule&) {}
  virtual void on_test_batch_start(Trainer&, LightningModule&, const Batch&, int64_t batch_idx) {
    (void)batch_idx;
  }
  virtual void on_test_batch_end(Trainer&, LightningModule&, const Batch&, int64_t batch_idx) {
    (void)batch_idx;
  }
  virtual void on_predict_start(Trainer&, LightningModule&) {}
  virtual void on_predict_end(Trainer&, LightningModule&) {}
  virtual void on_predict_epoch_start(Trainer&, LightningModule&) {}
  virtual void on_predict_epoch_end(Trainer&, LightningModule&) {}
  virtual void on_predict_batch_start(Trainer&, LightningModule&, const Batch&, int64_t batch_idx) {
    (void)batch_idx;
  }
  virtual void on_predict_batch_end(Trainer&, LightningModule&, const Batch&, int64_t batch_idx) {
    (void)batch_idx;
  }
  // The fit is ending on an exception (the exception is rethrown afterwards).
  virtual void on_exception(Trainer&, LightningModule&, const std::exception&) {}

  // The whole checkpoint tree is passed so a callback may add to it (rarely needed); its own
  // state goes through state_dict/load_state_dict.
  virtual void on_save_checkpoint(Trainer&, LightningModule&, State& checkpoint) {
    (void)checkpoint;
  }
  virtual void on_load_checkpoint(Trainer&, LightningModule&, const State& checkpoint) {
    (void)checkpoint;
  }
  virtual State state_dict() const { return {}; }
  virtual void load_state_dict(const State& state) { (void)state; }
};

}  // namespace lumen
