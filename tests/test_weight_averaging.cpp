// optim::AveragedModel against averages computed in f64 from recorded weights, and the
// WeightAveraging / EMAWeightAveraging callbacks in fits: what validation sees, what training
// ends with, checkpoints and resuming.
#include <gtest/gtest.h>

#include <cmath>
#include <optional>

#include "io/checkpoint.h"
#include "nn/batch_norm.h"
#include "nn/optim/averaged_model.h"
#include "op_harness.h"
#include "trainer/update_bn.h"
#include "trainer/weight_averaging.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::parameters_of;
using testing::quiet;
using testing::SaveAtEpochEnd;
using testing::TempDir;
using testing::TinyData;
using testing::TinyModel;
using Weights = std::vector<std::vector<float>>;

struct LinearBn : nn::Module {
  nn::Linear fc{3, 2};
  nn::BatchNorm1d bn{2};
  LinearBn() {
    register_module("fc", fc);
    register_module("bn", bn);
  }
  // New random weights and one batch-norm update, as a training step would leave them.
  void perturb(Generator& gen) {
    NoGradGuard no_grad;
    for (const Tensor& p : parameters()) p.copy_(randn(p.shape(), {}, &gen));
    bn.forward(randn({5, 2}, {}, &gen));
  }
};

// Every tensor of `named` as f64 values.
std::vector<std::vector<double>> values(const nn::NamedTensors& named) {
  std::vector<std::vector<double>> out;
  for (const auto& [name, t] : named) out.push_back(t.to(DType::f64).to_vector<double>());
  return out;
}

void expect_near(const std::vector<std::vector<double>>& got,
                 const std::vector<std::vector<double>>& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size()) << i;
    for (size_t j = 0; j < got[i].size(); ++j)
      EXPECT_NEAR(got[i][j], want[i][j], tol * (1 + std::abs(want[i][j]))) << i << "," << j;
  }
}

// The module's tensors the average mirrors (parameters then buffers), as f64.
std::vector<std::vector<double>> snapshot(const nn::Module& m, bool buffers) {
  nn::NamedTensors named = m.named_parameters();
  if (buffers)
    for (auto& b : m.named_buffers()) named.push_back(b);
  return values(named);
}

// SWA: the mean of every update's weights; EMA: x0, then decay avg + (1 - decay) x. Floating
// buffers are averaged with use_buffers; num_batches_tracked is the module's.
TEST(AveragedModel, SwaMeanAndEmaAgainstF64) {
  Generator gen(3);
  LinearBn m;
  for (bool ema : {false, true}) {
    const double decay = 0.7;
    optim::AveragedModel avg(
        m, {.use_buffers = true, .avg_fn = ema ? optim::ema_avg_fn(decay) : optim::swa_avg_fn()});
    std::vector<std::vector<double>> want;
    for (int k = 0; k < 4; ++k) {
      m.perturb(gen);
      std::vector<std::vector<double>> x = snapshot(m, true);
      if (k == 0) want = x;
      for (size_t i = 0; i < x.size(); ++i)
        for (size_t j = 0; j < x[i].size(); ++j)
          want[i][j] = ema ? decay * want[i][j] + (1 - decay) * x[i][j]
                           : want[i][j] + (x[i][j] - want[i][j]) / (k + 1);
      avg.update_parameters(m);
      EXPECT_EQ(avg.n_averaged(), k + 1);
    }
    // The counter buffer is the module's (4 batches per pass, two passes so far for EMA).
    ASSERT_EQ(avg.averaged().back().first, "bn.num_batches_tracked");
    EXPECT_EQ(avg.averaged().back().second.item<int64_t>(),
              m.bn.num_batches_tracked.item<int64_t>());
    want.back() = {static_cast<double>(m.bn.num_batches_tracked.item<int64_t>())};
    expect_near(values(avg.averaged()), want, 1e-6);
  }
  // Without use_buffers only the parameters are averaged.
  optim::AveragedModel params_only(m);
  EXPECT_EQ(params_only.averaged().size(), m.named_parameters().size());
  EXPECT_FALSE(params_only.use_buffers());
}

