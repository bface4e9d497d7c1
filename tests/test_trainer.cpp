// Trainer loop semantics: hook order, optimization (accumulation, clipping), limits,
// validation scheduling, stopping rules, schedulers, and errors.
#include <gtest/gtest.h>

#include <cmath>

#include "autograd/anomaly_mode.h"
#include "autograd/grad_mode.h"
#include "nn/optim/reduce_lr_on_plateau.h"
#include "nn/optim/step_lr.h"
#include "op_harness.h"
#include "trainer/progress_bar.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

TEST(TrainerHooks, FitAndTestCallHooksInLightningsOrder) {
  std::vector<std::string> ev;
  TinyData data({.n_train = 16, .n_val = 8, .n_test = 16, .batch_size = 8});
  data.events = &ev;
  TinyModel model;
  model.events = &ev;
  Trainer trainer(quiet({.max_epochs = 1,
                         .num_sanity_val_steps = 1,
                         .callbacks = {std::make_shared<HookRecorder>(&ev)}}));
  trainer.fit(model, data);
  // Each hook on the callbacks, then on the module (Lightning's evaluation loop).
  const std::vector<std::string> val_run = {
      "cb:on_validation_start",         "module:on_validation_start",
      "cb:on_validation_epoch_start",   "module:on_validation_epoch_start",
      "cb:on_validation_batch_start",   "module:on_validation_batch_start",
      "module:validation_step",         "cb:on_validation_batch_end",
      "module:on_validation_batch_end", "cb:on_validation_epoch_end",
      "module:on_validation_epoch_end", "cb:on_validation_end",
      "module:on_validation_end"};
  const std::vector<std::string> batch = {"cb:on_train_batch_start",
                                          "module:on_train_batch_start",
                                          "module:training_step",
                                          "cb:on_before_zero_grad",
                                          "module:on_before_zero_grad",
                                          "cb:on_before_backward",
                                          "module:on_before_backward",
                                          "cb:on_after_backward",
                                          "module:on_after_backward",
                                          "cb:on_before_optimizer_step",
                                          "module:on_before_optimizer_step",
                                          "cb:on_train_batch_end",
                                          "module:on_train_batch_end"};
  std::vector<std::string> want = {"data:prepare_data",
                                   "data:setup:fit",
                                   "cb:setup:fit",
                                   "module:setup:fit",
                                   "module:configure_optimizers",
                                   "cb:on_fit_start",
                                   "module:on_fit_start",
                                   "cb:on_sanity_check_start"};
  want.insert(want.end(), val_run.begin(), val_run.end());
  for (const char* e : {"cb:on_sanity_check_end", "cb:on_train_start", "module:on_train_start",
                        "cb:on_train_epoch_start", "module:on_train_epoch_start"})
    want.push_back(e);
  want.insert(want.end(), batch.begin(), batch.end());
  want.insert(want.end(), batch.begin(), batch.end());
  want.insert(want.end(), val_run.begin(), val_run.end());
  for (const char* e : {"cb:on_train_epoch_end", "module:on_train_epoch_end", "cb:on_train_end",
                        "module:on_train_end", "cb:on_fit_end", "module:on_fit_end",
                        "data:teardown:fit", "cb:teardown:fit", "module:teardown:fit"})
    want.push_back(e);
  EXPECT_EQ(ev, want);

  ev.clear();
  trainer.test(model, data);
  std::vector<std::string> want_test = {"data:prepare_data",      "data:setup:test",
                                        "cb:setup:test",          "module:setup:test",
                                        "cb:on_test_start",       "module:on_test_start",
                                        "cb:on_test_epoch_start", "module:on_test_epoch_start"};
  for (int b = 0; b < 2; ++b)
    for (const char* e : {"cb:on_test_batch_start", "module:on_test_batch_start",
                          "module:test_step", "cb:on_test_batch_end", "module:on_test_batch_end"})
      want_test.push_back(e);
  for (const char* e :
       {"cb:on_test_epoch_end", "module:on_test_epoch_end", "cb:on_test_end", "module:on_test_end",
        "data:teardown:test", "cb:teardown:test", "module:teardown:test"})
    want_test.push_back(e);
  EXPECT_EQ(ev, want_test);

  ev.clear();
  trainer.predict(model, data);
  std::vector<std::string> want_predict = {
      "data:prepare_data",         "data:setup:predict",           "cb:setup:predict",
      "module:setup:predict",      "cb:on_predict_start",          "module:on_predict_start",
      "cb:on_predict_epoch_start", "module:on_predict_epoch_start"};
  for (int b = 0; b < 2; ++b)
    for (const char* e : {"cb:on_predict_batch_start", "module:on_predict_batch_start",
                          "cb:on_predict_batch_end", "module:on_predict_batch_end"})
      want_predict.push_back(e);
  for (const char* e : {"cb:on_predict_epoch_end", "module:on_predict_epoch_end",
                        "cb:on_predict_end", "module:on_predict_end", "data:teardown:predict",
                        "cb:teardown:predict", "module:teardown:predict"})
    want_predict.push_back(e);
  EXPECT_EQ(ev, want_predict);
}

