// Determinism and resume (DESIGN.md, Determinism and Nothing lost): seeded fits repeat bit for
// bit, and a fit resumed from a checkpoint (at an epoch boundary, or mid-epoch from a
// ModelCheckpoint every_n_train_steps checkpoint) continues bit-identically to one that never
// stopped. The runs use dropout, shuffling with loader threads, SGD momentum and a step-interval
// scheduler, so the generator, the data order and optimizer/scheduler state must all be
// restored exactly.
#include <gtest/gtest.h>

#include "io/checkpoint.h"
#include "nn/optim/step_lr.h"
#include "op_harness.h"
#include "trainer/model_checkpoint.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

const TinyDataOptions kData{
    .n_train = 48, .n_val = 16, .batch_size = 8, .shuffle = true, .num_workers = 2};  // 6 batches

TinyModelOptions model_options() {
  return {.dropout = 0.3, .scheduler = [](optim::Optimizer& o) -> std::optional<SchedulerConfig> {
            return SchedulerConfig{.scheduler = std::make_shared<optim::StepLR>(o, 4, 0.8),
                                   .interval = "step"};
          }};
}

struct ValRecorder : Callback {
  std::vector<double> values;
  std::string state_key() const override { return "ValRecorder"; }
  void on_validation_end(Trainer& t, LightningModule&) override {
    if (!t.sanity_checking()) values.push_back(t.callback_metrics().at("val_loss"));
  }
};

struct RunResult {
  std::vector<float> losses;
  std::vector<double> val;
  int64_t global_step = 0, epoch = 0;
};

// seed_everything(seed), a fresh model and data, then fit.
RunResult fit_run(uint64_t seed, TrainerOptions o, const std::string& ckpt = "",
                  const std::function<void(Trainer&)>& after = nullptr, int64_t hidden = 8) {
  seed_everything(seed);
  TinyModelOptions mo = model_options();
  mo.hidden = hidden;
  TinyModel model(mo);
  TinyData data(kData);
  auto val = std::make_shared<ValRecorder>();
  o.callbacks.insert(o.callbacks.begin(), val);
  o.deterministic = true;
  o.val_check_interval = 0.5;
  TrainerOptions q = quiet(o);
  if (o.accelerator == "cuda") q.accelerator = "cuda";  // quiet() means the CPU otherwise
  Trainer trainer(q);
  RunResult r;
  try {
    trainer.fit(model, data, ckpt);
  } catch (const Error& e) {
    if (std::string(e.what()) != "simulated crash") throw;
  }
  if (after) after(trainer);
  r.losses = model.train_losses;
  r.val = val->values;
  r.global_step = trainer.global_step();
  r.epoch = trainer.current_epoch();
  return r;
}

template <class T>
std::vector<T> tail(const std::vector<T>& v, size_t from) {
  return std::vector<T>(v.begin() + static_cast<std::ptrdiff_t>(from), v.end());
}

TEST(TrainerDeterminism, SeededFitsGiveBitIdenticalLosses) {
  RunResult a = fit_run(42, {.max_epochs = 3});
  RunResult b = fit_run(42, {.max_epochs = 3});
  ASSERT_EQ(a.losses.size(), 18u);
  EXPECT_EQ(a.losses, b.losses);  // exact float equality
  EXPECT_EQ(a.val, b.val);
  RunResult c = fit_run(43, {.max_epochs = 3});
  EXPECT_NE(a.losses, c.losses);  // the seed does matter
}

TEST(TrainerResume, ResumeAfterAnEpochContinuesBitIdentically) {
  TempDir dir("resume_epoch");
  std::string path = dir.str("epoch2.ckpt");
  RunResult full = fit_run(42, {.max_epochs = 4});
  RunResult first =
      fit_run(42, {.max_epochs = 2}, "", [&](Trainer& t) { t.save_checkpoint(path); });
  EXPECT_EQ(first.losses, std::vector<float>(full.losses.begin(), full.losses.begin() + 12));
  // Another seed: everything random must come from the checkpoint, not from seeding again.
  RunResult resumed = fit_run(7, {.max_epochs = 4}, path);
  EXPECT_EQ(resumed.losses, tail(full.losses, 12));
  EXPECT_EQ(resumed.val, tail(full.val, first.val.size()));
  EXPECT_EQ(resumed.global_step, full.global_step);
  EXPECT_EQ(resumed.epoch, 4);
}

