#include "trainer/tuner.h"

#include <cmath>
#include <cstdio>
#include <limits>
#include <new>

#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "trainer/trainer_loop.h"

namespace lumen {

// Lightning's _LRCallback and _LRFinder.__lr_finder_reset_params in one: at fit start the
// module's schedulers go and the learning rate of every group starts at min_lr; before each
// optimizer step's first batch the rate of that step is set and recorded, and after its last
// one the smoothed loss.
class LRFinderCallback : public Callback {
 public:
  LRFinderCallback(const LRFindOptions& options, LRFinderResult& result)
      : options_(options), result_(result) {}
  std::string state_key() const override { return "LRFinderCallback"; }

  void on_fit_start(Trainer& trainer, LightningModule&) override {
    Trainer::Loop& L = *trainer.loop_;
    LUMEN_CHECK(L.optimizers.size() == 1, "Tuner.lr_find: configure_optimizers returned ",
                L.optimizers.size(), " optimizers; the learning rate finder works with one");
    L.schedulers.clear();
  }

  void on_train_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                            int64_t batch_idx) override {
    if (batch_idx % trainer.accumulate_grad_batches() != 0) return;
    // Lightning's _ExponentialLR / _LinearLR: step 0 runs at min_lr, step k >= 1 at
    // r = (k + 1) / n (the scheduler is stepped once when made and once per step), so the last
    // step reaches max_lr.
    const size_t k = result_.lrs.size();
    const double r =
        k == 0 ? 0.0 : static_cast<double>(k + 1) / static_cast<double>(options_.num_training);
    const double lr = options_.mode == "linear"
                          ? options_.min_lr + r * (options_.max_lr - options_.min_lr)
                          : options_.min_lr * std::pow(options_.max_lr / options_.min_lr, r);
    for (optim::ParamGroup& g : trainer.loop_->optimizers.front()->param_groups())
      g.options["lr"] = lr;
    result_.lrs.push_back(lr);
  }

  void on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor& loss, const Batch&,
                          int64_t batch_idx) override {
    if (result_.losses.size() == result_.lrs.size()) return;  // inside an accumulation window
    if (!trainer.is_last_batch() && (batch_idx + 1) % trainer.accumulate_grad_batches() != 0)
      return;
    if (!loss.defined()) {
      result_.losses.push_back(std::numeric_limits<double>::quiet_NaN());
      return;
    }
    const int64_t step = trainer.global_step();
    // Divided by accumulate_grad_batches, as Lightning's callbacks see it.
    const double current = loss.item();
    avg_loss_ = kBeta * avg_loss_ + (1 - kBeta) * current;
    const double smoothed = avg_loss_ / (1 - std::pow(kBeta, static_cast<double>(step + 1)));
    if (options_.early_stop_threshold && step > 1 &&
        smoothed > *options_.early_stop_threshold * best_loss_)
      trainer.set_should_stop(true);
    if (smoothed < best_loss_ || step == 1) best_loss_ = smoothed;
    result_.losses.push_back(smoothed);
  }

 private:
  static constexpr double kBeta = 0.98;
  LRFindOptions options_;
  LRFinderResult& result_;
  double avg_loss_ = 0.0, best_loss_ = 0.0;
};

// d(loss)/d(lr) on the unevenly spaced lrs as torch.gradient takes it, in f32 as Lightning's
// tensors are (so near-ties fall the same way): inside, with d1 = x_i - x_(i-1) and
// d2 = x_(i+1) - x_i,
//   g_i = a f_(i-1) + b f_i + c f_(i+1),  a = -d2 / (d1 (d1 + d2)),  b = (d2 - d1) / (d1 d2),
//   c = d1 / (d2 (d1 + d2)),
// and one-sided first differences at the two ends.
std::optional<double> LRFinderResult::suggestion(int64_t skip_begin, int64_t skip_end) const {
  LUMEN_CHECK(skip_begin >= 0 && skip_end >= 0, "LRFinderResult.suggestion: skip_begin and ",
              "skip_end must be >= 0, got ", skip_begin, " and ", skip_end);
  // Lightning slices [skip_begin:-skip_end]: nothing at all when skip_end is 0.
  const int64_t n = skip_end == 0 ? 0 : static_cast<int64_t>(std::min(lrs.size(), losses.size()));
  std::vector<float> x, f;
  std::vector<size_t> at;
  for (int64_t i = skip_begin; i < n - skip_end; ++i)
    if (std::isfinite(static_cast<float>(losses[static_cast<size_t>(i)]))) {
      x.push_back(static_cast<float>(lrs[static_cast<size_t>(i)]));
      f.push_back(static_cast<float>(losses[static_cast<size_t>(i)]));
      at.push_back(static_cast<size_t>(i));
    }
  const size_t m = x.size();
  if (m < 2) return std::nullopt;
  size_t best = 0;
  float best_gradient = std::numeric_limits<float>::infinity();
  for (size_t i = 0; i < m; ++i) {
    float g;
    if (i == 0) {
      g = (f[1] - f[0]) / (x[1] - x[0]);
    } else if (i == m - 1) {
      g = (f[m - 1] - f[m - 2]) / (x[m - 1] - x[m - 2]);
    } else {
      const float d1 = x[i] - x[i - 1], d2 = x[i + 1] - x[i];
      const float a = -d2 / (d1 * (d1 + d2)), b = (d2 - d1) / (d1 * d2), c = d1 / (d2 * (d1 + d2));
      g = a * f[i - 1] + b * f[i] + c * f[i + 1];
    }
    if (g < best_gradient) {
      best_gradient = g;
      best = i;
    }
  }
  return lrs[at[best]];
}

