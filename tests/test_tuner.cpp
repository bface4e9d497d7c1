// Tuner.lr_find: the learning rates it trains with, the smoothed losses it records (recomputed
// here from the losses the module saw), the module put back as it was, early stopping on
// divergence, and the suggestion against torch.gradient's (computed in Python, pasted here).
#include "trainer/tuner.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "nn/optim/step_lr.h"
#include "op_harness.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

// TinyModel that records the learning rate of every optimizer step, with a step-interval
// scheduler of its own that lr_find must set aside.
struct RateRecorder : TinyModel {
  std::vector<double> rates;
  RateRecorder()
      : TinyModel({.scheduler = [](optim::Optimizer& o) -> std::optional<SchedulerConfig> {
          return SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(o, 1, 0.5),
                                 .interval = "step"};
        }}) {}
  void on_before_optimizer_step(optim::Optimizer& opt) override {
    rates.push_back(opt.param_groups()[0].lr());
  }
};

// Lightning's smoothing, whose bias correction counts the step just taken (global_step k + 1
// after step k): s_k = a_k / (1 - 0.98^(k+2)), a_k = 0.98 a_(k-1) + 0.02 loss_k, a_(-1) = 0.
std::vector<double> smoothed(const std::vector<float>& losses) {
  std::vector<double> out;
  double a = 0;
  for (size_t k = 0; k < losses.size(); ++k) {
    a = 0.98 * a + 0.02 * losses[k];
    out.push_back(a / (1 - std::pow(0.98, static_cast<double>(k + 2))));
  }
  return out;
}

TEST(Tuner, ExponentialRatesSmoothedLossesAndTheModuleComesBack) {
  manual_seed(8);
  RateRecorder model;
  std::vector<std::vector<float>> before = parameters_of(model);
  TinyData data;
  Trainer trainer(quiet({.max_epochs = 3, .num_sanity_val_steps = 0}));
  LRFinderResult r = Tuner(trainer).lr_find(
      model, data, {.min_lr = 1e-4, .max_lr = 1.0, .num_training = 20, .early_stop_threshold = {}});
  ASSERT_EQ(r.lrs.size(), 20u);  // 20 steps over 2.5 of the trainer's 3 epochs of 8 batches
  ASSERT_EQ(r.losses.size(), 20u);
  // Lightning's rates: min_lr, then min_lr (max_lr / min_lr)^((k + 1) / n), the last max_lr.
  EXPECT_EQ(r.lrs[0], 1e-4);
  for (size_t k = 1; k < 20; ++k)
    EXPECT_NEAR(r.lrs[k], 1e-4 * std::pow(1e4, (k + 1) / 20.0), 1e-15 * (1 + r.lrs[k])) << k;
  EXPECT_NEAR(r.lrs[19], 1.0, 1e-15);
  EXPECT_EQ(model.rates, r.lrs);  // what the optimizer stepped with: the scheduler was set aside
  std::vector<double> want = smoothed(model.train_losses);
  for (size_t k = 0; k < 20; ++k) EXPECT_NEAR(r.losses[k], want[k], 1e-12 * want[k]) << k;
  EXPECT_EQ(parameters_of(model), before);
  EXPECT_EQ(model.trainer(), nullptr);  // attached to no trainer before, none after

  // The trainer itself is untouched: a fit starts from step 0 with the module's own rate.
  model.rates.clear();
  trainer.fit(model, data);
  EXPECT_EQ(trainer.global_step(), 24);
  EXPECT_EQ(model.rates.front(), 0.05);
}

// Linear rates, one per optimizer step of two accumulated batches; the loss recorded is that of
// a step's last batch.
TEST(Tuner, LinearRatesPerAccumulatedStep) {
  RateRecorder model;
  TinyData data;
  Trainer trainer(quiet({.accumulate_grad_batches = 2}));
  LRFinderResult r = Tuner(trainer).lr_find(
      model, data, {.min_lr = 0.01, .max_lr = 0.1, .num_training = 6, .mode = "linear"});
  ASSERT_EQ(r.lrs.size(), 6u);
  for (size_t k = 0; k < 6; ++k)
    EXPECT_NEAR(r.lrs[k], 0.01 + 0.09 * (k == 0 ? 0.0 : (k + 1) / 6.0), 1e-15) << k;
  EXPECT_EQ(model.rates, r.lrs);
  ASSERT_EQ(r.losses.size(), 6u);
  EXPECT_EQ(model.train_losses.size(), 12u);
  // s_0 from the loss of the first step's last batch, divided by the 2 batches (Lightning's).
  EXPECT_NEAR(r.losses[0], 0.02 * (model.train_losses[1] / 2) / (1 - 0.98 * 0.98), 1e-6);
}