// The backward hooks see what Lightning's do: on_before_backward gets the loss backward starts
// from (training_step's loss / accumulate_grad_batches, before any loss scaling); after the
// backward the gradients are there; zero_grad (and its hook) comes once per accumulation window.
// on_train_batch_end gets the same divided loss (Lightning's outputs["loss"]).
struct BackwardProbe : Callback {
  std::vector<float> losses, batch_end_losses;
  std::vector<double> grad_sums;
  int zero_grads = 0;
  std::string state_key() const override { return "BackwardProbe"; }
  void on_before_zero_grad(Trainer&, LightningModule&, optim::Optimizer&) override { ++zero_grads; }
  void on_before_backward(Trainer&, LightningModule&, const Tensor& loss) override {
    losses.push_back(loss.item<float>());
  }
  void on_train_batch_end(Trainer&, LightningModule&, const Tensor& loss, const Batch&,
                          int64_t) override {
    batch_end_losses.push_back(loss.item<float>());
  }
  void on_after_backward(Trainer&, LightningModule& m) override {
    Tensor g = m.parameters().at(0).grad();
    grad_sums.push_back(g.defined() ? g.abs().sum().item() : -1.0);
  }
};

TEST(TrainerHooks, BackwardHooksSeeTheAccumulatedLossAndTheGradients) {
  std::vector<double> f32_grads;
  for (const char* precision : {"32", "16-mixed"}) {
    SCOPED_TRACE(precision);
    TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
    seed_everything(1);  // the same initial weights in both runs
    TinyModel model;
    auto probe = std::make_shared<BackwardProbe>();
    Trainer trainer(quiet({.max_epochs = 1,
                           .accumulate_grad_batches = 2,
                           .callbacks = {probe},
                           .precision = precision,
                           .grad_scaler = {.init_scale = 256}}));
    trainer.fit(model, data);
    ASSERT_EQ(probe->losses.size(), 4u);
    ASSERT_EQ(model.train_losses.size(), 4u);
    for (size_t i = 0; i < 4; ++i) EXPECT_FLOAT_EQ(probe->losses[i], model.train_losses[i] / 2);
    EXPECT_EQ(probe->batch_end_losses, probe->losses);
    EXPECT_EQ(probe->zero_grads, 2);
    ASSERT_EQ(probe->grad_sums.size(), 4u);
    for (double g : probe->grad_sums) EXPECT_GT(g, 0.0);
    if (f32_grads.empty()) {
      f32_grads = probe->grad_sums;
      continue;
    }
    // 16-mixed: after the backward the gradients are still scaled (unscaling comes at the
    // optimizer step). The first window's match f32's times the scale, within f16 rounding.
    EXPECT_NEAR(probe->grad_sums[0] / f32_grads[0], 256.0, 256.0 * 0.02);
    EXPECT_NEAR(probe->grad_sums[1] / f32_grads[1], 256.0, 256.0 * 0.02);
  }
}

// A module keeps its Trainer after fit (Lightning's model.trainer) and loses it with the
// Trainer: calls that need one then fail with a clear error instead of reaching a dead object.
TEST(TrainerHooks, AModuleOutlivingItsTrainerIsNoLongerAttached) {
  TinyModel model;
  TinyData data({.n_train = 16, .batch_size = 8, .with_val = false});
  {
    Trainer trainer(quiet({.max_epochs = 1}));
    EXPECT_EQ(model.trainer(), nullptr);
    trainer.fit(model, data);
    EXPECT_EQ(model.trainer(), &trainer);
  }
  EXPECT_EQ(model.trainer(), nullptr);
  EXPECT_THROW_MSG(model.log("x", 1.0), "log('x')", "not attached to a Trainer");
  EXPECT_THROW_MSG(model.optimizers(), "optimizers()", "not attached to a Trainer");
}

TEST(TrainerHooks, ModeAndGradSwitchBetweenTrainingAndEvaluation) {
  struct Probe : TinyModel {
    std::vector<std::string> seen;
    Tensor training_step(const Batch& b, int64_t i) override {
      seen.push_back(std::string("train:") + (is_training() ? "train" : "eval") +
                     (GradMode::is_enabled() ? ":grad" : ":nograd"));
      return TinyModel::training_step(b, i);
    }
    void validation_step(const Batch& b, int64_t i) override {
      seen.push_back(std::string("val:") + (is_training() ? "train" : "eval") +
                     (GradMode::is_enabled() ? ":grad" : ":nograd") +
                     (drop.is_training() ? ":child-train" : ":child-eval"));
      TinyModel::validation_step(b, i);
    }
  } model;
  TinyData data({.n_train = 16, .n_val = 8, .batch_size = 8});
  Trainer trainer(quiet({.max_epochs = 1, .num_sanity_val_steps = 0}));
  trainer.fit(model, data);
  std::vector<std::string> want = {"train:train:grad", "train:train:grad",
                                   "val:eval:nograd:child-eval"};
  EXPECT_EQ(model.seen, want);
  EXPECT_TRUE(model.is_training());
}

