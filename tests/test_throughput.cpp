// Throughput's window arithmetic against hand-computed rates, and ThroughputMonitor in a fit:
// what it logs, when, and that validation time stays out of the training rates.
#include <gtest/gtest.h>

#include <thread>

#include "op_harness.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

TEST(Throughput, RatesOverTheWindowAsLightnings) {
  Throughput t({.available_flops = 100.0, .world_size = 2, .window_size = 3});
  t.update(1.0, 1, 4, 40, 10.0);
  t.update(2.0, 2, 8, 80, 10.0);
  std::map<std::string, double> partial = t.compute();  // the window is not full yet
  EXPECT_EQ(partial, (std::map<std::string, double>{
                         {"time", 2.0}, {"batches", 2.0}, {"samples", 8.0}, {"lengths", 80.0}}));
  t.update(4.0, 3, 12, 120, 10.0);
  std::map<std::string, double> m = t.compute();
  // Over the window (t = 1 .. 4): 2 batches, 8 samples, 80 items in 3 s; the FLOPs of the
  // updates after the first, 2 x 10 per rank, x 2 ranks.
  EXPECT_DOUBLE_EQ(m.at("device/batches_per_sec"), 2.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("device/samples_per_sec"), 8.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("device/items_per_sec"), 80.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("batches_per_sec"), 4.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("samples_per_sec"), 16.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("items_per_sec"), 160.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("flops_per_sec"), 40.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("device/flops_per_sec"), 20.0 / 3.0);
  EXPECT_DOUBLE_EQ(m.at("device/mfu"), 20.0 / 3.0 / 100.0);
  t.update(5.0, 4, 20, 200);  // the window slides: t = 2 .. 5
  EXPECT_DOUBLE_EQ(t.compute().at("device/samples_per_sec"), 12.0 / 3.0);

  EXPECT_THROW_MSG(t.update(5.0, 5, 24), "time must increase", "got 5 after 5");
  EXPECT_THROW_MSG(t.update(6.0, 5, 4), "samples (4) to be greater or equal than batches (5)");
  EXPECT_THROW_MSG(Throughput({.window_size = 1}), "window_size must be >= 2");
  t.reset();
  EXPECT_TRUE(t.compute().empty());
}

// Validation sleeps 60 ms a batch; training does not.
struct SlowValidation : TinyModel {
  void validation_step(const Batch& b, int64_t i) override {
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
    TinyModel::validation_step(b, i);
  }
};

TEST(ThroughputMonitor, LogsEachStagesRatesAndKeepsValidationOutOfTraining) {
  auto logger = std::make_shared<RecordingLogger>();
  auto monitor = std::make_shared<ThroughputMonitor>(ThroughputMonitorOptions{
      .batch_size_fn = [](const Batch& b) { return b[0].size(0); },
      .length_fn = [](const Batch& b) { return 3 * b[0].size(0); },  // 3 items an example
      .window_size = 2});
  SlowValidation model;
  TinyData data({.n_train = 32, .n_val = 16, .batch_size = 8});
  Trainer trainer(quiet({.max_epochs = 2,
                         .accumulate_grad_batches = 2,
                         .num_sanity_val_steps = 0,
                         .log_every_n_steps = 1,
                         .callbacks = {monitor},
                         .logger = logger}));
  trainer.fit(model, data);
  std::vector<std::map<std::string, double>> train, val;
  std::vector<int64_t> val_steps;
  for (const auto& row : logger->rows) {
    if (row.metrics.count("train/samples")) train.push_back(row.metrics);
    if (row.metrics.count("validate/samples")) {
      val.push_back(row.metrics);
      val_steps.push_back(row.step);
    }
  }
  // A row per optimizer step (4 batches an epoch, 2 per step), samples counted over the fit.
  ASSERT_EQ(train.size(), 4u);
  for (size_t i = 0; i < train.size(); ++i) {
    EXPECT_EQ(train[i].at("train/batches"), 2.0 * (i + 1));
    EXPECT_EQ(train[i].at("train/samples"), 16.0 * (i + 1));
    EXPECT_EQ(train[i].at("train/lengths"), 48.0 * (i + 1));
    // Every batch holds 8 samples: the two rates differ by exactly that factor.
    EXPECT_NEAR(
        train[i].at("train/device/samples_per_sec") / train[i].at("train/device/batches_per_sec"),
        8.0, 1e-9);
  }
  // Validation: a row per batch, its batch count over the fit as the step; each validation run
  // counts from zero.
  ASSERT_EQ(val.size(), 4u);
  EXPECT_EQ(val_steps, (std::vector<int64_t>{1, 2, 3, 4}));
  for (size_t i = 0; i < val.size(); ++i) {
    EXPECT_EQ(val[i].at("validate/batches"), 1.0 + i % 2);
    EXPECT_EQ(val[i].at("validate/samples"), 8.0 * (1 + i % 2));
    EXPECT_EQ(val[i].at("validate/lengths"), 24.0 * (1 + i % 2));
  }
  EXPECT_GT(val[1].at("validate/time"), 0.1);  // two 60 ms batches
  // The 120 ms of the first validation do not count as training time: training's clock at
  // the first step after it has moved on by about one step, far less than that.
  EXPECT_LT(train[2].at("train/time") - train[1].at("train/time"), 0.06);
  EXPECT_THROW_MSG(ThroughputMonitor({}), "batch_size_fn is required");
}

}  // namespace
}  // namespace lumen::testing