// A rate that grows to 1000 makes SGD diverge: the search stops once the smoothed loss passes
// 4 times the best, long before 100 steps.
TEST(Tuner, StopsWhenTheLossDiverges) {
  TinyModel model;
  TinyData data;
  Trainer trainer(quiet({}));
  LRFinderResult r =
      Tuner(trainer).lr_find(model, data, {.min_lr = 1e-3, .max_lr = 1e3, .num_training = 100});
  ASSERT_GT(r.losses.size(), 2u);
  EXPECT_LT(r.losses.size(), 100u);
  double best = *std::min_element(r.losses.begin(), r.losses.end() - 1);
  EXPECT_GT(r.losses.back(), 4 * best);
  std::optional<double> s = r.suggestion(0, 1);
  ASSERT_TRUE(s.has_value());
  EXPECT_LT(*s, r.lrs.back());
}

// lrs 1e-5 .. 1 (30 points), a sigmoid fall of the loss around 10^-2.5, a rise after 0.1, a
// dip at point 3 and a NaN at point 12. torch.gradient(losses, spacing=[lrs]) over the kept
// points gives its minimum at index 13 (skip 10, 1), 2 (skip 0, 1) and 25 (skip 25, 3).
TEST(Tuner, SuggestionIsWhereTorchGradientIsMostNegative) {
  LRFinderResult r;
  for (int k = 0; k < 30; ++k) {
    double lr = 1e-5 * std::pow(1e5, k / 30.0), x = std::log10(lr);
    r.lrs.push_back(lr);
    r.losses.push_back(2.0 / (1 + std::exp(4 * (x + 2.5))) + 0.3 +
                       (lr > 0.1 ? 0.5 * (x + 1.0) * (x + 1.0) : 0.0));
  }
  r.losses[12] = std::numeric_limits<double>::quiet_NaN();
  r.losses[3] -= 0.01;
  EXPECT_EQ(r.suggestion(), r.lrs[13]);
  EXPECT_EQ(r.suggestion(0, 1), r.lrs[2]);
  EXPECT_EQ(r.suggestion(25, 3), r.lrs[25]);
  EXPECT_EQ(r.suggestion(27, 2), std::nullopt);  // one point left
  EXPECT_EQ(r.suggestion(5, 0), std::nullopt);   // Lightning's [5:-0] is empty
  EXPECT_THROW_MSG(r.suggestion(-1, 1), "suggestion", "must be >= 0");
}

TEST(Tuner, MisuseSaysWhatWasWrong) {
  TinyData data;
  Trainer trainer(quiet({}));
  TinyGan gan;
  // Two optimizers need manual optimization, where the finder cannot set the rate.
  EXPECT_THROW_MSG(Tuner(trainer).lr_find(gan, data, {.num_training = 3}),
                   "Tuner.lr_find: LightningModule uses manual optimization");
  TinyModel model;
  std::vector<std::vector<float>> before = parameters_of(model);
  EXPECT_THROW_MSG(Tuner(trainer).lr_find(model, data, {.min_lr = 1.0, .max_lr = 0.1}),
                   "0 < min_lr < max_lr");
  EXPECT_THROW_MSG(Tuner(trainer).lr_find(model, data, {.mode = "cosine"}),
                   "mode must be \"exponential\" or \"linear\", got \"cosine\"");
  EXPECT_THROW_MSG(Tuner(trainer).lr_find(model, data, {.num_training = 0}),
                   "num_training must be >= 1");
  struct Manual : TinyModel {
    Manual() { automatic_optimization = false; }
  } manual;
  EXPECT_THROW_MSG(Tuner(trainer).lr_find(manual, data), "uses manual optimization");
  Trainer fast(quiet({.fast_dev_run = 1}));
  LRFinderResult none = Tuner(fast).lr_find(model, data);
  EXPECT_TRUE(none.lrs.empty());
  EXPECT_EQ(none.suggestion(), std::nullopt);
  // A training step that fails halfway: the module still comes back as it was.
  struct FailsAtStep3 : TinyModel {
    Tensor training_step(const Batch& b, int64_t i) override {
      if (i == 3) throw Error("failed at step 3");
      return TinyModel::training_step(b, i);
    }
  } failing;
  std::vector<std::vector<float>> failing_before = parameters_of(failing);
  EXPECT_THROW_MSG(Tuner(trainer).lr_find(failing, data, {.num_training = 10}), "failed at step 3");
  EXPECT_EQ(parameters_of(failing), failing_before);
  EXPECT_EQ(parameters_of(model), before);
}

// A module whose training step runs out of memory above `limit` examples a batch, as the
// allocator would (OutOfMemoryError).
struct MemoryBound : TinyModel {
  int64_t limit;
  explicit MemoryBound(int64_t l) : limit(l) {}
  Tensor training_step(const Batch& b, int64_t i) override {
    if (b[0].size(0) > limit)
      throw OutOfMemoryError("cpu: out of memory allocating (a batch of " +
                             std::to_string(b[0].size(0)) + ")");
    return TinyModel::training_step(b, i);
  }
};