TEST(AveragedModel, CopySwapStateDictAndErrors) {
  Generator gen(5);
  LinearBn m;
  optim::AveragedModel avg(m, {.use_buffers = true});
  m.perturb(gen);
  avg.update_parameters(m);
  std::vector<std::vector<double>> average = snapshot(m, true);
  m.perturb(gen);
  std::vector<std::vector<double>> current = snapshot(m, true);
  avg.update_parameters(m);
  for (size_t i = 0; i + 1 < average.size(); ++i)  // all but the counter
    for (size_t j = 0; j < average[i].size(); ++j)
      average[i][j] = (average[i][j] + current[i][j]) / 2;
  average.back() = current.back();

  avg.swap(m);
  expect_near(snapshot(m, true), average, 1e-6);
  expect_near(values(avg.averaged()), current, 0);
  avg.swap(m);
  expect_near(snapshot(m, true), current, 0);
  expect_near(values(avg.averaged()), average, 1e-6);

  // The state round-trips into a fresh average of the same module.
  State s = avg.state_dict();
  EXPECT_EQ(s.get_int("n_averaged"), 2);
  EXPECT_TRUE(s.has_tensor("fc.weight") && s.has_tensor("bn.running_var"));
  optim::AveragedModel other(m, {.use_buffers = true});
  other.load_state_dict(s);
  EXPECT_EQ(other.n_averaged(), 2);
  other.copy_to(m);
  expect_near(snapshot(m, true), average, 1e-6);

  State missing = s;
  missing.tensors.erase("fc.bias");
  missing.tensors["fc.extra"] = zeros({2});
  EXPECT_THROW_MSG(other.load_state_dict(missing), "missing keys [fc.bias]",
                   "unexpected keys [fc.extra]");
  State wrong_shape = s;
  wrong_shape.tensors["fc.bias"] = zeros({3});
  EXPECT_THROW_MSG(other.load_state_dict(wrong_shape), "shape mismatch for fc.bias",
                   "checkpoint [3], module [2]");
  EXPECT_EQ(other.n_averaged(), 2);  // a failed load changes nothing

  nn::Linear lin(3, 2);
  EXPECT_THROW_MSG(avg.update_parameters(lin), "the module has 2 tensors to average",
                   "made from 7");
  struct Renamed : nn::Module {
    nn::Linear head{3, 2};
    nn::BatchNorm1d bn{2};
    Renamed() {
      register_module("head", head);
      register_module("bn", bn);
    }
  } renamed;
  EXPECT_THROW_MSG(avg.swap(renamed), "tensor 0 is 'head.weight'", "the average's is 'fc.weight'");
  EXPECT_THROW_MSG(optim::ema_avg_fn(1.5), "decay must be in [0, 1]");
}

// update_bn: one pass in training mode gives each BatchNorm the plain average of the batches'
// means and unbiased variances of its input (here fc's output on 3 batches of 4), then restores
// the momentum and the eval mode the model had.
TEST(AveragedModel, UpdateBnRecomputesTheRunningStatistics) {
  Generator gen(17);
  struct Model : nn::UnaryModule {
    nn::Linear fc{3, 2};
    nn::BatchNorm1d bn{2};
    Model() {
      register_module("fc", fc);
      register_module("bn", bn);
    }
    Tensor forward(const Tensor& x) override { return bn(fc(x)); }
  } model;
  model.eval();
  Tensor x = randn({12, 3}, {}, &gen);
  auto data = std::make_shared<TensorDataset>(std::vector<Tensor>{x});
  DataLoader loader(data, {.batch_size = 4});
  update_bn(loader, model);
  std::vector<double> h = model.fc(x).to(DType::f64).to_vector<double>();  // [12, 2]
  for (int c = 0; c < 2; ++c) {
    double mean = 0, var = 0;
    for (int b = 0; b < 3; ++b) {
      double m = 0, v = 0;
      for (int i = 0; i < 4; ++i) m += h[(b * 4 + i) * 2 + c] / 4;
      for (int i = 0; i < 4; ++i) v += std::pow(h[(b * 4 + i) * 2 + c] - m, 2) / 3;
      mean += m / 3;
      var += v / 3;
    }
    EXPECT_NEAR(model.bn.running_mean.to_vector<float>()[c], mean, 1e-5) << c;
    EXPECT_NEAR(model.bn.running_var.to_vector<float>()[c], var, 1e-5) << c;
  }
  EXPECT_EQ(model.bn.num_batches_tracked.item<int64_t>(), 3);
  EXPECT_EQ(model.bn.momentum, std::optional<double>(0.1));
  EXPECT_FALSE(model.is_training());

  // A forward that fails leaves the momentum and the mode as they were.
  EXPECT_THROW_MSG(update_bn(loader, model, [](const Batch&) { throw Error("bad batch"); }),
                   "bad batch");
  EXPECT_EQ(model.bn.momentum, std::optional<double>(0.1));
  EXPECT_FALSE(model.is_training());
}

