// Manual optimization (automatic_optimization = false): a training_step that does its own
// backward and steps must train exactly as the automatic loop does for one optimizer, exactly as
// a hand-written loop does for a GAN's two optimizers (in 32, 16-mixed and bf16-mixed), resume
// bit for bit, and every misuse must say what was wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "autograd/grad_mode.h"
#include "io/checkpoint.h"
#include "nn/optim/adam.h"
#include "nn/optim/step_lr.h"
#include "op_harness.h"
#include "trainer/learning_rate_monitor.h"
#include "trainer/model_checkpoint.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

namespace F = nn::functional;

// A loss scale that grows every 3 good steps, so that runs compare it after it moved.
constexpr optim::GradScalerOptions kMovingScale{.growth_interval = 3};
// The same from 2^10: the GAN's discriminator gradients overflow f16 at 2^16.
constexpr optim::GradScalerOptions kGanScale{.init_scale = 1024.0, .growth_interval = 3};

// TinyModel with Lightning's manual loop for one optimizer, and its step-interval scheduler
// stepped by the module after each batch.
struct ManualTinyModel : TinyModel {
  explicit ManualTinyModel(TinyModelOptions o = {}) : TinyModel(std::move(o)) {
    automatic_optimization = false;
  }
  Tensor training_step(const Batch& b, int64_t batch_idx) override {
    auto [opt] = optimizers<1>();
    Tensor loss = TinyModel::training_step(b, batch_idx);
    opt.zero_grad();
    manual_backward(loss);
    opt.step();
    for (const auto& s : lr_schedulers()) s->step();
    return loss;
  }
};

TinyModelOptions with_step_lr() {
  return {.scheduler = [](optim::Optimizer& o) -> std::optional<SchedulerConfig> {
    return SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(o, 3, 0.5),
                           .interval = "step"};
  }};
}

class ManualMatchesAutomatic : public ::testing::TestWithParam<std::string> {};

// 11 steps over batches of 8 from 64 rows: a second, reshuffled epoch is included.
TEST_P(ManualMatchesAutomatic, BitForBit) {
  const std::string precision = GetParam();
  auto run = [&](TinyModel& model) {
    TinyData data(TinyDataOptions{.shuffle = true});
    Trainer trainer(quiet({.max_steps = 11,
                           .num_sanity_val_steps = 0,
                           .precision = precision,
                           .grad_scaler = kMovingScale,
                           .strategy = "single_device"}));
    trainer.fit(model, data);
    EXPECT_EQ(trainer.global_step(), 11);
    return trainer.grad_scaler() ? trainer.grad_scaler()->get_scale() : 0.0;
  };
  manual_seed(5);
  TinyModel automatic(with_step_lr());
  double automatic_scale = run(automatic);
  manual_seed(5);
  ManualTinyModel manual(with_step_lr());
  std::vector<std::vector<float>> initial = parameters_of(manual);
  double manual_scale = run(manual);
  EXPECT_EQ(parameters_of(manual), parameters_of(automatic));
  EXPECT_NE(parameters_of(manual), initial);
  EXPECT_EQ(manual.train_losses, automatic.train_losses);
  EXPECT_EQ(manual_scale, automatic_scale);
  if (precision == "16-mixed") {
    EXPECT_NE(manual_scale, kMovingScale.init_scale);
  }
}

INSTANTIATE_TEST_SUITE_P(ManualOptimization, ManualMatchesAutomatic,
                         ::testing::Values("32", "16-mixed", "bf16-mixed"));

