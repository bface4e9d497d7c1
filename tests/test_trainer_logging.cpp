// Metric logging (LightningModule::log through the Trainer to callback_metrics, the progress
// bar and the loggers), the default loggers and callbacks, metrics::accuracy, and ProgressBar.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <sstream>

#include "nn/functional/reduction.h"
#include "op_harness.h"
#include "trainer/metric_aggregator.h"
#include "trainer/metrics.h"
#include "trainer/model_checkpoint.h"
#include "trainer/model_summary.h"
#include "trainer/progress_bar.h"
#include "trainer/results_table.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

// Logs statistics of column 0 of each validation batch with every reduction.
struct StatsModel : TinyModel {
  void validation_step(const Batch& b, int64_t) override {
    Tensor c = b[0].select(1, 0);
    log("vmean", c.mean());
    log("vsum", c.sum(), {.reduce = "sum"});
    log("vmax", c.max(), {.reduce = "max"});
    log("vmin", c.min(), {.reduce = "min"});
  }
};

TEST(TrainerMetrics, EpochReductionsOverUnequalBatches) {
  TinyData data({.n_val = 10, .batch_size = 4});  // batches of 4, 4, 2
  StatsModel model;
  Trainer trainer(quiet({}));
  ::testing::internal::CaptureStdout();
  std::map<std::string, double> got = trainer.validate(model, data);
  std::string printed = ::testing::internal::GetCapturedStdout();
  EXPECT_EQ(printed, format_results_table("validate", got));
  EXPECT_NE(printed.find("vmean"), std::string::npos) << printed;
  std::vector<float> col = data.val->tensors()[0].select(1, 0).contiguous().to_vector<float>();
  double sum = 0;
  for (float v : col) sum += v;
  // The mean weighs each batch mean by its size: the mean over all 10 rows, not the mean of
  // the three batch means.
  EXPECT_NEAR(got.at("vmean"), sum / 10, 1e-6);
  double unweighted = 0;
  for (int k = 0; k < 3; ++k) {
    double s = 0;
    int n = k < 2 ? 4 : 2;
    for (int i = 0; i < n; ++i) s += col[k * 4 + i];
    unweighted += s / n / 3;
  }
  ASSERT_GT(std::abs(unweighted - sum / 10), 1e-3) << "the data must tell the two apart";
  EXPECT_NEAR(got.at("vsum"), sum, 1e-5);
  EXPECT_EQ(got.at("vmax"), *std::max_element(col.begin(), col.end()));
  EXPECT_EQ(got.at("vmin"), *std::min_element(col.begin(), col.end()));
  EXPECT_EQ(trainer.callback_metrics().at("vmean"), got.at("vmean"));
}

struct StepEpochModel : TinyModel {
  Tensor training_step(const Batch& b, int64_t) override {
    Tensor loss = nn::functional::mse_loss(forward(b[0]), b[1]);
    train_losses.push_back(loss.item<float>());
    batch_sizes.push_back(b[0].size(0));
    log("loss", loss, {.on_step = true, .on_epoch = true, .prog_bar = true});
    return loss;
  }
  std::vector<int64_t> batch_sizes;
};

TEST(TrainerMetrics, StepAndEpochValuesReachLoggersAtLightningsSteps) {
  TinyData data({.n_train = 44, .batch_size = 8, .with_val = false});  // 5 x 8 + 4
  StepEpochModel model;
  model.save_hyperparameters({{"lr", 0.05}});
  auto logger = std::make_shared<RecordingLogger>();
  Trainer trainer(quiet({.max_epochs = 1, .log_every_n_steps = 2, .logger = logger}));
  trainer.fit(model, data);

  double weighted = 0;
  for (size_t i = 0; i < model.train_losses.size(); ++i)
    weighted += double(model.train_losses[i]) * double(model.batch_sizes[i]);
  weighted /= 44;
  // Step rows every 2 optimizer steps at Lightning's step (steps taken - 1), then the epoch
  // row at the last batch's step; every row carries "epoch".
  ASSERT_EQ(logger->rows.size(), 4u);
  for (size_t r = 0; r < 3; ++r) {
    EXPECT_EQ(logger->rows[r].step, int64_t(2 * r + 1));
    EXPECT_EQ(logger->rows[r].metrics.at("loss_step"), double(model.train_losses[2 * r + 1]));
    EXPECT_EQ(logger->rows[r].metrics.at("epoch"), 0.0);
  }
  EXPECT_EQ(logger->rows[3].step, 5);
  EXPECT_NEAR(logger->rows[3].metrics.at("loss_epoch"), weighted, 1e-6);
  EXPECT_EQ(logger->rows[3].metrics.count("loss_step"), 0u);
  EXPECT_EQ(logger->finalized, std::vector<std::string>{"success"});
  EXPECT_EQ(std::get<double>(logger->hparams.at("lr")), 0.05);

  const auto& cm = trainer.callback_metrics();
  EXPECT_NEAR(cm.at("loss_epoch"), weighted, 1e-6);
  EXPECT_EQ(cm.at("loss"), cm.at("loss_epoch"));
  EXPECT_EQ(cm.at("loss_step"), double(model.train_losses.back()));
  EXPECT_EQ(trainer.progress_bar_metrics().count("loss_step"), 1u);
  EXPECT_EQ(trainer.progress_bar_metrics().count("loss_epoch"), 1u);
  EXPECT_EQ(trainer.logged_metrics().count("loss_epoch"), 1u);
}