struct BatchSizeRun {
  std::optional<int64_t> found;
  std::vector<int64_t> tried;  // every size set, in order
};

BatchSizeRun scale(int64_t limit, int64_t n_train, ScaleBatchSizeOptions options,
                   TrainerOptions trainer_options = {}) {
  MemoryBound model(limit);
  std::vector<std::vector<float>> before = parameters_of(model);
  TinyData data({.n_train = n_train, .batch_size = 8});
  Trainer trainer(quiet(trainer_options));
  BatchSizeRun run;
  run.found = Tuner(trainer).scale_batch_size(
      model, data,
      [&](int64_t b) {
        data.o.batch_size = b;
        run.tried.push_back(b);
      },
      options);
  EXPECT_EQ(parameters_of(model), before);  // the trials' training is undone
  return run;
}

// Lightning's power scaling doubles from init_val until a trial runs out of memory, then halves
// once; its binary search bisects between the last size that fit and the failure. Here 40 is
// the largest batch that fits.
TEST(Tuner, ScaleBatchSizeFindsTheLargestBatchThatFits) {
  BatchSizeRun power = scale(40, 64, {});
  EXPECT_EQ(power.found, 32);
  EXPECT_EQ(power.tried, (std::vector<int64_t>{2, 4, 8, 16, 32, 64, 32}));
  BatchSizeRun bisect = scale(40, 64, {.mode = "binsearch"});
  EXPECT_EQ(bisect.found, 40);
  EXPECT_EQ(bisect.tried, (std::vector<int64_t>{2, 4, 8, 16, 32, 64, 48, 40, 44, 42, 41, 40}));
  // Bisecting below the first size: 1 is tried before it is the answer, and a search where
  // even 1 runs out of memory fails (as power mode does).
  BatchSizeRun one = scale(1, 64, {.mode = "binsearch"});
  EXPECT_EQ(one.found, 1);
  EXPECT_EQ(one.tried, (std::vector<int64_t>{2, 1}));
  EXPECT_THROW_MSG(scale(0, 64, {.mode = "binsearch", .init_val = 1}),
                   "even batch size 1 does not fit");
  BatchSizeRun from3 = scale(40, 64, {.init_val = 3, .max_trials = 2});
  EXPECT_EQ(from3.found, 12);  // out of trials: the size after the last that fit, as Lightning
  EXPECT_EQ(from3.tried, (std::vector<int64_t>{3, 6, 12}));
}

// No growth past the training set's length (20 examples here); a size that fits stays.
TEST(Tuner, ScaleBatchSizeStopsGrowingAtTheDatasetsLength) {
  BatchSizeRun run = scale(1000, 20, {});
  EXPECT_EQ(run.found, 32);
  EXPECT_EQ(run.tried, (std::vector<int64_t>{2, 4, 8, 16, 32}));
}

TEST(Tuner, ScaleBatchSizeMisuse) {
  EXPECT_THROW_MSG(scale(40, 64, {.mode = "linear"}),
                   "Tuner.scale_batch_size: mode must be \"power\" or \"binsearch\"");
  EXPECT_THROW_MSG(scale(40, 64, {.steps_per_trial = 0}), "steps_per_trial must be >= 1");
  EXPECT_THROW_MSG(scale(0, 64, {.init_val = 1}), "even batch size 1 does not fit");
  TinyModel model;
  TinyData data;
  Trainer trainer(quiet({}));
  EXPECT_THROW_MSG(Tuner(trainer).scale_batch_size(model, data, nullptr),
                   "set_batch_size is an empty function");
  // A DataModule that keeps its first loader never tries another size: refused.
  struct KeepsItsLoader : TinyData {
    std::shared_ptr<DataLoader> kept;
    std::shared_ptr<DataLoader> train_dataloader() override {
      if (!kept) kept = TinyData::train_dataloader();
      return kept;
    }
  } keeps;
  EXPECT_THROW_MSG(
      Tuner(trainer).scale_batch_size(model, keeps, [&](int64_t b) { keeps.o.batch_size = b; }),
      "set_batch_size(4) but the DataModule's train_dataloader() made a loader of batch size 2");
  // Another error than running out of memory ends the search; the module comes back.
  struct Broken : TinyModel {
    Tensor training_step(const Batch&, int64_t) override { throw Error("broken step"); }
  } broken;
  std::vector<std::vector<float>> before = parameters_of(broken);
  EXPECT_THROW_MSG(Tuner(trainer).scale_batch_size(broken, data, [](int64_t) {}), "broken step");
  EXPECT_EQ(parameters_of(broken), before);
  Trainer fast(quiet({.fast_dev_run = 1}));
  int calls = 0;
  EXPECT_EQ(Tuner(fast).scale_batch_size(model, data, [&](int64_t) { ++calls; }), std::nullopt);
  EXPECT_EQ(calls, 0);
}

}  // namespace
}  // namespace lumen::testing