// The same GAN steps written out by hand with plain optimizers, autocast and a GradScaler,
// as a PyTorch user would: what the Trainer's manual optimization must reproduce.
void hand_written_gan(TinyGan& m, DataLoader& loader, int64_t batches,
                      const std::string& precision) {
  auto [opt_g, opt_d] = m.make_optimizers();
  optim::StepLR schedule(*opt_d, 2, 0.5);
  std::optional<DType> autocast;
  if (precision == "16-mixed") autocast = DType::f16;
  if (precision == "bf16-mixed") autocast = DType::bf16;
  std::optional<optim::GradScaler> scaler;
  if (precision == "16-mixed") scaler.emplace(kGanScale);
  auto backward_and_step = [&](const Tensor& loss, optim::Optimizer& opt) {
    opt.zero_grad();
    (scaler ? scaler->scale(loss) : loss).backward();
    if (scaler) {
      scaler->step(opt);
      scaler->update();
    } else {
      opt.step();
    }
  };
  auto freeze = [](const std::vector<Tensor>& params, bool frozen) {
    for (Tensor p : params) p.requires_grad_(!frozen);
  };
  int64_t done = 0;
  for (int64_t epoch = 0; done < batches; ++epoch)
    for (Batch& b : loader.epoch(epoch)) {
      if (done++ == batches) break;
      std::optional<AutocastGuard> cast;
      if (autocast) cast.emplace(*autocast);
      freeze(m.discriminator_parameters(), true);
      Tensor g_loss = m.generator_loss(b[0]);
      backward_and_step(g_loss, *opt_g);
      freeze(m.discriminator_parameters(), false);
      freeze(m.generator_parameters(), true);
      Tensor d_loss = m.discriminator_loss(b[0]);
      backward_and_step(d_loss, *opt_d);
      freeze(m.generator_parameters(), false);
      schedule.step();
      m.g_losses.push_back(g_loss.item<float>());
      m.d_losses.push_back(d_loss.item<float>());
    }
}

class GanMatchesAHandWrittenLoop : public ::testing::TestWithParam<std::string> {};

// 11 batches of 8 from 64 rows (a second epoch included); two optimizer steps each.
TEST_P(GanMatchesAHandWrittenLoop, BitForBit) {
  const std::string precision = GetParam();
  manual_seed(3);
  TinyGan expected;
  std::vector<std::vector<float>> initial = parameters_of(expected);
  hand_written_gan(expected, *TinyData().train_dataloader(), 11, precision);

  manual_seed(3);
  TinyGan gan;
  TinyData data;
  Trainer trainer(quiet({.max_steps = 22,
                         .num_sanity_val_steps = 0,
                         .precision = precision,
                         .grad_scaler = kGanScale,
                         .strategy = "single_device"}));
  trainer.fit(gan, data);
  EXPECT_EQ(trainer.global_step(), 22);  // every optimizer step counts, as Lightning
  EXPECT_EQ(gan.g_losses.size(), 11u);
  EXPECT_EQ(parameters_of(gan), parameters_of(expected));
  EXPECT_NE(parameters_of(gan), initial);
  EXPECT_EQ(gan.g_losses, expected.g_losses);
  EXPECT_EQ(gan.d_losses, expected.d_losses);
  // The module stepped the scheduler 11 times: 0.05 * 0.5^5.
  EXPECT_DOUBLE_EQ(trainer.optimizers()[1]->param_groups()[0].lr(), 0.05 / 32);
  EXPECT_EQ(trainer.callback_metrics().count("g_loss"), 1u);
  EXPECT_EQ(trainer.callback_metrics().count("d_loss"), 1u);
  if (precision == "16-mixed") {
    EXPECT_NE(trainer.grad_scaler()->get_scale(), kGanScale.init_scale);
  }
}

INSTANTIATE_TEST_SUITE_P(ManualOptimization, GanMatchesAHandWrittenLoop,
                         ::testing::Values("32", "16-mixed", "bf16-mixed"));

// max_steps counts optimizer steps and is checked between batches: 5 steps at two per batch
// end after the third batch.
TEST(ManualOptimization, MaxStepsCountsEveryOptimizerStep) {
  TinyGan gan;
  TinyData data;
  Trainer trainer(quiet({.max_steps = 5, .num_sanity_val_steps = 0}));
  trainer.fit(gan, data);
  EXPECT_EQ(gan.g_losses.size(), 3u);
  EXPECT_EQ(trainer.global_step(), 6);
}