// The module as it is now (parameters and buffers, train mode, the Trainer it is attached to),
// put back when the tuner is done with it, whether the search ended or threw (Lightning
// restores it from a checkpoint it writes first).
class Tuner::ModuleSnapshot {
 public:
  explicit ModuleSnapshot(LightningModule& model)
      : model_(model), attached_(model.trainer_link_), was_training_(model.is_training()) {
    NoGradGuard no_grad;
    // On the host: a copy on the GPU would take memory from the batch-size search.
    for (const auto& [name, t] : model.state_dict())
      state_[name] = t.device().is_cpu() ? t.clone() : t.to(Device::cpu());
  }
  ~ModuleSnapshot() {
    try {
      model_.load_state_dict(state_);
    } catch (const std::exception& e) {  // the same tensors it gave: cannot fail but for memory
      std::fprintf(stderr, "lumen: Tuner could not put the module's state back: %s\n", e.what());
    }
    model_.zero_grad();
    model_.train(was_training_);
    model_.trainer_link_ = attached_;
  }
  ModuleSnapshot(const ModuleSnapshot&) = delete;
  ModuleSnapshot& operator=(const ModuleSnapshot&) = delete;

 private:
  LightningModule& model_;
  nn::StateDict state_;
  std::weak_ptr<Trainer* const> attached_;
  bool was_training_;
};

// What both searches need: no stage running, one device; false under fast_dev_run, which
// skips them (Lightning).
bool Tuner::can_tune(const LightningModule& model, const char* who, const char* what) const {
  LUMEN_CHECK(trainer_.stage().empty() && (!model.trainer() || model.trainer()->stage().empty()),
              who, ": called while a Trainer runs ",
              trainer_.stage().empty() ? "the module" : trainer_.stage(), "; call it before fit");
  if (trainer_.options().fast_dev_run > 0) {
    std::fprintf(stderr, "lumen: skipping the %s since fast_dev_run is set\n", what);
    return false;
  }
  LUMEN_CHECK(trainer_.strategy() != "ddp", who,
              ": runs on one device, not under DDP; tune with a single_device Trainer");
  return true;
}

// The user trainer's options for a search's own Trainer: its device, precision, clipping,
// accumulation and limits, without sanity check, progress bar, checkpoints, logs or callbacks.
TrainerOptions Tuner::tuning_options() const {
  TrainerOptions o = trainer_.options();
  o.min_epochs = 0;
  o.num_sanity_val_steps = 0;
  o.fast_dev_run = 0;
  o.max_time = {};
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.enable_model_summary = false;
  o.logger = false;
  o.callbacks = {};
  o.profiler = {};
  o.strategy = "single_device";
  return o;
}

LRFinderResult Tuner::lr_find(LightningModule& model, DataModule& data, LRFindOptions options) {
  return run(
      model, [&](Trainer& t) { t.fit(model, data); }, options);
}

LRFinderResult Tuner::lr_find(LightningModule& model, std::shared_ptr<DataLoader> train_loader,
                              LRFindOptions options) {
  return run(
      model, [&](Trainer& t) { t.fit(model, train_loader); }, options);
}

LRFinderResult Tuner::run(LightningModule& model, const std::function<void(Trainer&)>& fit,
                          const LRFindOptions& options) {
  LUMEN_CHECK(
      options.min_lr > 0 && options.max_lr > options.min_lr && std::isfinite(options.max_lr),
      "Tuner.lr_find: expected 0 < min_lr < max_lr, got min_lr = ", options.min_lr,
      " and max_lr = ", options.max_lr);
  LUMEN_CHECK(options.num_training >= 1, "Tuner.lr_find: num_training must be >= 1, got ",
              options.num_training);
  LUMEN_CHECK(options.mode == "exponential" || options.mode == "linear",
              "Tuner.lr_find: mode must be \"exponential\" or \"linear\", got \"", options.mode,
              "\"");
  LUMEN_CHECK(!options.early_stop_threshold || *options.early_stop_threshold > 0,
              "Tuner.lr_find: early_stop_threshold must be positive or unset");
  if (!can_tune(model, "Tuner.lr_find", "the learning rate finder")) return {};
  LUMEN_CHECK(model.automatic_optimization, "Tuner.lr_find: ", model.type_name(),
              " uses manual optimization, where the Trainer "
              "sets no learning rate; the finder needs automatic optimization");
  TrainerOptions o = tuning_options();
  LRFinderResult result;
  o.max_steps = options.num_training;
  o.limit_val_batches = 0;
  o.callbacks = {std::make_shared<LRFinderCallback>(options, result)};
  ModuleSnapshot snapshot(model);
  Trainer finder(o);
  fit(finder);
  return result;
}