// Records the module's weights after every optimizer step and every training epoch (listed
// before the averaging callback, it sees them before any swap), and at each validation epoch's
// start (listed after it, it sees what validation runs with).
struct WeightRecorder : Callback {
  std::string key;
  std::vector<Weights> steps, epochs, validations;
  int64_t last_step = 0;
  explicit WeightRecorder(std::string k) : key(std::move(k)) {}
  std::string state_key() const override { return key; }
  void on_train_batch_end(Trainer& t, LightningModule& m, const Tensor&, const Batch&,
                          int64_t) override {
    if (t.global_step() > last_step) steps.push_back(parameters_of(m));
    last_step = t.global_step();
  }
  void on_train_epoch_end(Trainer&, LightningModule& m) override {
    epochs.push_back(parameters_of(m));
  }
  void on_validation_epoch_start(Trainer& t, LightningModule& m) override {
    if (!t.sanity_checking()) validations.push_back(parameters_of(m));
  }
};

// f64 EMA over the snapshots whose index `use` accepts; the first accepted one starts it.
Weights ema_of(const std::vector<Weights>& snaps, double decay,
               const std::function<bool(size_t)>& use, size_t count) {
  std::optional<std::vector<std::vector<double>>> avg;
  for (size_t k = 0; k < count; ++k) {
    if (!use(k)) continue;
    if (!avg) {
      avg.emplace();
      for (const auto& p : snaps[k]) avg->emplace_back(p.begin(), p.end());
      continue;
    }
    for (size_t i = 0; i < avg->size(); ++i)
      for (size_t j = 0; j < (*avg)[i].size(); ++j)
        (*avg)[i][j] = decay * (*avg)[i][j] + (1 - decay) * snaps[k][i][j];
  }
  Weights out;
  for (const auto& p : *avg) out.emplace_back(p.begin(), p.end());
  return out;
}

void expect_weights_near(const Weights& got, const Weights& want, float tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    ASSERT_EQ(got[i].size(), want[i].size());
    for (size_t j = 0; j < got[i].size(); ++j)
      EXPECT_NEAR(got[i][j], want[i][j], tol * (1 + std::abs(want[i][j]))) << i << "," << j;
  }
}

// EMA after the steps whose index (from 0, Lightning's step_idx) is even and at least 1: 2, 4
// and 6 of two 4-step epochs. Validation runs with the average so far, training goes on from
// the module's own weights (the losses match a run without the callback bit for bit), and the
// fit ends with the average in the module.
TEST(WeightAveragingTrainer, EmaValidatesWithTheAverageAndEndsWithIt) {
  TinyData data({.n_train = 32, .n_val = 16, .batch_size = 8});
  const double decay = 0.6;
  auto before = std::make_shared<WeightRecorder>("before");
  auto after = std::make_shared<WeightRecorder>("after");
  auto ema = std::make_shared<EMAWeightAveraging>(EMAWeightAveragingOptions{
      .decay = decay, .update_every_n_steps = 2, .update_starting_at_step = 1});
  seed_everything(11);
  TinyModel model;
  Trainer trainer(quiet({.max_epochs = 2, .callbacks = {before, ema, after}}));
  trainer.fit(model, data);

  seed_everything(11);
  TinyModel plain;
  Trainer plain_trainer(quiet({.max_epochs = 2}));
  plain_trainer.fit(plain, data);
  EXPECT_EQ(model.train_losses, plain.train_losses);

  ASSERT_EQ(before->steps.size(), 8u);
  auto even = [](size_t k) { return k % 2 == 0 && k >= 1; };
  ASSERT_EQ(after->validations.size(), 2u);
  expect_weights_near(after->validations[0], ema_of(before->steps, decay, even, 4), 1e-5f);
  expect_weights_near(after->validations[1], ema_of(before->steps, decay, even, 8), 1e-5f);
  expect_weights_near(parameters_of(model), ema_of(before->steps, decay, even, 8), 1e-5f);
  EXPECT_EQ(ema->average_model()->n_averaged(), 3);
  // The logged validation loss is the average's, not the module's own weights'.
  EXPECT_NE(trainer.callback_metrics().at("val_loss"),
            plain_trainer.callback_metrics().at("val_loss"));
}