// The Trainer steps no scheduler under manual optimization (not even an epoch-interval one at
// the epoch's end): the module does, or nobody.
TEST(ManualOptimization, TheTrainerStepsNoScheduler) {
  TinyGan gan(GanOptions{.step_scheduler = false});
  TinyData data;
  Trainer trainer(quiet({.max_epochs = 2, .num_sanity_val_steps = 0}));
  trainer.fit(gan, data);
  EXPECT_EQ(trainer.global_step(), 32);
  EXPECT_EQ(trainer.optimizers()[1]->param_groups()[0].lr(), 0.05);
}

// LearningRateMonitor names two optimizers of one type as Lightning does.
TEST(ManualOptimization, LearningRateMonitorNamesEveryOptimizer) {
  TinyGan gan(GanOptions{.two_adams = true});
  TinyData data;
  auto logger = std::make_shared<RecordingLogger>();
  Trainer trainer(quiet({.max_steps = 6,
                         .num_sanity_val_steps = 0,
                         .log_every_n_steps = 1,
                         .callbacks = {LearningRateMonitor({.logging_interval = "step"})},
                         .logger = logger}));
  trainer.fit(gan, data);
  std::map<std::string, double> last;
  std::vector<int64_t> steps;  // of the rows, Lightning's: batches that stepped, not global_step
  for (const auto& row : logger->rows)
    if (row.metrics.count("lr-Adam")) {
      steps.push_back(row.step);
      for (const auto& [k, v] : row.metrics) last[k] = v;
    }
  EXPECT_EQ(steps, (std::vector<int64_t>{0, 1, 2}));
  ASSERT_EQ(last.count("lr-Adam"), 1u);
  ASSERT_EQ(last.count("lr-Adam-1"), 1u);
  // The scheduled optimizer is named first (Lightning's order); its scheduler stepped twice
  // before the third batch.
  EXPECT_EQ(last["lr-Adam"], 0.02 * 0.5);
  EXPECT_EQ(last["lr-Adam-1"], 0.01);

  // Every second batch (not every second optimizer step: global_step + 1 is always odd here).
  auto every_other = std::make_shared<RecordingLogger>();
  Trainer sparse(quiet({.max_steps = 8,
                        .num_sanity_val_steps = 0,
                        .log_every_n_steps = 2,
                        .callbacks = {LearningRateMonitor({.logging_interval = "step"})},
                        .logger = every_other}));
  TinyGan again(GanOptions{.two_adams = true});
  sparse.fit(again, data);
  steps.clear();
  for (const auto& row : every_other->rows)
    if (row.metrics.count("lr-Adam")) steps.push_back(row.step);
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 3}));
}

// Each manual_backward runs the backward hooks, each step the optimizer-step hook; the
// automatic loop's zero_grad hook does not run.
TEST(ManualOptimization, HooksRunAroundEachBackwardAndStep) {
  std::vector<std::string> events;
  TinyGan gan;
  TinyData data;
  Trainer trainer(quiet({.max_steps = 2,
                         .num_sanity_val_steps = 0,
                         .callbacks = {std::make_shared<HookRecorder>(&events)}}));
  trainer.fit(gan, data);
  std::vector<std::string> batch;
  bool in_batch = false;
  for (const std::string& e : events) {
    if (e == "cb:on_train_batch_start") in_batch = true;
    if (in_batch) batch.push_back(e);
    if (e == "cb:on_train_batch_end") break;
  }
  EXPECT_EQ(batch,
            (std::vector<std::string>{"cb:on_train_batch_start", "cb:on_before_backward",
                                      "cb:on_after_backward", "cb:on_before_optimizer_step",
                                      "cb:on_before_backward", "cb:on_after_backward",
                                      "cb:on_before_optimizer_step", "cb:on_train_batch_end"}));
  EXPECT_EQ(std::count(events.begin(), events.end(), "cb:on_before_zero_grad"), 0);
}