TEST(TrainerMetrics, ValidationMetricsAreLoggedPerRunButNotInTheSanityCheck) {
  TinyData data({.n_train = 32, .n_val = 16, .batch_size = 8});
  TinyModel model;
  auto logger = std::make_shared<RecordingLogger>();
  Trainer trainer(quiet({.max_epochs = 2, .log_every_n_steps = 100, .logger = logger}));
  trainer.fit(model, data);
  std::vector<int64_t> val_steps;
  for (const auto& row : logger->rows)
    if (row.metrics.count("val_loss")) val_steps.push_back(row.step);
  EXPECT_EQ(val_steps, (std::vector<int64_t>{3, 7}));  // one per epoch, none from the sanity check
  EXPECT_EQ(trainer.callback_metrics().count("val_loss"), 1u);
  EXPECT_EQ(trainer.callback_metrics().count("train_loss"), 1u);  // the last step's value
}

TEST(TrainerMetrics, LogMisuseIsAClearError) {
  TinyData data({.n_train = 16, .batch_size = 8, .with_val = false});
  TinyModel outside;
  EXPECT_THROW_MSG(outside.log("x", 1.0), "log('x')", "not attached to a Trainer");
  struct NonScalar : TinyModel {
    Tensor training_step(const Batch& b, int64_t) override {
      Tensor out = forward(b[0]);
      log("preds", out);
      return out.mean();
    }
  } non_scalar;
  Trainer t1(quiet({.max_epochs = 1}));
  EXPECT_THROW_MSG(t1.fit(non_scalar, data), "log('preds')", "scalar", "[8, 1]");
  struct StepInEpochEnd : TinyModel {
    void on_train_epoch_end() override { log("x", 1.0, {.on_step = true}); }
  } step_in_epoch_end;
  Trainer t2(quiet({.max_epochs = 1}));
  EXPECT_THROW_MSG(t2.fit(step_in_epoch_end, data), "on_step=true", "on_train_epoch_end");
  struct InPredict : TinyModel {
    Tensor predict_step(const Batch& b, int64_t) override {
      log("p", 1.0);
      return b[0];
    }
  } in_predict;
  Trainer t3(quiet({}));
  EXPECT_THROW_MSG(t3.predict(in_predict, data), "You can't log('p') inside predict_step");
  struct BadReduce : TinyModel {
    void validation_step(const Batch&, int64_t) override { log("v", 1.0, {.reduce = "median"}); }
  } bad_reduce;
  TinyData with_val({.n_train = 16, .n_val = 8, .batch_size = 8});
  Trainer t4(quiet({}));
  EXPECT_THROW_MSG(t4.validate(bad_reduce, with_val), "reduce", "median");
}

struct ValLossProbe : Callback {
  std::string state_key() const override { return "ValLossProbe"; }
};