// Two batches of 8 with accumulate_grad_batches = 2 make the same SGD update as one batch of
// 16 (the mean loss over 16 rows is the mean of the two batch means).
TEST(TrainerOptimization, AccumulatedGradientsMatchOneBigBatch) {
  auto run = [](int64_t batch_size, int64_t accumulate) {
    manual_seed(3);
    TinyModel model({.momentum = 0.0});
    TinyData data({.n_train = 16, .batch_size = batch_size, .with_val = false});
    Trainer trainer(quiet({.max_epochs = 1, .accumulate_grad_batches = accumulate}));
    trainer.fit(model, data);
    EXPECT_EQ(trainer.global_step(), 1);
    return model.fc1.weight.to_vector<float>();
  };
  std::vector<float> small = run(8, 2), big = run(16, 1);
  ASSERT_EQ(small.size(), big.size());
  for (size_t i = 0; i < small.size(); ++i) EXPECT_NEAR(small[i], big[i], 1e-6) << i;

  // A shorter last window still steps (Lightning steps on the epoch's last batch): 3 batches
  // with accumulation 2 make 2 steps.
  TinyModel model;
  TinyData data({.n_train = 24, .batch_size = 8, .with_val = false});
  Trainer trainer(quiet({.max_epochs = 1, .accumulate_grad_batches = 2}));
  trainer.fit(model, data);
  EXPECT_EQ(trainer.global_step(), 2);
}

// Records the gradients just before the step (before clipping) and the parameters, so the
// test can recompute the clipped update by hand.
struct GradProbe : Callback {
  std::vector<std::vector<float>> grads, params;
  std::string state_key() const override { return "GradProbe"; }
  void on_before_optimizer_step(Trainer&, LightningModule& m, optim::Optimizer&) override {
    grads.clear();
    params.clear();
    for (const Tensor& p : m.parameters()) {
      grads.push_back(p.grad().to_vector<float>());
      params.push_back(p.to_vector<float>());
    }
  }
};

TEST(TrainerOptimization, GradientClippingByNormAndByValue) {
  for (std::string algo : {"norm", "value"}) {
    const double clip = 0.05, lr = 1.0;
    TinyModel model({.lr = lr, .momentum = 0.0});
    TinyData data({.n_train = 8, .batch_size = 8, .with_val = false});
    auto probe = std::make_shared<GradProbe>();
    Trainer trainer(quiet({.max_epochs = 1,
                           .gradient_clip_val = clip,
                           .gradient_clip_algorithm = algo,
                           .callbacks = {probe}}));
    trainer.fit(model, data);
    double total = 0;
    for (const auto& g : probe->grads)
      for (float v : g) total += double(v) * v;
    total = std::sqrt(total);
    ASSERT_GT(total, clip) << "the test needs gradients larger than the clip value";
    std::vector<Tensor> params = model.parameters();
    for (size_t p = 0; p < params.size(); ++p) {
      std::vector<float> now = params[p].to_vector<float>();
      for (size_t i = 0; i < now.size(); ++i) {
        double g = probe->grads[p][i];
        double clipped = algo == "norm" ? g * clip / (total + 1e-6) : std::clamp(g, -clip, clip);
        EXPECT_NEAR(now[i], probe->params[p][i] - lr * clipped, 1e-6) << algo << " " << p;
      }
    }
  }
}

TEST(TrainerLimits, LimitBatchesByCountAndFraction) {
  TinyData data({.n_train = 80, .n_val = 40, .n_test = 40, .batch_size = 8});  // 10 / 5 / 5
  {
    TinyModel model;
    Trainer trainer(quiet({.max_epochs = 2,
                           .limit_train_batches = 3,
                           .limit_val_batches = 0.4,
                           .num_sanity_val_steps = 0}));
    trainer.fit(model, data);
    EXPECT_EQ(trainer.num_training_batches(), 3);
    EXPECT_EQ(trainer.num_val_batches(), 2);
    EXPECT_EQ(model.training_steps, 6);
    EXPECT_EQ(model.validation_steps, 4);
    EXPECT_EQ(trainer.global_step(), 6);
  }
  {
    TinyModel model;
    Trainer trainer(quiet({.max_epochs = 1, .limit_train_batches = 0.55, .limit_val_batches = 0}));
    trainer.fit(model, data);
    EXPECT_EQ(model.training_steps, 5);  // floor(10 * 0.55)
    EXPECT_EQ(model.validation_steps, 0);
  }
  {
    TinyModel model;
    Trainer trainer(quiet({.limit_test_batches = 2}));
    trainer.test(model, data);
    EXPECT_EQ(model.test_steps, 2);
  }
  TinyModel model;
  Trainer tiny(quiet({.max_epochs = 1, .limit_train_batches = 0.05}));
  EXPECT_THROW_MSG(tiny.fit(model, data), "limit_train_batches", "selects none");
}