// DESIGN.md's resume contract holds on any one device: on the GPU in 16-mixed the checkpoint
// also carries the optimizer state read back from the device and the grad scaler's, and the
// resumed run repeats the uninterrupted one bit for bit (cuBLAS and Lumen's kernels are
// deterministic on one stream; dropout masks are Philox numbers of the restored generator).
TEST(TrainerResumeCuda, ResumeOnTheGpuInSixteenMixedContinuesBitIdentically) {
  if (!cuda_is_available()) GTEST_SKIP() << "no CUDA device";
  TempDir dir("resume_cuda");
  std::string path = dir.str("epoch2.ckpt");
  auto options = [](int64_t epochs) {
    return TrainerOptions{.max_epochs = epochs, .accelerator = "cuda", .precision = "16-mixed"};
  };
  RunResult full = fit_run(42, options(4));
  ASSERT_EQ(full.losses.size(), 24u);
  RunResult first = fit_run(42, options(2), "", [&](Trainer& t) { t.save_checkpoint(path); });
  EXPECT_EQ(first.losses, std::vector<float>(full.losses.begin(), full.losses.begin() + 12));
  RunResult resumed = fit_run(7, options(4), path);
  EXPECT_EQ(resumed.losses, tail(full.losses, 12));
  EXPECT_EQ(resumed.val, tail(full.val, first.val.size()));
  EXPECT_EQ(resumed.global_step, full.global_step);
}

// ModelCheckpoint saves last.ckpt every 3 steps (in on_train_batch_end); the run crashes a
// step later; the resumed run ("last") finishes the interrupted batch (the validation due
// after it) and goes on. Step 3 and 9 are mid-epoch with a validation pending, step 6 is an
// epoch's last batch.
TEST(TrainerResume, MidEpochResumeFromAStepCheckpointContinuesBitIdentically) {
  RunResult full = fit_run(42, {.max_epochs = 3});
  for (int64_t saved_at : {3, 6, 9}) {
    TempDir dir("resume_mid");
    auto checkpoint = [&] {
      return std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{
          .dirpath = dir.str(), .save_last = true, .every_n_train_steps = 3});
    };
    RunResult crashed =
        fit_run(42, {.max_epochs = 3,
                     .enable_checkpointing = true,
                     .callbacks = {std::make_shared<CrashAfterStep>(saved_at + 1), checkpoint()}});
    ASSERT_EQ(crashed.global_step, saved_at + 1);
    RunResult resumed = fit_run(
        5, {.max_epochs = 3, .enable_checkpointing = true, .callbacks = {checkpoint()}}, "last");
    EXPECT_EQ(resumed.losses, tail(full.losses, static_cast<size_t>(saved_at))) << saved_at;
    // Validation ran after steps 3, 6, 9, ...: the resumed run repeats the one due right
    // after the checkpoint (it had not run when the checkpoint was written).
    size_t done_before = static_cast<size_t>(saved_at / 3 - 1);
    EXPECT_EQ(resumed.val, tail(full.val, done_before)) << saved_at;
    EXPECT_EQ(resumed.global_step, full.global_step);
  }
}

TEST(TrainerResume, CrashWhileWritingACheckpointLeavesThePreviousOneResumable) {
  TempDir dir("resume_crash");
  std::string path = dir.str("run.ckpt");
  RunResult full = fit_run(42, {.max_epochs = 4});
  fit_run(42, {.max_epochs = 2}, "", [&](Trainer& t) { t.save_checkpoint(path); });
  // A later run overwrites the same file and fails half-way through writing it.
  fit_run(42, {.max_epochs = 3}, path, [&](Trainer& t) {
    io::detail::set_fail_after_datasets(3);
    EXPECT_THROW_MSG(t.save_checkpoint(path), "injected failure");
    io::detail::set_fail_after_datasets(-1);
  });
  State old = io::load_checkpoint(path);
  EXPECT_EQ(old.group("trainer").get_int("epoch"), 2);
  RunResult resumed = fit_run(9, {.max_epochs = 4}, path);
  EXPECT_EQ(resumed.losses, tail(full.losses, 12));
}

TEST(TrainerResume, CheckpointHoldsDesignSchemaAndHooksRun) {
  TempDir dir("schema");
  std::string path = dir.str("x.ckpt");
  seed_everything(11);
  TinyModel model(model_options());
  model.save_hyperparameters({{"lr", 0.05}, {"hidden", int64_t{8}}});
  std::vector<std::string> ev;
  model.events = &ev;
  TinyData data(kData);
  Trainer trainer(quiet({.max_epochs = 1, .callbacks = {std::make_shared<HookRecorder>(&ev)}}));
  trainer.fit(model, data);
  ev.clear();
  trainer.save_checkpoint(path);
  EXPECT_EQ(ev, (std::vector<std::string>{"cb:on_save_checkpoint", "module:on_save_checkpoint"}));
  State c = io::load_checkpoint(path);
  EXPECT_EQ(c.get_string("format"), "lumen.checkpoint");
  EXPECT_EQ(c.group("state_dict").tensor("fc1.weight").shape(), (Shape{8, 4}));
  EXPECT_EQ(c.group("state_dict").tensor("fc1.weight").to_vector<float>(),
            model.fc1.weight.to_vector<float>());
  EXPECT_TRUE(c.group("optimizers").group("0").has_group("0"));  // momentum buffers
  EXPECT_EQ(c.group("schedulers").groups.size(), 1u);
  const State& t = c.group("trainer");
  EXPECT_EQ(t.get_int("epoch"), 1);
  EXPECT_EQ(t.get_int("global_step"), 6);
  EXPECT_EQ(t.get_string("phase"), "idle");
  EXPECT_EQ(c.group("rng").get_int("seed"), 11);
  EXPECT_EQ(c.group("rng").group("train_dataloader").get_int("seed"), 11);
  EXPECT_EQ(c.group("hparams").get_double("lr"), 0.05);
  EXPECT_EQ(c.group("hparams").get_int("hidden"), 8);
}