// Tensor values are read back when a view is asked for, not when logged: in logging order with
// the double values, as copies (a later in-place change does not reach them), and in one copy
// for all of them.
TEST(MetricAggregatorLazy, TensorValuesResolveInOrderAsCopies) {
  MetricAggregator agg(true);
  MetricMeta mean{.fx = "training_step", .name = "loss", .on_step = true, .on_epoch = true};
  MetricMeta mx{.fx = "training_step", .name = "peak", .on_step = true, .reduce = "max"};
  Tensor t = scalar_tensor(2.0);
  agg.log(mean, t, 4);                   // 2 x 4
  t.fill_(100.0);                        // after logging: not seen
  agg.log(mean, 5.0, 2);                 // 5 x 2
  agg.log(mean, scalar_tensor(3.0), 2);  // 3 x 2
  agg.log(mx, scalar_tensor(7.0, {.dtype = DType::f64}), 1);
  agg.log(mx, 6.0, 1);
  MetricViews step = agg.metrics(true), epoch = agg.metrics(false);
  EXPECT_EQ(step.log.at("loss_step"), 3.0);  // the latest
  EXPECT_DOUBLE_EQ(epoch.log.at("loss_epoch"), (8.0 + 10.0 + 6.0) / 8.0);
  EXPECT_EQ(step.callback.at("peak"), 6.0);         // the latest
  EXPECT_EQ(epoch.callback.at("peak_epoch"), 7.0);  // the max of 7 (a tensor) and 6
  State st = agg.state_dict();
  MetricAggregator back(true);
  back.load_state_dict(st);
  EXPECT_DOUBLE_EQ(back.metrics(false).log.at("loss_epoch"), 3.0);
  EXPECT_THROW_MSG(
      agg.log(MetricMeta{.fx = "training_step", .name = "loss"}, scalar_tensor(1.0), 1), "twice",
      "different options");
}

TEST(TrainerDefaults, CsvLoggerAndModelCheckpointUnderDefaultRootDir) {
  TempDir dir("defaults");
  TinyData data({.n_train = 16, .n_val = 8, .batch_size = 8});
  TinyModel model;
  Trainer trainer({.max_epochs = 2,
                   .default_root_dir = dir.str(),
                   .enable_progress_bar = false,
                   .enable_model_summary = false,
                   .accelerator = "cpu"});
  ASSERT_EQ(trainer.loggers().size(), 1u);
  trainer.fit(model, data);
  std::string log_dir = trainer.log_dir();
  EXPECT_EQ(log_dir, dir.str("lightning_logs/version_0"));
  EXPECT_TRUE(std::filesystem::exists(log_dir + "/metrics.csv"));
  int ckpts = 0;
  for (const auto& e : std::filesystem::directory_iterator(log_dir + "/checkpoints"))
    ckpts += e.path().extension() == ".ckpt";
  EXPECT_EQ(ckpts, 1);  // the default ModelCheckpoint keeps the latest
  // "best" needs a ModelCheckpoint that has saved one (a new trainer's has not).
  TinyModel again;
  Trainer more({.max_epochs = 2,
                .default_root_dir = dir.str(),
                .enable_progress_bar = false,
                .enable_model_summary = false,
                .logger = false,
                .accelerator = "cpu"});
  EXPECT_THROW_MSG(more.validate(again, data, "best"), "not saved a best checkpoint");

  // DESIGN.md's form: a callback object (copied into the trainer), and ModelCheckpoints last.
  Trainer design({.enable_progress_bar = false,
                  .callbacks = {ModelCheckpoint({.dirpath = dir.str("mc"), .monitor = "val_loss"}),
                                std::make_shared<ValLossProbe>()},
                  .logger = false});
  ASSERT_EQ(design.callbacks().size(), 3u);  // + the default ModelSummary
  EXPECT_NE(dynamic_cast<ValLossProbe*>(design.callbacks()[0].get()), nullptr);
  EXPECT_NE(dynamic_cast<ModelSummary*>(design.callbacks()[1].get()), nullptr);
  EXPECT_NE(dynamic_cast<ModelCheckpoint*>(design.callbacks()[2].get()), nullptr);
}

TEST(Accuracy, ArgmaxOfLogitsOrClassIndices) {
  Tensor logits = from_vector<float>({0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.7f}, {3, 2});
  Tensor target = from_vector<int64_t>({1, 1, 1});
  EXPECT_NEAR(metrics::accuracy(logits, target).item(), 2.0 / 3.0, 1e-7);
  EXPECT_EQ(
      metrics::accuracy(from_vector<int64_t>({1, 0, 1, 1}), from_vector<int64_t>({1, 1, 1, 0}))
          .item(),
      0.5);
  EXPECT_THROW_MSG(metrics::accuracy(logits, from_vector<int64_t>({1, 1})), "disagree on N");
  EXPECT_THROW_MSG(metrics::accuracy(from_vector<float>({1.f, 0.f, 1.f}), target),
                   "integer class indices");
  EXPECT_THROW_MSG(metrics::accuracy(logits, from_vector<float>({1.f, 1.f, 1.f})),
                   "integer class indices");
}