TEST(TrainerLimits, FastDevRunRunsNBatchesOfEachWithoutLoggersOrSanityCheck) {
  TinyData data({.n_train = 80, .n_val = 40, .n_test = 40, .batch_size = 8});
  TinyModel model;
  Trainer trainer({.max_epochs = 50,
                   .fast_dev_run = 2,
                   .enable_progress_bar = false,
                   .enable_checkpointing = false,
                   .enable_model_summary = false,
                   .accelerator = "cpu"});
  EXPECT_TRUE(trainer.loggers().empty());  // logger=true, but fast_dev_run logs nothing
  trainer.fit(model, data);
  EXPECT_EQ(trainer.max_epochs(), 1);
  EXPECT_EQ(model.training_steps, 2);
  EXPECT_EQ(model.validation_steps, 2);  // no sanity check; one validation of 2 batches
  EXPECT_EQ(trainer.global_step(), 2);
  trainer.test(model, data);
  EXPECT_EQ(model.test_steps, 2);
}

TEST(TrainerLimits, OverfitBatchesTrainsAndValidatesOnTheFirstTrainBatchesInOrder) {
  TinyData data({.n_train = 80, .n_val = 40, .batch_size = 8, .shuffle = true});
  TinyModel model;
  Trainer trainer(quiet({.max_epochs = 3, .overfit_batches = 2, .num_sanity_val_steps = 0}));
  trainer.fit(model, data);
  EXPECT_EQ(model.training_steps, 6);
  EXPECT_EQ(model.validation_steps, 6);
  const Tensor& x = data.train->tensors()[0];
  float row0 = x.select(0, 0).select(0, 0).item<float>();
  float row8 = x.select(0, 8).select(0, 0).item<float>();
  std::vector<float> want = {row0, row8, row0, row8, row0, row8};
  EXPECT_EQ(model.first_inputs, want);  // unshuffled although the loader shuffles
}

// Counts validation runs and where they happen (batch index of the training loop).
struct ValRunCounter : Callback {
  std::vector<std::pair<int64_t, int64_t>> runs;  // (epoch, global_step)
  std::string state_key() const override { return "ValRunCounter"; }
  void on_validation_end(Trainer& t, LightningModule&) override {
    if (!t.sanity_checking()) runs.push_back({t.current_epoch(), t.global_step()});
  }
};

TEST(TrainerValidation, ValCheckIntervalAndEveryNEpochs) {
  TinyData data({.n_train = 80, .n_val = 16, .batch_size = 8});  // 10 train batches
  auto run = [&](TrainerOptions o) {
    TinyModel model;
    auto counter = std::make_shared<ValRunCounter>();
    o.callbacks = {counter};
    o.num_sanity_val_steps = 0;
    Trainer trainer(quiet(o));
    trainer.fit(model, data);
    return counter->runs;
  };
  using Runs = std::vector<std::pair<int64_t, int64_t>>;
  EXPECT_EQ(run({.max_epochs = 1, .val_check_interval = 0.25}),
            (Runs{{0, 2}, {0, 4}, {0, 6}, {0, 8}, {0, 10}}));
  // An integer interval counts batches; Lightning does not add a run at the epoch's end.
  EXPECT_EQ(run({.max_epochs = 1, .val_check_interval = 3}), (Runs{{0, 3}, {0, 6}, {0, 9}}));
  EXPECT_EQ(run({.max_epochs = 4, .check_val_every_n_epoch = 2}), (Runs{{1, 20}, {3, 40}}));
  TinyModel model;
  Trainer bad(quiet({.max_epochs = 1, .val_check_interval = 11}));
  EXPECT_THROW_MSG(bad.fit(model, data), "val_check_interval", "10");
}

TEST(TrainerStopping, MaxStepsEndsTheRunMidEpoch) {
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});  // 4 batches
  TinyModel model;
  Trainer trainer(quiet({.max_steps = 5}));
  EXPECT_EQ(trainer.max_epochs(), -1);
  trainer.fit(model, data);
  EXPECT_EQ(trainer.global_step(), 5);
  EXPECT_EQ(model.training_steps, 5);
  EXPECT_EQ(trainer.current_epoch(), 2);  // epoch 1 ended early, and counts as done
  Trainer default_epochs(quiet({}));
  EXPECT_EQ(default_epochs.max_epochs(), 1000);
}

// Lightning's max_time: a Timer that stops fit after the step that spent the budget, and no
// default epoch limit; a Timer among the callbacks is used instead of a second one.
TEST(TrainerStopping, MaxTimeStopsAfterTheStepThatSpentIt) {
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  TinyModel model;
  Trainer trainer(quiet({.max_time = 1e-9}));  // 0 would stop before the first step
  EXPECT_EQ(trainer.max_epochs(), -1);
  trainer.fit(model, data);
  EXPECT_EQ(trainer.global_step(), 1);

  auto hour = std::make_shared<Timer>(TimerOptions{.duration = "00:01:00:00", .verbose = false});
  TinyModel other;
  Trainer with_own(quiet({.max_epochs = 2, .max_time = 1e-9, .callbacks = {hour}}));
  with_own.fit(other, data);
  EXPECT_EQ(with_own.global_step(), 8);
  Trainer timed_by_callback(quiet({.callbacks = {std::make_shared<Timer>()}}));
  EXPECT_EQ(timed_by_callback.max_epochs(), -1);
}

