// The profiler: SimpleProfiler's bookkeeping and report (Lightning's layout), and what the
// Trainer times.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "op_harness.h"
#include "trainer/python_float_format.h"
#include "trainer_fixtures.h"

namespace lumen::testing {
namespace {

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

// Python's len(line.expandtabs()).
size_t expanded(const std::string& line) {
  size_t col = 0;
  for (char ch : line) col = ch == '\t' ? col + 8 - col % 8 : col + 1;
  return col;
}

// The cells of a report row "|  a\t|  b\t|...", trimmed.
std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::stringstream in(row.substr(1));
  for (std::string cell; std::getline(in, cell, '|');) {
    size_t a = cell.find_first_not_of(" \t"), b = cell.find_last_not_of(" \t");
    out.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
  }
  return out;
}

TEST(Profiler, SimpleProfilerCountsTimesAndRefusesMismatchedCalls) {
  SimpleProfiler profiler;
  for (int i = 0; i < 3; ++i) {
    auto outer = profiler.profile("outer");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    profiler.start("inner");
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    profiler.stop("inner");
  }
  const auto& r = profiler.records();
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r.at("outer").calls, 3);
  EXPECT_EQ(r.at("inner").calls, 3);
  EXPECT_GE(r.at("inner").total_seconds, 0.003);
  EXPECT_GE(r.at("outer").total_seconds, r.at("inner").total_seconds + 0.006);

  profiler.start("a");
  EXPECT_THROW_MSG(profiler.start("a"), "SimpleProfiler", "\"a\"", "already started");
  EXPECT_THROW_MSG(profiler.stop("b"), "SimpleProfiler", "\"b\"", "never started");
  profiler.stop("a");
  EXPECT_EQ(profiler.records().at("a").calls, 1);
}

// Lightning's layout: the title, a rule as long as the header (tabs expanded), the header, the
// Total row (all calls, the profiler's whole time, 100 %), then one row per action by total
// time, each with mean = total / calls, written as Python's f"{x:.5}".
TEST(Profiler, SimpleProfilerReportHasLightningsLayout) {
  SimpleProfiler profiler;
  profiler.setup("fit", std::nullopt, ".");
  for (int i = 0; i < 2; ++i) {
    auto t = profiler.profile("[Strategy]SingleDeviceStrategy.training_step");
    std::this_thread::sleep_for(std::chrono::milliseconds(3));
  }
  { auto t = profiler.profile("short"); }
  const std::string report = profiler.summary();
  std::vector<std::string> l = lines_of(report);
  ASSERT_EQ(l.size(), 10u) << report;
  EXPECT_EQ(l[0], "FIT Profiler Report");
  EXPECT_EQ(l[1], "");
  const size_t width = expanded(l[3]);
  // Lightning measures the header with its leading newline: the rule is one longer.
  for (size_t i : {2, 4, 6, 9}) EXPECT_EQ(l[i], std::string(width + 1, '-')) << i;
  EXPECT_EQ(cells(l[3]), (std::vector<std::string>{"Action", "Mean duration (s)", "Num calls",
                                                   "Total time (s)", "Percentage %"}));
  std::vector<std::string> total = cells(l[5]);
  EXPECT_EQ(total[0], "Total");
  EXPECT_EQ(total[1], "-");
  EXPECT_EQ(total[2], "3");
  EXPECT_EQ(total[4], "100 %");
  // The action column is as wide as the longest name.
  EXPECT_EQ(l[7].find('\t'),
            3 + std::string("[Strategy]SingleDeviceStrategy.training_step").size());
  const auto& records = profiler.records();
  for (size_t i : {7, 8}) {
    std::vector<std::string> row = cells(l[i]);
    const SimpleProfiler::Record& r = records.at(row[0]);
    EXPECT_EQ(row[1], python_format_precision(r.total_seconds / r.calls, 5));
    EXPECT_EQ(row[2], std::to_string(r.calls));
    EXPECT_EQ(row[3], python_format_precision(r.total_seconds, 5));
  }
  EXPECT_EQ(cells(l[7])[0], "[Strategy]SingleDeviceStrategy.training_step");  // longest first
  EXPECT_EQ(cells(l[8])[0], "short");
  const double share = std::stod(cells(l[7])[4]);
  EXPECT_GT(share, 0.0);
  EXPECT_LE(share, 100.0);

  SimpleProfiler plain({.extended = false});
  { auto t = plain.profile("x"); }
  std::vector<std::string> p = lines_of(plain.summary());
  ASSERT_EQ(p.size(), 7u);
  EXPECT_EQ(p[0], "Profiler Report");
  EXPECT_EQ(cells(p[3]),
            (std::vector<std::string>{"Action", "Mean duration (s)", "Total time (s)"}));
  EXPECT_EQ(cells(p[5])[0], "x");
}