TEST(ProgressBarFormat, TqdmLikeLine) {
  EXPECT_EQ(ProgressBar::format("Epoch 3/9", 120, 430, 4.0,
                                {{"train_loss", 0.41234}, {"val_acc", 0.8741}}),
            "Epoch 3/9: 120/430 [00:04<00:10, 30 it/s, train_loss=0.412, val_acc=0.874]");
  EXPECT_EQ(ProgressBar::format("Testing", 0, 10, 0.0, {}), "Testing: 0/10 [00:00<?, ? it/s]");
  EXPECT_EQ(ProgressBar::format("Epoch 0", 3, 4, 3725.0, {}),
            "Epoch 0: 3/4 [1:02:05<20:42, 0.000805 it/s]");
}

// Lightning's layout, derived by hand for a 40-column bar: names centred in 20 columns, values
// in a column of min(max(longest cell, 25), 20) = 20, the odd space on the right.
TEST(ResultsTable, LightningsLayout) {
  const std::string bar = [] {
    std::string b;
    for (int i = 0; i < 40; ++i) b += "\u2500";
    return b + "\n";
  }();
  EXPECT_EQ(format_results_table("test", {{"test_acc", 0.5}, {"test_loss", 0.25}}, 40),
            bar + "    Test metric          DataLoader 0    \n" + bar + "      test_acc" +
                std::string(15, ' ') + "0.5" + std::string(9, ' ') + "\n" + "     test_loss" +
                std::string(15, ' ') + "0.25" + std::string(8, ' ') + "\n" + bar);
  EXPECT_EQ(format_results_table("test", {}, 40), "");
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

TEST(ProgressBarOutput, PlainLinesWhenNotATerminal) {
  std::ostringstream out;
  TinyData data({.n_train = 64, .n_val = 16, .n_test = 16, .batch_size = 8});  // 8 batches
  TinyModel model;
  Trainer trainer({.max_epochs = 2,
                   .val_check_interval = 0.5,
                   .enable_checkpointing = false,
                   .enable_model_summary = false,
                   .callbacks = {std::make_shared<ProgressBar>(
                       ProgressBarOptions{.stream = &out, .is_tty = false})},
                   .logger = false,
                   .accelerator = "cpu"});
  trainer.fit(model, data);
  std::vector<std::string> lines = lines_of(out.str());
  // Per epoch: lines at 2/8, 4/8 (and the mid-epoch validation's), 6/8, and the epoch's end.
  ASSERT_EQ(lines.size(), 10u) << out.str();
  EXPECT_EQ(out.str().find('\r'), std::string::npos);
  EXPECT_EQ(lines[0].rfind("Epoch 0/1: 2/8 [", 0), 0u) << lines[0];
  EXPECT_NE(lines[2].find("4/8"), std::string::npos);
  EXPECT_NE(lines[2].find("validated"), std::string::npos);
  EXPECT_NE(lines[2].find("val_loss="), std::string::npos);
  EXPECT_EQ(lines[4].rfind("Epoch 0/1: 8/8 [", 0), 0u) << lines[4];
  EXPECT_NE(lines[4].find("train_loss="), std::string::npos);
  EXPECT_EQ(lines[9].rfind("Epoch 1/1: 8/8 [", 0), 0u) << lines[9];
  out.str("");
  trainer.test(model, data);
  lines = lines_of(out.str());
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0].rfind("Testing: 2/2 [", 0), 0u) << lines[0];
}

TEST(ProgressBarOutput, RedrawsOneLinePerEpochOnATerminal) {
  std::ostringstream out;
  TinyData data({.n_train = 32, .n_val = 8, .batch_size = 8});
  TinyModel model;
  Trainer trainer({.max_epochs = 2,
                   .enable_checkpointing = false,
                   .enable_model_summary = false,
                   .callbacks = {std::make_shared<ProgressBar>(
                       ProgressBarOptions{.stream = &out, .is_tty = true})},
                   .logger = false,
                   .accelerator = "cpu"});
  trainer.fit(model, data);
  std::string s = out.str();
  EXPECT_EQ(std::count(s.begin(), s.end(), '\n'), 2);  // the two finished epochs stay
  EXPECT_GE(std::count(s.begin(), s.end(), '\r'), 8);  // one redraw per batch at least
  EXPECT_NE(s.find("\rEpoch 0/1: 4/4 ["), std::string::npos);
  EXPECT_NE(s.find("| Validation 1/1"), std::string::npos);
  EXPECT_NE(s.find("\rEpoch 1/1: 4/4 ["), std::string::npos);
}

}  // namespace
}  // namespace lumen::testing