struct StopAt : Callback {
  int64_t epoch, batch;  // batch -1: at the epoch's end
  StopAt(int64_t e, int64_t b) : epoch(e), batch(b) {}
  std::string state_key() const override { return "StopAt"; }
  void on_train_batch_end(Trainer& t, LightningModule&, const Tensor&, const Batch&,
                          int64_t i) override {
    if (t.current_epoch() >= epoch && i == batch) t.set_should_stop(true);
  }
  void on_train_epoch_end(Trainer& t, LightningModule&) override {
    if (t.current_epoch() >= epoch && batch == -1) t.set_should_stop(true);
  }
};

TEST(TrainerStopping, ShouldStopIsIgnoredBeforeMinEpochs) {
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  {
    TinyModel model;
    Trainer trainer(quiet({.max_epochs = 10, .callbacks = {std::make_shared<StopAt>(0, -1)}}));
    trainer.fit(model, data);
    EXPECT_EQ(trainer.current_epoch(), 1);
  }
  {
    TinyModel model;
    Trainer trainer(
        quiet({.max_epochs = 10, .min_epochs = 3, .callbacks = {std::make_shared<StopAt>(0, -1)}}));
    trainer.fit(model, data);
    EXPECT_EQ(trainer.current_epoch(), 3);
    EXPECT_EQ(model.training_steps, 12);
  }
  {
    // Mid-epoch: the epoch ends after the batch that asked to stop.
    TinyModel model;
    Trainer trainer(quiet({.max_epochs = 10, .callbacks = {std::make_shared<StopAt>(0, 1)}}));
    trainer.fit(model, data);
    EXPECT_EQ(model.training_steps, 2);
    EXPECT_EQ(trainer.current_epoch(), 1);
  }
}

// A scheduler that only counts its steps and the metrics it got.
struct CountingScheduler : optim::LRScheduler {
  std::vector<int64_t>* steps_at;
  const Trainer** trainer;
  bool plateau;
  std::vector<double> metrics;
  CountingScheduler(optim::Optimizer& o, std::vector<int64_t>* s, const Trainer** t, bool p)
      : LRScheduler(o), steps_at(s), trainer(t), plateau(p) {}
  void step() override { steps_at->push_back((*trainer)->global_step()); }
  void step(double m) override {
    metrics.push_back(m);
    step();
  }
  bool needs_metric() const override { return plateau; }
  std::string type_name() const override { return "Counting"; }
  State state_dict() const override { return {}; }
  void load_state_dict(const State&) override {}
};