// Lightning's recipe for SWA with WeightAveraging: the mean of the weights at the end of
// epochs 1 and 2; before the first update validation sees the module's own weights.
TEST(WeightAveragingTrainer, SwaOverEpochsThroughShouldUpdate) {
  struct LastEpochs : WeightAveraging {
    bool should_update(std::optional<int64_t>, std::optional<int64_t> epoch_idx) override {
      return epoch_idx && *epoch_idx >= 1;
    }
  };
  TinyData data({.n_train = 32, .n_val = 16, .batch_size = 8});
  auto before = std::make_shared<WeightRecorder>("before");
  auto swa = std::make_shared<LastEpochs>();
  auto after = std::make_shared<WeightRecorder>("after");
  seed_everything(12);
  TinyModel model;
  Trainer trainer(quiet({.max_epochs = 3, .callbacks = {before, swa, after}}));
  trainer.fit(model, data);
  ASSERT_EQ(before->epochs.size(), 3u);
  ASSERT_EQ(after->validations.size(), 3u);
  EXPECT_EQ(after->validations[0], before->steps[3]);  // nothing averaged yet
  EXPECT_EQ(after->validations[1], before->steps[7]);  // validation precedes the epoch's update
  Weights mean = before->epochs[1];
  for (size_t i = 0; i < mean.size(); ++i)
    for (size_t j = 0; j < mean[i].size(); ++j)
      mean[i][j] = (before->epochs[1][i][j] + before->epochs[2][i][j]) / 2;
  expect_weights_near(after->validations[2], before->epochs[1], 0);
  expect_weights_near(parameters_of(model), mean, 1e-6f);
}

// A checkpoint holds the average in /state_dict and the module's weights in
// /current_model_state; resuming restores both, so the resumed fit ends as an uninterrupted one.
TEST(WeightAveragingTrainer, CheckpointHoldsTheAverageAndResumesExactly) {
  TempDir dir("weight_averaging");
  const std::string path = dir.str("epoch1.ckpt");
  TinyData data({.n_train = 32, .n_val = 16, .batch_size = 8});
  auto ema_options = EMAWeightAveragingOptions{.decay = 0.5};

  seed_everything(13);
  TinyModel whole;
  auto whole_before = std::make_shared<WeightRecorder>("before");
  Trainer whole_trainer(
      quiet({.max_epochs = 3, .callbacks = {whole_before, EMAWeightAveraging(ema_options)}}));
  whole_trainer.fit(whole, data);

  seed_everything(13);
  TinyModel first;
  auto before = std::make_shared<WeightRecorder>("before");
  Trainer first_trainer(
      quiet({.max_epochs = 2,
             .callbacks = {before, EMAWeightAveraging(ema_options), SaveAtEpochEnd(path, 1)}}));
  first_trainer.fit(first, data);

  State ckpt = io::load_checkpoint(path);
  ASSERT_TRUE(ckpt.has_group("current_model_state"));
  EXPECT_EQ(ckpt.group("averaging_state").get_int("n_averaged"), 8);
  Weights saved_average, saved_current;
  for (const auto& [name, p] : first.named_parameters()) {
    saved_average.push_back(ckpt.group("state_dict").tensor(name).to_vector<float>());
    saved_current.push_back(ckpt.group("current_model_state").tensor(name).to_vector<float>());
  }
  EXPECT_EQ(saved_current, before->steps.back());
  EXPECT_EQ(saved_average, parameters_of(first));  // the fit ended with the average in place
  auto all = [](size_t) { return true; };
  expect_weights_near(saved_average, ema_of(before->steps, 0.5, all, 8), 1e-5f);

  TinyModel resumed;
  Trainer resumed_trainer(quiet({.max_epochs = 3, .callbacks = {EMAWeightAveraging(ema_options)}}));
  resumed_trainer.fit(resumed, data, path);
  EXPECT_EQ(parameters_of(resumed), parameters_of(whole));

  // Testing from the checkpoint uses the average.
  TinyModel tested;
  Trainer test_trainer(quiet({}));
  test_trainer.test(tested, data, path, /*verbose=*/false);
  EXPECT_EQ(parameters_of(tested), saved_average);

  // After fit returns a checkpoint still carries the average (the module holds it by then, so
  // it is the current weights as well): a fit resumed from it goes on from the 8 updates.
  const std::string after_path = dir.str("after_fit.ckpt");
  first_trainer.save_checkpoint(after_path);
  EXPECT_EQ(io::load_checkpoint(after_path).group("averaging_state").get_int("n_averaged"), 8);
  TinyModel continued;
  auto continued_recorder = std::make_shared<WeightRecorder>("before");
  auto continued_ema = std::make_shared<EMAWeightAveraging>(ema_options);
  Trainer continued_trainer(
      quiet({.max_epochs = 3, .callbacks = {continued_recorder, continued_ema}}));
  continued_trainer.fit(continued, data, after_path);
  EXPECT_EQ(continued_ema->average_model()->n_averaged(), 12);
  Weights want = saved_average;
  for (const Weights& step : continued_recorder->steps)
    for (size_t i = 0; i < want.size(); ++i)
      for (size_t j = 0; j < want[i].size(); ++j)
        want[i][j] = 0.5f * want[i][j] + 0.5f * step[i][j];
  expect_weights_near(parameters_of(continued), want, 1e-5f);

  // A checkpoint written without the callback: the average starts from the loaded weights.
  const std::string plain_path = dir.str("plain.ckpt");
  seed_everything(13);
  TinyModel plain;
  Trainer plain_trainer(quiet({.max_epochs = 2}));
  plain_trainer.fit(plain, data);
  plain_trainer.save_checkpoint(plain_path);
  TinyModel from_plain;
  auto plain_recorder = std::make_shared<WeightRecorder>("before");
  auto ema = std::make_shared<EMAWeightAveraging>(ema_options);
  Trainer from_plain_trainer(quiet({.max_epochs = 3, .callbacks = {plain_recorder, ema}}));
  from_plain_trainer.fit(from_plain, data, plain_path);
  EXPECT_EQ(ema->average_model()->n_averaged(), 4);
  expect_weights_near(parameters_of(from_plain), ema_of(plain_recorder->steps, 0.5, all, 4), 1e-5f);
}