// One backward for both networks, then two steps, with an inf in a discriminator gradient:
// the generator steps, the discriminator's step is skipped, and the scale backs off once for
// the two steps. (Adjusting it after each step, as Lightning does, would first grow it with
// growth_interval = 1, then unscale the discriminator's gradients by the wrong scale.)
TEST(ManualOptimization, SixteenMixedSkipsAnInfStepAndAdjustsTheScaleOncePerBackward) {
  struct OneBackward : TinyGan {
    OneBackward() : TinyGan(GanOptions{.toggle = false}) {}
    Tensor training_step(const Batch& b, int64_t) override {
      auto [opt_g, opt_d] = optimizers<2>();
      opt_g.zero_grad();
      opt_d.zero_grad();
      manual_backward(generator_loss(b[0]) + discriminator_loss(b[0]));
      step_results.push_back(opt_g.step());
      step_results.push_back(opt_d.step());
      return {};
    }
    void on_after_backward() override {
      NoGradGuard no_grad;
      Tensor g = d2.weight.grad();
      g.copy_(g * std::numeric_limits<double>::infinity());
    }
  };
  OneBackward gan;
  std::vector<float> gen_before = gan.gen.weight.to_vector<float>();
  std::vector<float> d_before = gan.d2.weight.to_vector<float>();
  TinyData data;
  Trainer trainer(quiet({.max_steps = 2,
                         .num_sanity_val_steps = 0,
                         .precision = "16-mixed",
                         .grad_scaler = {.growth_interval = 1}}));
  trainer.fit(gan, data);
  EXPECT_EQ(gan.step_results, (std::vector<bool>{true, false}));
  EXPECT_NE(gan.gen.weight.to_vector<float>(), gen_before);
  EXPECT_EQ(gan.d2.weight.to_vector<float>(), d_before);
  EXPECT_EQ(trainer.grad_scaler()->get_scale(), 65536.0 * 0.5);
  EXPECT_EQ(trainer.grad_scaler()->skipped_steps(), 1);
  EXPECT_EQ(trainer.global_step(), 2);
}

// clip_gradients clips unscaled gradients under 16-mixed: what the optimizer step sees has
// norm gradient_clip_val (or every element within it) in 32 and 16-mixed alike.
TEST(ManualOptimization, ClipGradientsClipsTheUnscaledGradients) {
  struct Clipping : ManualTinyModel {
    std::string algorithm;
    std::vector<double> norms, maxima;
    explicit Clipping(std::string a) : algorithm(std::move(a)) {}
    Tensor training_step(const Batch& b, int64_t) override {
      auto [opt] = optimizers<1>();
      Tensor loss = F::mse_loss(forward(b[0]), b[1]) * 10.0;
      opt.zero_grad();
      manual_backward(loss);
      clip_gradients(opt, 0.01, algorithm);
      opt.step();
      return loss;
    }
    void on_before_optimizer_step(optim::Optimizer& opt) override {
      double sum = 0, largest = 0;
      for (const Tensor& p : opt.param_groups()[0].params)
        for (float g : p.grad().to_vector<float>()) {
          sum += double(g) * g;
          largest = std::max(largest, double(std::fabs(g)));
        }
      norms.push_back(std::sqrt(sum));
      maxima.push_back(largest);
    }
  };
  for (std::string precision : {"32", "16-mixed"})
    for (std::string algorithm : {"norm", "value"}) {
      Clipping model(algorithm);
      TinyData data;
      Trainer trainer(quiet({.max_steps = 3,
                             .num_sanity_val_steps = 0,
                             .precision = precision,
                             .grad_scaler = {.init_scale = 256.0}}));
      trainer.fit(model, data);
      ASSERT_EQ(model.norms.size(), 3u);
      for (size_t i = 0; i < 3; ++i) {
        if (algorithm == "norm")
          EXPECT_NEAR(model.norms[i], 0.01, 1e-6) << precision << " step " << i;
        else
          EXPECT_NEAR(model.maxima[i], 0.01, 1e-9) << precision << " step " << i;
      }
    }
}