TEST(TrainerSchedulers, IntervalAndFrequency) {
  TinyData data({.n_train = 48, .n_val = 8, .batch_size = 8});  // 6 batches
  const Trainer* current = nullptr;
  auto run = [&](std::string interval, int64_t frequency, int64_t accumulate, int64_t epochs) {
    std::vector<int64_t> steps;
    TinyModel model({.scheduler = [&](optim::Optimizer& o) {
      return SchedulerConfig{
          .scheduler = std::make_shared<CountingScheduler>(o, &steps, &current, false),
          .interval = interval,
          .frequency = frequency};
    }});
    Trainer trainer(quiet({.max_epochs = epochs, .accumulate_grad_batches = accumulate}));
    current = &trainer;
    trainer.fit(model, data);
    return steps;
  };
  // Step interval: after optimizer steps whose 1-based batch number the frequency divides.
  EXPECT_EQ(run("step", 1, 1, 1), (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(run("step", 2, 1, 1), (std::vector<int64_t>{2, 4, 6}));
  EXPECT_EQ(run("step", 1, 3, 1), (std::vector<int64_t>{1, 2}));
  // Epoch interval: on the last batch of epochs whose 1-based number the frequency divides.
  EXPECT_EQ(run("epoch", 1, 1, 3), (std::vector<int64_t>{6, 12, 18}));
  EXPECT_EQ(run("epoch", 2, 1, 4), (std::vector<int64_t>{12, 24}));
}

TEST(TrainerSchedulers, PlateauSchedulerStepsOnTheMonitoredMetric) {
  TinyData data({.n_train = 16, .n_val = 8, .batch_size = 8});
  {
    std::shared_ptr<optim::ReduceLROnPlateau> plateau;
    std::vector<double> val_losses;
    struct ValLossRecorder : Callback {
      std::vector<double>* out;
      explicit ValLossRecorder(std::vector<double>* o) : out(o) {}
      std::string state_key() const override { return "ValLossRecorder"; }
      void on_validation_end(Trainer& t, LightningModule&) override {
        if (!t.sanity_checking()) out->push_back(t.callback_metrics().at("val_loss"));
      }
    };
    TinyModel model({.scheduler = [&](optim::Optimizer& o) {
      plateau = std::make_shared<optim::ReduceLROnPlateau>(
          o, optim::ReduceLROnPlateauOptions{.patience = 100});
      return SchedulerConfig{.scheduler = plateau, .monitor = "val_loss"};
    }});
    Trainer trainer(
        quiet({.max_epochs = 3, .callbacks = {std::make_shared<ValLossRecorder>(&val_losses)}}));
    trainer.fit(model, data);
    ASSERT_EQ(val_losses.size(), 3u);
    EXPECT_EQ(plateau->best(), *std::min_element(val_losses.begin(), val_losses.end()));
  }
  {
    TinyModel model({.scheduler = [&](optim::Optimizer& o) {
      return SchedulerConfig{.scheduler = std::make_shared<optim::ReduceLROnPlateau>(o),
                             .monitor = "val_acc"};
    }});
    Trainer trainer(quiet({.max_epochs = 1}));
    EXPECT_THROW_MSG(trainer.fit(model, data), "conditioned on metric 'val_acc'",
                     "Available metrics are: [", "val_loss");
  }
  {
    TinyModel model({.scheduler = [&](optim::Optimizer& o) {
      return SchedulerConfig{.scheduler = std::make_shared<optim::ReduceLROnPlateau>(o)};
    }});
    Trainer trainer(quiet({.max_epochs = 1}));
    EXPECT_THROW_MSG(trainer.fit(model, data), "monitor");
  }
}

TEST(TrainerErrors, ExceptionsReachCallbacksAndLoggersThenTheCaller) {
  struct Failing : TinyModel {
    Tensor training_step(const Batch& b, int64_t i) override {
      if (i == 1) throw Error("boom in training_step");
      return TinyModel::training_step(b, i);
    }
  } model;
  std::vector<std::string> ev;
  auto logger = std::make_shared<RecordingLogger>();
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  Trainer trainer(quiet(
      {.max_epochs = 1, .callbacks = {std::make_shared<HookRecorder>(&ev)}, .logger = logger}));
  EXPECT_THROW_MSG(trainer.fit(model, data), "boom in training_step");
  EXPECT_NE(std::find(ev.begin(), ev.end(), "cb:on_exception:boom in training_step"), ev.end());
  EXPECT_EQ(logger->finalized, std::vector<std::string>{"failed"});
  EXPECT_EQ(trainer.stage(), "");
  EXPECT_THROW_MSG(model.log("x", 1.0), "trainer is not running");
}

TEST(TrainerErrors, BadLossesAndOptions) {
  TinyData data({.n_train = 16, .batch_size = 8, .with_val = false});
  struct VectorLoss : TinyModel {
    Tensor training_step(const Batch& b, int64_t) override {
      return nn::functional::mse_loss(forward(b[0]), b[1], "none");
    }
  } vector_loss;
  Trainer t1(quiet({.max_epochs = 1}));
  EXPECT_THROW_MSG(t1.fit(vector_loss, data), "training_step", "scalar loss", "[8, 1]");
  struct Detached : TinyModel {
    Tensor training_step(const Batch& b, int64_t) override {
      return nn::functional::mse_loss(forward(b[0]), b[1]).detach();
    }
  } detached;
  Trainer t2(quiet({.max_epochs = 1}));
  EXPECT_THROW_MSG(t2.fit(detached, data), "does not depend on any parameter");
  EXPECT_THROW_MSG(Trainer({.accumulate_grad_batches = 0}), "accumulate_grad_batches");
  EXPECT_THROW_MSG(Trainer({.gradient_clip_algorithm = "l1"}), "gradient_clip_algorithm");
  EXPECT_THROW_MSG(Trainer({.limit_val_batches = 1.5}), "limit_val_batches", "[0, 1]");
  EXPECT_THROW_MSG(Trainer({.precision = "8-mixed"}), "precision \"8-mixed\"", "16-mixed");
  TinyModel plain;
  Trainer t3(quiet({}));
  EXPECT_THROW_MSG(t3.fit(plain, data, "/nonexistent/x.ckpt"), "no checkpoint file");
  Trainer t4(quiet({}));
  struct NoVal : TinyData {
    using TinyData::TinyData;
    std::shared_ptr<DataLoader> val_dataloader() override { return nullptr; }
  } noval;
  EXPECT_THROW_MSG(t4.validate(plain, noval), "val_dataloader()");
}

TEST(TrainerPredict, ReturnsOneOutputPerBatchWithoutGradients) {
  TinyData data({.n_test = 20, .batch_size = 8});
  TinyModel model;
  Trainer trainer(quiet({}));
  std::vector<Tensor> out = trainer.predict(model, data);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0].shape(), (Shape{8, 1}));
  EXPECT_EQ(out[2].shape(), (Shape{4, 1}));
  EXPECT_FALSE(out[0].requires_grad());
  Tensor want = model.forward(data.test->tensors()[0].narrow(0, 16, 4));
  EXPECT_EQ(out[2].to_vector<float>(), want.to_vector<float>());
}