TEST(WeightAveragingTrainer, Errors) {
  EXPECT_THROW_MSG(EMAWeightAveraging({.decay = -0.1}), "decay must be in [0, 1]");
  EXPECT_THROW_MSG(EMAWeightAveraging({.update_every_n_steps = -1}),
                   "update_every_n_steps must be >= 0, got -1");
  // A checkpoint whose averaging state is corrupt: the resume fails naming the value.
  TempDir dir("weight_averaging_errors");
  const std::string path = dir.str("bad.ckpt");
  TinyData data({.n_train = 16, .batch_size = 8, .with_val = false});
  seed_everything(1);
  State ckpt = io::load_checkpoint([&] {
    Trainer saver(
        quiet({.max_epochs = 1, .callbacks = {EMAWeightAveraging(), SaveAtEpochEnd(path, 0)}}));
    TinyModel m;
    saver.fit(m, data);
    return path;
  }());
  ckpt.groups["averaging_state"].attrs["n_averaged"] = int64_t{-3};
  io::save_checkpoint(path, ckpt);
  TinyModel again;
  Trainer resume(quiet({.max_epochs = 2, .callbacks = {EMAWeightAveraging()}}));
  EXPECT_THROW_MSG(resume.fit(again, data, path), "n_averaged -3 (expected >= 0)");
  // Module weights of another shape in /current_model_state: refused before the average or
  // the module's own weights load (the Trainer has loaded /state_dict into the module by then).
  ckpt.groups["averaging_state"].attrs["n_averaged"] = int64_t{2};
  ckpt.groups["current_model_state"].tensors["fc2.bias"] = zeros({3});
  io::save_checkpoint(path, ckpt);
  TinyModel third;
  Trainer resume_again(quiet({.max_epochs = 2, .callbacks = {EMAWeightAveraging()}}));
  EXPECT_THROW_MSG(resume_again.fit(third, data, path),
                   "/current_model_state does not match the model", "fc2.bias");
}

}  // namespace
}  // namespace lumen
