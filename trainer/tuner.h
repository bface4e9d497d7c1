#pragma once
// Tuner, as Lightning's: lr_find, the learning-rate range test (Smith, "Cyclical Learning Rates
// for Training Neural Networks", 2017). It trains the module for up to num_training optimizer
// steps with the learning rate rising from min_lr to max_lr, records the smoothed training loss
// after each step, and then puts the module's parameters and buffers back as they were. The
// suggestion is the learning rate where the loss falls fastest.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer/trainer.h"

namespace lumen {

struct LRFindOptions {
  double min_lr = 1e-8;
  double max_lr = 1.0;
  int64_t num_training = 100;  // optimizer steps, at most
  // Step k of n uses lr_k = min_lr (max_lr / min_lr)^r ("exponential") or
  // min_lr + r (max_lr - min_lr) ("linear"), r = 0 for k = 0 and (k + 1) / n after, as
  // Lightning's schedulers give them (the last step runs at max_lr).
  std::string mode = "exponential";
  // Stop once the smoothed loss exceeds early_stop_threshold times the best one; unset: never.
  std::optional<double> early_stop_threshold = 4.0;
};

// Lightning's _LRFinder results: per optimizer step k, the learning rate it used and the
// smoothed loss after it, a_k = 0.98 a_(k-1) + 0.02 loss_k (a_(-1) = 0; loss_k divided by
// accumulate_grad_batches, as Lightning's callbacks see it) with Lightning's bias
// correction s_k = a_k / (1 - 0.98^(global_step + 1)), global_step = k + 1 after the step (NaN
// when training_step returned no loss). Trainer limits (max_epochs, limit_train_batches) can
// end the search before num_training steps, as in Lightning.
struct LRFinderResult {
  std::vector<double> lrs, losses;
  // The learning rate at the most negative d(loss)/d(lr) over the results without the first
  // skip_begin and the last skip_end (and without non-finite losses), the derivative taken as
  // torch.gradient takes it on the unevenly spaced learning rates (in f32, as Lightning). None
  // with fewer than 2 points (skip_end = 0 leaves none, as Lightning's [skip_begin:-0] slice).
  std::optional<double> suggestion(int64_t skip_begin = 10, int64_t skip_end = 1) const;
};

class Tuner {
 public:
  explicit Tuner(Trainer& trainer) : trainer_(trainer) {}

  // Runs on a Trainer of its own with this one's options (device, precision, gradient clipping
  // and accumulation, limits), without validation, checkpoints, logs or other callbacks; the
  // module's own schedulers are set aside. The module must configure one optimizer. One
  // device only (not under DDP), automatic optimization only. As in Lightning, the data
  // loaders' random order and the default generator move on; the module's parameters, buffers
  // and train/eval mode do not, and it keeps no gradients. Under fast_dev_run it searches
  // nothing (an empty result), as Lightning.
  LRFinderResult lr_find(LightningModule& model, DataModule& data, LRFindOptions options = {});
  LRFinderResult lr_find(LightningModule& model, std::shared_ptr<DataLoader> train_loader,
                         LRFindOptions options = {});

 private:
  LRFinderResult run(LightningModule& model, const std::function<void(Trainer&)>& fit,
                     const LRFindOptions& options);
  Trainer& trainer_;
};

}  // namespace lumen