// toggle_optimizer leaves only this optimizer's parameters requiring gradients (a frozen one
// stays frozen); untoggle_optimizer gives the others their setting back.
TEST(ManualOptimization, ToggleOptimizerFreezesTheOtherOptimizersParameters) {
  struct Toggling : TinyGan {
    std::vector<std::vector<bool>> seen;  // gen.weight, d1.weight, d2.bias
    void note() {
      seen.push_back(
          {gen.weight.requires_grad(), d1.weight.requires_grad(), d2.bias.requires_grad()});
    }
    Tensor training_step(const Batch& b, int64_t) override {
      auto [opt_g, opt_d] = optimizers<2>();
      toggle_optimizer(opt_g);
      note();
      Tensor g_loss = generator_loss(b[0]);
      opt_g.zero_grad();
      opt_d.zero_grad();
      manual_backward(g_loss);
      EXPECT_FALSE(d1.weight.grad().defined());  // no gradient for the toggled-off network
      EXPECT_TRUE(gen.weight.grad().defined());
      untoggle_optimizer(opt_g);
      note();
      toggle_optimizer(opt_d);
      note();
      untoggle_optimizer(opt_d);
      note();
      return {};
    }
    void on_train_start() override { d2.bias.requires_grad_(false); }  // frozen by the user
  };
  Toggling gan;
  TinyData data;
  // No optimizer steps: the epoch runs its 8 batches.
  Trainer trainer(quiet({.max_epochs = 1, .num_sanity_val_steps = 0}));
  trainer.fit(gan, data);
  ASSERT_EQ(gan.seen.size(), 32u);
  EXPECT_EQ(gan.seen[0], (std::vector<bool>{true, false, false}));
  EXPECT_EQ(gan.seen[1], (std::vector<bool>{true, true, false}));
  EXPECT_EQ(gan.seen[2], (std::vector<bool>{false, true, false}));
  EXPECT_EQ(gan.seen[3], (std::vector<bool>{true, true, false}));
}

// A training_step that fails between toggle_optimizer and untoggle_optimizer leaves no
// parameter frozen, and the next fit of the module toggles again.
TEST(ManualOptimization, AFailedFitUntogglesTheParameters) {
  struct FailsWhileToggled : TinyGan {
    bool fail = true;
    Tensor training_step(const Batch& b, int64_t i) override {
      if (!fail) return TinyGan::training_step(b, i);
      auto [opt_g, opt_d] = optimizers<2>();
      toggle_optimizer(opt_g);
      throw Error("failed while toggled");
    }
  } gan;
  TinyData data;
  Trainer trainer(quiet({.max_steps = 4, .num_sanity_val_steps = 0}));
  EXPECT_THROW_MSG(trainer.fit(gan, data), "failed while toggled");
  for (const Tensor& p : gan.parameters()) EXPECT_TRUE(p.requires_grad());
  gan.fail = false;
  trainer.fit(gan, data);
  EXPECT_EQ(trainer.global_step(), 4);
}

// clip_gradients on a batch that does not step (16-mixed): the next backward's gradients are
// unscaled again before the step, so every step sees clipped, unscaled gradients.
TEST(ManualOptimization, ClippingWithoutAStepLeavesTheNextStepUnscaled) {
  struct ClipsEveryBatchStepsEveryOther : ManualTinyModel {
    std::vector<double> norms;
    Tensor training_step(const Batch& b, int64_t batch_idx) override {
      auto [opt] = optimizers<1>();
      Tensor loss = F::mse_loss(forward(b[0]), b[1]);
      opt.zero_grad();
      manual_backward(loss);
      clip_gradients(opt, 1e3, "norm");  // clips nothing: only the unscale matters
      if (batch_idx % 2 == 1) opt.step();
      return loss;
    }
    void on_before_optimizer_step(optim::Optimizer& opt) override {
      double sum = 0;
      for (const Tensor& p : opt.param_groups()[0].params)
        for (float g : p.grad().to_vector<float>()) sum += double(g) * g;
      norms.push_back(std::sqrt(sum));
    }
  } model;
  TinyData data;
  Trainer trainer(quiet({.max_epochs = 1,
                         .num_sanity_val_steps = 0,
                         .precision = "16-mixed",
                         .grad_scaler = {.init_scale = 256.0}}));
  trainer.fit(model, data);
  ASSERT_EQ(model.norms.size(), 4u);
  for (double n : model.norms) EXPECT_LT(n, 100.0);  // scaled by 256 they would be far larger
}