// Loaders instead of a DataModule (Lightning's fit(model, train_loader, val_loader)), and a
// module's own loader hooks (fit(model)): the same run as with the DataModule, bit for bit.
struct ModuleWithLoaders : TinyModel {
  TinyData data{TinyDataOptions{.shuffle = true}};
  int train_hook_calls = 0;
  std::shared_ptr<DataLoader> train_dataloader() override {
    ++train_hook_calls;
    return data.train_dataloader();
  }
  std::shared_ptr<DataLoader> val_dataloader() override { return data.val_dataloader(); }
  std::shared_ptr<DataLoader> test_dataloader() override { return data.test_dataloader(); }
};

TEST(TrainerLoaders, LoadersOrTheModulesHooksInsteadOfADataModule) {
  auto run = [](const std::function<void(Trainer&, TinyModel&)>& fit) {
    Trainer trainer(quiet({.max_epochs = 2}));
    manual_seed(21);
    ModuleWithLoaders model;
    fit(trainer, model);
    std::vector<double> result = model.val_losses;
    for (const auto& p : parameters_of(model)) result.insert(result.end(), p.begin(), p.end());
    return result;
  };
  const std::vector<double> reference = run([](Trainer& t, TinyModel& m) {
    TinyData data(TinyDataOptions{.shuffle = true});
    t.fit(m, data);
  });
  EXPECT_EQ(run([](Trainer& t, TinyModel& m) {
              TinyData data(TinyDataOptions{.shuffle = true});
              t.fit(m, data.train_dataloader(), data.val_dataloader());
            }),
            reference);
  EXPECT_EQ(run([](Trainer& t, TinyModel& m) { t.fit(m); }), reference);

  manual_seed(22);
  ModuleWithLoaders model;
  Trainer trainer(quiet({.max_epochs = 1}));
  trainer.fit(model);
  EXPECT_EQ(model.train_hook_calls, 1);
  // The module's test hook, or a given loader in its place.
  const double hook_loss = trainer.test(model, "", false).at("test_loss");
  TinyData other(TinyDataOptions{.n_test = 8});
  other.test = regression_rows(8, 99);
  const double given_loss = trainer.test(model, other.test_dataloader(), "", false).at("test_loss");
  EXPECT_NE(hook_loss, given_loss);
  EXPECT_EQ(given_loss, trainer.test(model, other, "", false).at("test_loss"));
  EXPECT_EQ(trainer.validate(model, "", false).at("val_loss"),
            trainer.validate(model, model.data, "", false).at("val_loss"));
  EXPECT_EQ(trainer.predict(model, other.test_dataloader()).size(), 1u);

  // A stage called from a hook of a loader-given stage is refused, and the running stage goes on
  // with its loaders.
  struct NestedValidate : Callback {
    std::shared_ptr<DataLoader> loader;
    std::string error;
    std::string state_key() const override { return "NestedValidate"; }
    void on_train_epoch_end(Trainer& t, LightningModule& m) override {
      try {
        t.validate(static_cast<TinyModel&>(m), loader, "", false);
      } catch (const Error& e) {
        error = e.what();
      }
    }
  };
  auto nested = std::make_shared<NestedValidate>();
  nested->loader = model.data.val_dataloader();
  Trainer outer(quiet({.max_epochs = 1, .callbacks = {nested}}));
  outer.fit(model, model.data.train_dataloader(), model.data.val_dataloader());
  EXPECT_NE(nested->error.find("while fit runs"), std::string::npos) << nested->error;
  TempDir dir("nested_stage");
  outer.save_checkpoint(dir.str("after.ckpt"));

  // Without a loader or a hook, the error says what to do.
  TinyModel plain;
  EXPECT_THROW_MSG(trainer.fit(plain), "Trainer.fit: no loader",
                   "override the LightningModule's train_dataloader()");
  EXPECT_THROW_MSG(trainer.predict(plain), "Trainer.predict: no loader");
  TinyData no_val(TinyDataOptions{.with_val = false});
  EXPECT_THROW_MSG(trainer.validate(plain, no_val), "the DataModule's val_dataloader()");
}

}  // namespace
}  // namespace lumen::testing