struct Counter : Callback {
  std::string state_key() const override { return "Counter"; }
  void on_train_batch_end(Trainer&, LightningModule&, const Tensor&, const Batch&,
                          int64_t) override {}
};

// Two epochs of 4 batches with accumulate_grad_batches 2 and validation each epoch: every
// action is timed as often as it ran, the nested ones inside their parents, and the report goes
// to {dirpath}/fit-perf.txt, then validate-perf.txt.
TEST(Profiler, TheTrainerTimesItsActions) {
  TempDir dir("profiler");
  auto profiler = std::make_shared<SimpleProfiler>(
      SimpleProfilerOptions{.dirpath = dir.str(), .filename = "perf"});
  TinyModel model;
  TinyData data({.n_train = 32, .n_val = 16, .batch_size = 8});
  Trainer trainer(quiet({.max_epochs = 2,
                         .accumulate_grad_batches = 2,
                         .num_sanity_val_steps = 0,
                         .callbacks = {std::make_shared<Counter>()},
                         .profiler = profiler}));
  trainer.fit(model, data);
  const auto& r = profiler->records();
  auto calls = [&](const std::string& action) {
    auto it = r.find(action);
    return it == r.end() ? int64_t{-1} : it->second.calls;
  };
  auto seconds = [&](const std::string& action) { return r.at(action).total_seconds; };
  EXPECT_EQ(calls("run_training_epoch"), 2);
  EXPECT_EQ(calls("run_training_batch"), 8);
  EXPECT_EQ(calls("[_TrainingEpochLoop].train_dataloader_next"), 8);
  EXPECT_EQ(calls("[Strategy]SingleDeviceStrategy.training_step"), 8);
  EXPECT_EQ(calls("[Strategy]SingleDeviceStrategy.backward"), 8);
  EXPECT_EQ(calls("[LightningModule]TinyModel.optimizer_step"), 4);
  EXPECT_EQ(calls("[LightningModule]TinyModel.optimizer_zero_grad"), 4);
  EXPECT_EQ(calls("[LightningModule]TinyModel.on_train_batch_end"), 8);
  EXPECT_EQ(calls("[LightningModule]TinyModel.configure_optimizers"), 1);
  EXPECT_EQ(calls("[Callback]Counter.on_train_batch_end"), 8);
  EXPECT_EQ(calls("[Strategy]SingleDeviceStrategy.validation_step"), 4);
  EXPECT_EQ(calls("[_EvaluationLoop].val_next"), 4);
  EXPECT_EQ(calls("[LightningDataModule]TinyData.setup"), 1);
  EXPECT_EQ(calls("[LightningDataModule]TinyData.prepare_data"), 1);
  EXPECT_EQ(calls("[LightningDataModule]TinyData.teardown"), 1);
  // As Lightning's, optimizer_step holds the stepping batches' training_step and backward.
  EXPECT_GE(seconds("run_training_batch"), seconds("[LightningModule]TinyModel.optimizer_step"));
  EXPECT_GE(seconds("run_training_batch"), seconds("[Strategy]SingleDeviceStrategy.training_step") +
                                               seconds("[Strategy]SingleDeviceStrategy.backward"));
  EXPECT_GE(seconds("run_training_epoch"), seconds("run_training_batch"));

  std::ifstream fit_report(dir.path / "fit-perf.txt");
  std::string first;
  std::getline(fit_report, first);
  EXPECT_EQ(first, "FIT Profiler Report");
  trainer.validate(model, data, "", false);
  std::ifstream validate_report(dir.path / "validate-perf.txt");
  std::getline(validate_report, first);
  EXPECT_EQ(first, "VALIDATE Profiler Report");
  EXPECT_EQ(calls("[_EvaluationLoop].val_next"), 6);  // the records go on, as Lightning's
}

TEST(Profiler, SimplePrintsTheReportAndOtherNamesAreRefused) {
  TinyModel model;
  TinyData data({.n_train = 16, .batch_size = 8, .with_val = false});
  Trainer trainer(quiet({.max_epochs = 1, .profiler = "simple"}));
  ::testing::internal::CaptureStdout();
  trainer.fit(model, data);
  const std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("FIT Profiler Report"), std::string::npos) << out;
  EXPECT_NE(out.find("run_training_epoch"), std::string::npos) << out;
  EXPECT_THROW_MSG(Trainer(quiet({.profiler = "advanced"})), "profiler \"advanced\"", "simple");
}

}  // namespace
}  // namespace lumen::testing