// A checkpoint written inside training_step, after a 16-mixed step and before the loop adjusts
// the scale, holds the adjusted scale, and writing it changes nothing in the run.
TEST(ManualOptimization, ACheckpointBetweenAStepAndTheScaleUpdateHoldsTheAdjustedScale) {
  TempDir dir("manual_ckpt");
  struct SavesAfterItsStep : ManualTinyModel {
    std::string path;
    double live_scale = 0;  // when the checkpoint was written
    Tensor training_step(const Batch& b, int64_t batch_idx) override {
      Tensor loss = ManualTinyModel::training_step(b, batch_idx);
      if (batch_idx == 2) {
        trainer()->save_checkpoint(path);
        live_scale = trainer()->grad_scaler()->get_scale();
      }
      return loss;
    }
  } saving;
  saving.path = dir.str("mid.ckpt");
  manual_seed(4);
  ManualTinyModel plain;
  manual_seed(4);
  SavesAfterItsStep fresh;
  fresh.path = saving.path;
  auto fit = [&](TinyModel& m) {
    TinyData data;
    Trainer trainer(quiet({.max_steps = 3,
                           .num_sanity_val_steps = 0,
                           .precision = "16-mixed",
                           .grad_scaler = {.growth_interval = 1}}));
    trainer.fit(m, data);
    return trainer.grad_scaler()->get_scale();
  };
  double plain_scale = fit(plain), saving_scale = fit(fresh);
  // growth_interval = 1: every update moves the scale (up, or down after an inf).
  EXPECT_NE(fresh.live_scale, plain_scale);
  EXPECT_EQ(saving_scale, plain_scale);
  EXPECT_EQ(parameters_of(fresh), parameters_of(plain));
  State ckpt = io::load_checkpoint(saving.path);
  EXPECT_EQ(std::get<double>(ckpt.group("precision").attrs.at("scale")), plain_scale);
}

// A checkpoint written every 4 optimizer steps (every 2 batches) in 16-mixed, with shuffled
// data, dropout and the module's own scheduler: the resumed fit ends where the uninterrupted
// one does, bit for bit.
TEST(ManualOptimization, MidEpochResumeContinuesBitIdentically) {
  TempDir dir("manual_resume");
  auto run = [&](uint64_t seed, std::vector<CallbackPtr> callbacks, const std::string& ckpt) {
    seed_everything(seed);
    TinyGan gan(GanOptions{.dropout = 0.2});
    TinyData data(TinyDataOptions{.shuffle = true, .num_workers = 2});
    Trainer trainer(quiet({.max_epochs = 2,
                           .num_sanity_val_steps = 0,
                           .deterministic = true,
                           .enable_checkpointing = true,
                           .callbacks = std::move(callbacks),
                           .precision = "16-mixed",
                           .grad_scaler = kMovingScale}));
    try {
      trainer.fit(gan, data, ckpt);
    } catch (const Error& e) {
      if (std::string(e.what()) != "simulated crash") throw;
    }
    return std::make_tuple(gan.g_losses, parameters_of(gan), trainer.global_step(),
                           trainer.grad_scaler()->get_scale());
  };
  auto checkpoint = [&] {
    return std::make_shared<ModelCheckpoint>(
        ModelCheckpointOptions{.dirpath = dir.str(), .save_last = true, .every_n_train_steps = 4});
  };
  auto [losses, params, steps, scale] = run(42, {}, "");
  ASSERT_EQ(steps, 32);
  auto [crashed_losses, p1, crashed_at, s1] =
      run(42, {std::make_shared<CrashAfterStep>(12), checkpoint()}, "");
  ASSERT_EQ(crashed_at, 12);
  auto [resumed_losses, resumed_params, resumed_steps, resumed_scale] =
      run(9, {checkpoint()}, "last");
  EXPECT_EQ(resumed_params, params);
  EXPECT_EQ(resumed_losses, std::vector<float>(losses.begin() + 6, losses.end()));
  EXPECT_EQ(resumed_steps, 32);
  EXPECT_EQ(resumed_scale, scale);
}