namespace lumen::testing {
namespace {

// A classifier small enough for every kernel family the examples use on a GPU: linear
// (cuBLAS), relu, layer norm, cross entropy, AdamW, and the Trainer's device moves.
struct GpuParityModel : LightningModule {
  nn::Linear fc1{4, 16}, fc2{16, 3};
  GpuParityModel() {
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  Tensor logits(const Tensor& x) { return fc2(relu(nn::functional::layer_norm(fc1(x), {16}))); }
  Tensor training_step(const Batch& b, int64_t) override {
    // Classes from the regression target's sign and size: 0, 1 or 2.
    Tensor y = (b[1].squeeze(1) > scalar_tensor(0.0, {.device = b[1].device()})).to(DType::i64) +
               (b[1].squeeze(1) > scalar_tensor(2.0, {.device = b[1].device()})).to(DType::i64);
    Tensor loss = nn::functional::cross_entropy(logits(b[0]), y);
    log("train_loss", loss);
    return loss;
  }
  OptimizerConfig configure_optimizers() override {
    return OptimizerConfig(
        std::make_shared<optim::AdamW>(parameters(), optim::AdamWOptions{.lr = 0.01}));
  }
};

// Lightning's self.device: the parameters' device, else the trainer's, else the CPU.
TEST(TrainerDevice, ModuleAndTrainerSayWhereTheyRun) {
  GpuParityModel model;
  EXPECT_EQ(model.device(), Device::cpu());
  TinyData data({.n_train = 16, .batch_size = 8, .shuffle = false, .with_val = false});
  TrainerOptions options = quiet({.max_epochs = 1});
  options.accelerator = "cpu";
  Trainer trainer(options);
  EXPECT_EQ(trainer.device(), Device::cpu());
  trainer.fit(model, data);
  EXPECT_EQ(trainer.device(), Device::cpu());
  EXPECT_EQ(model.device(), Device::cpu());
  struct NoParameters : LightningModule {
    Tensor training_step(const Batch& batch, int64_t) override { return batch.at(0).sum(); }
    OptimizerConfig configure_optimizers() override { return {}; }
  };
  NoParameters bare;
  EXPECT_EQ(bare.device(), Device::cpu());
}

TEST(TrainerCuda, FitOnTheGpuMatchesTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  std::vector<std::vector<double>> params[2];
  double loss[2];
  for (int gpu = 0; gpu < 2; ++gpu) {
    TinyData data({.n_train = 64, .batch_size = 8, .shuffle = true, .with_val = false});
    seed_everything(3);
    GpuParityModel model;
    TrainerOptions options = quiet({.max_epochs = 3});
    options.accelerator = gpu ? "cuda" : "cpu";
    Trainer trainer(options);
    trainer.fit(model, data);
    EXPECT_EQ(model.parameters().at(0).device(), gpu ? Device::cuda() : Device::cpu());
    EXPECT_EQ(trainer.device(), gpu ? Device::cuda() : Device::cpu());
    EXPECT_EQ(model.device(), trainer.device());
    for (const Tensor& p : model.parameters())
      params[gpu].push_back(p.to(Device::cpu()).to_vector<double>());
    loss[gpu] = trainer.callback_metrics().at("train_loss");
  }
  EXPECT_NEAR(loss[1], loss[0], 1e-4);
  for (size_t i = 0; i < params[0].size(); ++i)
    for (size_t k = 0; k < params[0][i].size(); ++k)
      ASSERT_NEAR(params[1][i][k], params[0][i][k], 1e-4) << "parameter " << i << " element " << k;
}

// DDP on one process with a GPU: the gradients go through an NCCL communicator of one rank
// (averaging over one rank changes nothing), so it trains as the single-device GPU run.
TEST(TrainerCuda, DdpOnOneGpuUsesNcclAndTrainsLikeOneDevice) {
  if (!cuda_is_available() || !LUMEN_NCCL) GTEST_SKIP() << "no CUDA device or no NCCL";
  std::vector<std::vector<double>> params[2];
  for (int ddp = 0; ddp < 2; ++ddp) {
    TinyData data({.n_train = 64, .batch_size = 8, .shuffle = true, .with_val = false});
    seed_everything(3);
    GpuParityModel model;
    TrainerOptions options = quiet({.max_epochs = 2});
    options.accelerator = "cuda";
    if (ddp) options.strategy = "ddp";
    Trainer trainer(options);
    trainer.fit(model, data);
    EXPECT_EQ(trainer.world_size(), 1);
    for (const Tensor& p : model.parameters())
      params[ddp].push_back(p.to(Device::cpu()).to_vector<double>());
  }
  for (size_t i = 0; i < params[0].size(); ++i)
    for (size_t k = 0; k < params[0][i].size(); ++k)
      ASSERT_NEAR(params[1][i][k], params[0][i][k], 1e-5) << "parameter " << i << " element " << k;
}

// detect_anomaly: the second batch's loss gets a NaN through sqrt(-1); with the option the fit
// fails in that backward naming sqrt, and the process-wide switch is off again afterwards.
TEST(Trainer, DetectAnomalyFailsAtTheFirstNaNGradient) {
  struct NaNAtSecondBatch : TinyModel {
    Tensor training_step(const Batch& b, int64_t i) override {
      Tensor loss = TinyModel::training_step(b, i);
      if (i != 1) return loss;
      return loss + lumen::sqrt(fc1.weight.sum() * 0.0 - 1.0) * 0.0;
    }
  };
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  NaNAtSecondBatch model;
  Trainer trainer(quiet({.max_epochs = 1, .detect_anomaly = true}));
  EXPECT_THROW_MSG(trainer.fit(model, data), "anomaly detection: function 'sqrt' returned NaN");
  EXPECT_EQ(trainer.global_step(), 1);
  EXPECT_FALSE(AnomalyMode::is_enabled());
  NaNAtSecondBatch unchecked;
  Trainer plain(quiet({.max_epochs = 1}));
  plain.fit(unchecked, data);
  EXPECT_EQ(plain.global_step(), 4);
}

}  // namespace
}  // namespace lumen::testing