std::optional<int64_t> Tuner::scale_batch_size(LightningModule& model, DataModule& data,
                                               const std::function<void(int64_t)>& set_batch_size,
                                               ScaleBatchSizeOptions options) {
  const char* who = "Tuner.scale_batch_size";
  LUMEN_CHECK(options.mode == "power" || options.mode == "binsearch", who,
              ": mode must be \"power\" or \"binsearch\", got \"", options.mode, "\"");
  LUMEN_CHECK(options.steps_per_trial >= 1, who, ": steps_per_trial must be >= 1, got ",
              options.steps_per_trial);
  LUMEN_CHECK(options.init_val >= 1, who, ": init_val must be >= 1, got ", options.init_val);
  LUMEN_CHECK(options.max_trials >= 1, who, ": max_trials must be >= 1, got ", options.max_trials);
  LUMEN_CHECK(static_cast<bool>(set_batch_size), who, ": set_batch_size is an empty function");
  if (!can_tune(model, who, "batch size finder")) return std::nullopt;
  // Lightning's __scale_batch_reset_params.
  TrainerOptions o = tuning_options();
  o.max_steps = options.steps_per_trial;
  o.limit_train_batches = 1.0;
  o.limit_val_batches = options.steps_per_trial;
  ModuleSnapshot snapshot(model);

  int64_t size = options.init_val, dataset_length = -1;
  set_batch_size(size);
  // Whether a fit at the current size stayed within memory.
  auto trial = [&] {
    Trainer finder(o);
    bool fits = true;
    try {
      finder.fit(model, data);
    } catch (const OutOfMemoryError&) {
      fits = false;
    } catch (const std::bad_alloc&) {
      fits = false;
    }
    if (const auto& loader = finder.train_dataloader()) {
      dataset_length = loader->dataset().size();
      LUMEN_CHECK(loader->options().batch_size == size, who, ": set_batch_size(", size,
                  ") but the DataModule's train_dataloader() made a loader of batch size ",
                  loader->options().batch_size,
                  "; it must make its loader from the size set (no loader kept from before)");
    }
    return fits;
  };
  // Lightning's _adjust_batch_size: no growth once the size covers the training set (Lightning
  // also refuses to shrink then, keeping a size that ran out of memory; Lumen shrinks).
  auto adjust = [&](int64_t next, const char* outcome) {
    if (next > size && dataset_length >= 0 && size >= dataset_length) {
      std::fprintf(stderr,
                   "lumen: the batch size %lld is greater or equal than the length of your "
                   "dataset\n",
                   static_cast<long long>(size));
      return false;
    }
    LUMEN_CHECK(next >= 1, who, ": batch size ", size, " runs out of memory; even batch size 1 ",
                "does not fit");
    std::fprintf(stderr, "lumen: batch size %lld %s, trying batch size %lld\n",
                 static_cast<long long>(size), outcome, static_cast<long long>(next));
    const bool changed = next != size;
    size = next;
    set_batch_size(size);
    return changed;
  };

  if (options.mode == "power") {
    bool any_success = false;
    for (int64_t t = 0; t < options.max_trials; ++t) {
      if (trial()) {
        if (!adjust(size * 2, "succeeded")) break;
        any_success = true;
      } else {
        adjust(size / 2, "failed");
        if (any_success) break;
      }
    }
  } else {
    // low: the largest size that fit (Lightning starts it at 1 untried; Lumen tries 1 before
    // answering it, and fails as power mode does when even 1 does not fit).
    std::optional<int64_t> low, high;
    int64_t count = 0;
    for (;;) {
      if (trial()) {
        if (++count > options.max_trials) break;
        low = size;
        if (high) {
          if (*high - *low <= 1) break;
          if (!adjust((*high + *low) / 2, "succeeded")) break;
        } else if (!adjust(size * 2, "succeeded")) {
          break;
        }
      } else {
        high = size;
        adjust((*high + low.value_or(0)) / 2, "failed");
        if (low && *high - *low <= 1) break;
      }
    }
  }
  std::fprintf(stderr,
               "lumen: finished the batch size finder; the full run continues with batch size "
               "%lld\n",
               static_cast<long long>(size));
  return size;
}

}  // namespace lumen