// On a GPU the GAN's manual steps (toggling, two optimizers, 16-mixed scaling) train as on the
// CPU: the first losses agree to rounding, and after 8 batches the parameters are close (Adam
// divides by the gradients' magnitude, so later differences grow; the tolerances allow that).
TEST(ManualOptimizationCuda, AGanOnTheGpuTrainsAsOnTheCpu) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  for (std::string precision : {"32", "16-mixed"}) {
    std::vector<float> g_losses[2];
    std::vector<std::vector<float>> params[2];
    for (int gpu = 0; gpu < 2; ++gpu) {
      manual_seed(3);
      TinyGan gan;
      TinyData data;
      TrainerOptions options = quiet({.max_steps = 16,
                                      .num_sanity_val_steps = 0,
                                      .precision = precision,
                                      .grad_scaler = kGanScale});
      options.accelerator = gpu ? "cuda" : "cpu";
      Trainer trainer(options);
      trainer.fit(gan, data);
      EXPECT_EQ(gan.d1.weight.device(), gpu ? Device::cuda() : Device::cpu());
      EXPECT_EQ(trainer.global_step(), 16);
      g_losses[gpu] = gan.g_losses;
      for (const Tensor& p : gan.parameters())
        params[gpu].push_back(p.to(Device::cpu()).to(DType::f32).to_vector<float>());
    }
    const double tol = precision == "32" ? 1e-4 : 1e-3;
    ASSERT_EQ(g_losses[1].size(), 8u);
    for (size_t i = 0; i < 3; ++i)
      EXPECT_NEAR(g_losses[1][i], g_losses[0][i], tol * (1 + std::fabs(g_losses[0][i])))
          << precision << " batch " << i;
    for (size_t i = 0; i < params[0].size(); ++i)
      for (size_t k = 0; k < params[0][i].size(); ++k)
        ASSERT_NEAR(params[1][i][k], params[0][i][k], 50 * tol)
            << precision << " parameter " << i << " element " << k;
  }
}

