#pragma once
// Tuner, as Lightning's:
//   lr_find, the learning-rate range test (Smith, "Cyclical Learning Rates for Training Neural
//   Networks", 2017): trains the module for up to num_training optimizer steps with the
//   learning rate rising from min_lr to max_lr and records the smoothed training loss after
//   each step; the suggestion is the learning rate where the loss falls fastest.
//   scale_batch_size: the largest batch size whose training steps fit in memory.
// Both put the module's parameters and buffers back as they were.
#include <cstdint>
#include <functional>
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

struct ScaleBatchSizeOptions {
  // "power": double the batch size until a trial runs out of memory, then take the last size
  // that fit; "binsearch": double likewise, then bisect between the last fit and the failure.
  std::string mode = "power";
  int64_t steps_per_trial = 3;  // optimizer steps (and validation batches) per trial
  int64_t init_val = 2;         // the first size tried
  int64_t max_trials = 25;
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

  // Lightning's batch-size finder (mode "power" or "binsearch", as its _run_power_scaling and
  // _run_binary_scaling): each trial fits the module for steps_per_trial steps, on a Trainer of
  // its own with this one's options (as lr_find's), at a batch size that grows after a trial
  // that fits and shrinks after one that throws OutOfMemoryError (any other error ends the
  // search and is rethrown). C++ has no attribute to set by name, so set_batch_size stores each
  // size where the DataModule's loaders read it (FashionMNIST::set_batch_size); it is called
  // last with the size found, which is returned. As in Lightning, a size at or above the
  // training set's length is not grown further, and a search that runs out of trials returns
  // the size after the last one that fit. Under fast_dev_run: no search, nullopt. On an error
  // other than running out of memory the DataModule keeps the last size tried. On the CPU,
  // Linux's overcommit rarely lets an allocation fail (the process is killed instead), so the
  // search is for GPU memory.
  std::optional<int64_t> scale_batch_size(LightningModule& model, DataModule& data,
                                          const std::function<void(int64_t)>& set_batch_size,
                                          ScaleBatchSizeOptions options = {});

 private:
  LRFinderResult run(LightningModule& model, const std::function<void(Trainer&)>& fit,
                     const LRFindOptions& options);
  class ModuleSnapshot;
  bool can_tune(const LightningModule& model, const char* who, const char* what) const;
  TrainerOptions tuning_options() const;
  Trainer& trainer_;
};

}  // namespace lumen
