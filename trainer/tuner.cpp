#include "trainer/tuner.h"

#include <cmath>
#include <cstdio>
#include <limits>

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
    if (batch_idx % trainer.options().accumulate_grad_batches != 0) return;
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
    if (!trainer.is_last_batch() &&
        (batch_idx + 1) % trainer.options().accumulate_grad_batches != 0)
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
  LUMEN_CHECK(trainer_.stage().empty() && (!model.trainer() || model.trainer()->stage().empty()),
              "Tuner.lr_find: called while a Trainer runs ",
              trainer_.stage().empty() ? "the module" : trainer_.stage(), "; call it before fit");
  LUMEN_CHECK(model.automatic_optimization, "Tuner.lr_find: ", model.type_name(),
              " uses manual optimization, where the Trainer "
              "sets no learning rate; the finder needs automatic optimization");
  // Lightning skips the search under fast_dev_run.
  if (trainer_.options().fast_dev_run > 0) {
    std::fprintf(stderr, "lumen: skipping the learning rate finder since fast_dev_run is set\n");
    return {};
  }
  LUMEN_CHECK(trainer_.strategy() != "ddp",
              "Tuner.lr_find: runs on one device, not under DDP; find the rate with a "
              "single_device Trainer");
  TrainerOptions o = trainer_.options();

  LRFinderResult result;
  o.max_steps = options.num_training;
  o.min_epochs = 0;
  o.num_sanity_val_steps = 0;
  o.limit_val_batches = 0;
  o.fast_dev_run = 0;
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.enable_model_summary = false;
  o.logger = false;
  o.callbacks = {std::make_shared<LRFinderCallback>(options, result)};
  o.strategy = "single_device";

  // The module's parameters and buffers as they are now, to put back (Lightning restores them
  // from a checkpoint it writes first).
  nn::StateDict before;
  {
    NoGradGuard no_grad;
    for (const auto& [name, t] : model.state_dict()) before[name] = t.clone();
  }
  std::weak_ptr<Trainer* const> attached = model.trainer_link_;
  const bool was_training = model.is_training();
  auto put_back = [&] {
    model.load_state_dict(before);
    model.zero_grad();
    model.train(was_training);
    model.trainer_link_ = attached;
  };
  {
    Trainer finder(o);
    try {
      fit(finder);
    } catch (...) {
      put_back();
      throw;
    }
  }
  put_back();
  return result;
}

}  // namespace lumen