TEST(TrainerResume, ValidateAndTestLoadTheCheckpointsWeights) {
  TempDir dir("eval_ckpt");
  std::string path = dir.str("x.ckpt");
  seed_everything(3);
  TinyModel trained;
  TinyData data(kData);
  Trainer trainer(quiet({.max_epochs = 2}));
  trainer.fit(trained, data);
  trainer.save_checkpoint(path);
  double want = trainer.validate(trained, data).at("val_loss");
  TinyModel fresh;
  Trainer other(quiet({}));
  double before = other.validate(fresh, data).at("val_loss");
  EXPECT_NE(before, want);
  EXPECT_EQ(other.validate(fresh, data, path).at("val_loss"), want);
  EXPECT_EQ(fresh.fc2.weight.to_vector<float>(), trained.fc2.weight.to_vector<float>());
}

// save_weights_only (ModelCheckpoint's, and save_checkpoint's weights_only): the weights,
// hyper-parameters and counters, nothing that only resuming needs. It loads for validate as the
// full checkpoint does, and a fit refuses to resume from it, saying why.
TEST(TrainerResume, WeightsOnlyCheckpointsLoadForEvaluationButCannotResume) {
  TempDir dir("weights_only");
  seed_everything(3);
  TinyModel trained;
  TinyData data(kData);
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir.str(), .save_weights_only = true});
  Trainer trainer(quiet({.max_epochs = 2, .callbacks = {mc}}));
  trainer.fit(trained, data);
  ASSERT_FALSE(mc->best_model_path().empty());
  State light = io::load_checkpoint(mc->best_model_path());
  for (const char* kept : {"state_dict", "trainer", "hparams"})
    EXPECT_TRUE(light.has_group(kept)) << kept;
  for (const char* left : {"optimizers", "schedulers", "callbacks", "rng", "precision"})
    EXPECT_FALSE(light.has_group(left)) << left;
  trainer.save_checkpoint(dir.str("full.ckpt"));
  State full = io::load_checkpoint(dir.str("full.ckpt"));
  EXPECT_TRUE(full.has_group("optimizers"));
  EXPECT_EQ(light.group("state_dict").tensors.size(), full.group("state_dict").tensors.size());
  for (const auto& [name, t] : full.group("state_dict").tensors)
    EXPECT_EQ(light.group("state_dict").tensors.at(name).to_vector<float>(), t.to_vector<float>())
        << name;

  const double trained_loss = trainer.validate(trained, data).at("val_loss");
  TinyModel fresh;
  Trainer other(quiet({}));
  EXPECT_NE(other.validate(fresh, data).at("val_loss"), trained_loss);
  EXPECT_EQ(other.validate(fresh, data, mc->best_model_path()).at("val_loss"), trained_loss);
  EXPECT_EQ(fresh.fc2.weight.to_vector<float>(), trained.fc2.weight.to_vector<float>());
  TinyModel resumed;
  Trainer again(quiet({.max_epochs = 3}));
  EXPECT_THROW_MSG(again.fit(resumed, data, mc->best_model_path()), "no /optimizers group",
                   "weights only");
}

TEST(TrainerResume, MismatchedModelIsRefusedWithTheDifferences) {
  TempDir dir("mismatch");
  std::string path = dir.str("x.ckpt");
  fit_run(42, {.max_epochs = 1}, "", [&](Trainer& t) { t.save_checkpoint(path); });
  EXPECT_THROW_MSG(fit_run(42, {.max_epochs = 2}, path, nullptr, /*hidden=*/6),
                   "does not match the model",
                   "fc1.weight shape [8, 4] in checkpoint vs [6, 4] in model",
                   "fc2.weight shape [1, 8] in checkpoint vs [1, 6] in model");
  struct Wider : TinyModel {
    nn::Linear extra{1, 1};
    Wider() { register_module("extra", extra); }
  } wider;
  TinyData data(kData);
  Trainer trainer(quiet({.max_epochs = 2}));
  EXPECT_THROW_MSG(trainer.fit(wider, data, path), "missing extra.weight", "missing extra.bias");
  Trainer no_mc(quiet({.max_epochs = 2}));
  TinyModel plain;
  EXPECT_THROW_MSG(no_mc.fit(plain, data, "last"), "needs a ModelCheckpoint");
}

}  // namespace
}  // namespace lumen::testing