TEST(ManualOptimization, MisuseSaysWhatWasWrong) {
  auto fit_error = [](LightningModule& model, TrainerOptions o) -> std::string {
    o.num_sanity_val_steps = 0;
    if (!o.max_epochs) o.max_steps = 2;
    TinyData data;
    Trainer trainer(quiet(o));
    try {
      trainer.fit(model, data);
    } catch (const Error& e) {
      return e.what();
    }
    return "no error";
  };
  auto has = [](const std::string& message, const std::string& part) {
    return message.find(part) != std::string::npos;
  };

  // Two optimizers under automatic optimization.
  struct AutomaticGan : TinyGan {
    AutomaticGan() { automatic_optimization = true; }
  } automatic_gan;
  EXPECT_TRUE(has(fit_error(automatic_gan, {}),
                  "configure_optimizers returned 2 optimizers; several optimizers need manual "
                  "optimization"));
  // The automatic loop's clipping and accumulation.
  TinyGan gan;
  EXPECT_TRUE(has(fit_error(gan, {.gradient_clip_val = 0.5}),
                  "gradient_clip_val = 0.5: automatic gradient clipping is not supported for "
                  "manual optimization"));
  EXPECT_TRUE(has(fit_error(gan, {.accumulate_grad_batches = 2}),
                  "accumulate_grad_batches = 2: automatic gradient accumulation is not supported"));
  // manual_backward from an automatic module, and outside training.
  struct BackwardInAutomatic : TinyModel {
    Tensor training_step(const Batch& b, int64_t i) override {
      Tensor loss = TinyModel::training_step(b, i);
      manual_backward(loss);
      return loss;
    }
  } backward_in_automatic;
  EXPECT_TRUE(has(fit_error(backward_in_automatic, {}),
                  "manual_backward: LightningModule uses automatic optimization"));
  struct BackwardInValidation : ManualTinyModel {
    void validation_step(const Batch& b, int64_t) override {
      manual_backward(F::mse_loss(forward(b[0]), b[1]));
    }
  } backward_in_validation;
  EXPECT_TRUE(has(fit_error(backward_in_validation, {.max_epochs = 1}),
                  "manual_backward works only in the training part of Trainer.fit"));
  ManualTinyModel detached;
  EXPECT_TRUE(has(
      [&]() -> std::string {
        try {
          detached.manual_backward(F::mse_loss(detached.forward(ones({2, 4})), zeros({2, 1})));
        } catch (const Error& e) {
          return e.what();
        }
        return "no error";
      }(),
      "manual_backward: this module is not attached to a Trainer"));
  // loss.backward() in place of manual_backward under 16-mixed.
  struct PlainBackward : ManualTinyModel {
    Tensor training_step(const Batch& b, int64_t) override {
      auto [opt] = optimizers<1>();
      Tensor loss = F::mse_loss(forward(b[0]), b[1]);
      loss.backward();
      opt.step();
      return loss;
    }
  } plain_backward;
  std::vector<std::vector<float>> before = parameters_of(plain_backward);
  EXPECT_TRUE(has(fit_error(plain_backward, {.precision = "16-mixed"}),
                  "LightningOptimizer.step: no manual_backward ran in this training_step; under "
                  "16-mixed the loss must be scaled"));
  EXPECT_EQ(parameters_of(plain_backward), before);
  // The wrong count of optimizers, and a scheduler of another optimizer.
  struct WrongCount : ManualTinyModel {
    Tensor training_step(const Batch& b, int64_t) override {
      auto [a, b2] = optimizers<2>();
      return F::mse_loss(forward(b[0]), b[1]);
    }
  } wrong_count;
  EXPECT_TRUE(has(fit_error(wrong_count, {}),
                  "optimizers<2>(): configure_optimizers returned 1 optimizer(s)"));
  struct ForeignScheduler : TinyGan {
    std::shared_ptr<optim::SGD> other;
    OptimizerConfig configure_optimizers() override {
      auto [g, d] = make_optimizers();
      other = std::make_shared<optim::SGD>(gen.parameters(), optim::SGDOptions{.lr = 0.1});
      return OptimizerConfig(
          {g, d}, {SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(*other, 2)}});
    }
  } foreign;
  EXPECT_TRUE(has(fit_error(foreign, {}),
                  "a StepLR belongs to an optimizer that configure_optimizers did not return"));
  struct NullOptimizer : TinyGan {
    OptimizerConfig configure_optimizers() override {
      return OptimizerConfig(
          std::vector<std::shared_ptr<optim::Optimizer>>{make_optimizers().first, nullptr});
    }
  } null_optimizer;
  EXPECT_TRUE(has(fit_error(null_optimizer, {}), "configure_optimizers: optimizer 1 is null"));
  // A bad clipping algorithm, and a toggle inside a toggle.
  struct BadClip : ManualTinyModel {
    Tensor training_step(const Batch& b, int64_t) override {
      auto [opt] = optimizers<1>();
      manual_backward(F::mse_loss(forward(b[0]), b[1]));
      clip_gradients(opt, 1.0, "l1");
      return {};
    }
  } bad_clip;
  EXPECT_TRUE(has(fit_error(bad_clip, {}),
                  "clip_gradients: gradient_clip_algorithm must be \"norm\" or \"value\", got "
                  "\"l1\""));
  struct ToggleTwice : TinyGan {
    Tensor training_step(const Batch&, int64_t) override {
      auto [opt_g, opt_d] = optimizers<2>();
      toggle_optimizer(opt_g);
      toggle_optimizer(opt_d);
      return {};
    }
  } toggle_twice;
  EXPECT_TRUE(has(fit_error(toggle_twice, {}),
                  "toggle_optimizer: another optimizer is toggled; call untoggle_optimizer "
                  "first"));
  // A LightningOptimizer kept past its Trainer.
  struct KeepsItsOptimizer : ManualTinyModel {
    std::vector<LightningOptimizer> kept;
    Tensor training_step(const Batch& b, int64_t i) override {
      kept = optimizers();
      return ManualTinyModel::training_step(b, i);
    }
  } keeps;
  {
    TinyData data({.n_train = 8, .batch_size = 8, .with_val = false});
    Trainer trainer(quiet({.max_epochs = 1}));
    trainer.fit(keeps, data);
  }
  ASSERT_EQ(keeps.kept.size(), 1u);
  EXPECT_THROW_MSG(keeps.kept[0].step(), "LightningOptimizer.step",
                   "the Trainer it came from is gone");
}

}  // namespace
}  // namespace lumen::testing
