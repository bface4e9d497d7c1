// Built-in callbacks: ModelCheckpoint's file names and top-k bookkeeping (driven by hand and
// by a real Trainer), EarlyStopping's rules on hand sequences and in a fit, ModelSummary's
// table against hand-computed counts, Timer, LearningRateMonitor, and their error paths.
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "io/checkpoint.h"
#include "nn/optim/step_lr.h"

#include "op_harness.h"
#include "trainer/csv_logger.h"
#include "trainer/early_stopping.h"
#include "trainer/learning_rate_monitor.h"
#include "trainer/model_checkpoint.h"
#include "trainer/model_summary.h"
#include "trainer/on_exception_checkpoint.h"
#include "trainer/timer.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

namespace fs = std::filesystem;
using lumen::testing::TempDir;

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> out;
  if (!fs::exists(dir)) return out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

// A writer standing in for trainer.save_checkpoint: the file holds the step it was saved at.
struct FileWriter {
  std::vector<std::string> written;
  int64_t step = 0;
  ModelCheckpoint::CheckpointWriter fn() {
    return [this](const std::string& path) {
      std::ofstream(path) << step;
      written.push_back(fs::path(path).filename().string());
    };
  }
};

// ---- File names
TEST(CallbackCheckpointName, TemplatesAndSpecs) {
  std::map<std::string, double> m = {
      {"epoch", 3}, {"step", 120}, {"val_acc", 0.87654}, {"val_loss", 0.5}, {"val_loss_ema", 0.25}};
  EXPECT_EQ(format_checkpoint_filename("{epoch}-{val_acc:.3f}", m, true), "epoch=3-val_acc=0.877");
  EXPECT_EQ(format_checkpoint_filename("{epoch:02d}-{val_loss:.2f}", m, false), "03-0.50");
  // Without a spec a float prints as Python's str(float); epoch and step as integers.
  EXPECT_EQ(format_checkpoint_filename("{val_loss}_{step}", m, true), "val_loss=0.5_step=120");
  // A name that extends another is not confused with it.
  EXPECT_EQ(format_checkpoint_filename("{val_loss_ema:.2f}-{val_loss:.1f}", m, true),
            "val_loss_ema=0.25-val_loss=0.5");
  // Missing metrics read 0, as Lightning.
  EXPECT_EQ(format_checkpoint_filename("{missing}", m, true), "missing=0");
  EXPECT_EQ(format_checkpoint_filename("plain", m, true), "plain");
  EXPECT_THROW_MSG(format_checkpoint_filename("{epoch", m, true), "without a matching '}'");
  EXPECT_THROW_MSG(format_checkpoint_filename("epoch}", m, true), "without a matching '{'");
  EXPECT_THROW_MSG(format_checkpoint_filename("{val_acc:,.2f}", m, true), "printf-style");
  EXPECT_THROW_MSG(format_checkpoint_filename("{}", m, true), "empty {} field");
}

TEST(CallbackCheckpointName, DefaultNameDirectoryAndVersion) {
  ModelCheckpoint mc({.dirpath = "/ckpts"});
  std::map<std::string, double> m = {{"epoch", 0}, {"step", 10}};
  EXPECT_EQ(mc.format_checkpoint_name(m), "/ckpts/epoch=0-step=10.ckpt");
  EXPECT_EQ(mc.format_checkpoint_name(m, "", 2), "/ckpts/epoch=0-step=10-v2.ckpt");
  EXPECT_EQ(mc.format_checkpoint_name(m, "last"), "/ckpts/last.ckpt");
  ModelCheckpoint bare({.dirpath = "d",
                        .filename = "{epoch}-{step}",
                        .monitor = "",
                        .mode = "min",
                        .save_top_k = 1,
                        .save_last = false,
                        .every_n_epochs = std::nullopt,
                        .every_n_train_steps = std::nullopt,
                        .save_on_train_epoch_end = std::nullopt,
                        .auto_insert_metric_name = false});
  EXPECT_EQ(bare.format_checkpoint_name(m), "d/0-10.ckpt");
}

TEST(CallbackCheckpoint, ConfigurationErrors) {
  EXPECT_THROW_MSG(ModelCheckpoint({.monitor = "val_acc", .mode = "maximum"}),
                   "mode can be min, max but got 'maximum'");
  EXPECT_THROW_MSG(ModelCheckpoint({.monitor = "x", .mode = "min", .save_top_k = -2}),
                   "save_top_k must be >= -1");
  EXPECT_THROW_MSG(ModelCheckpoint({.save_top_k = 3}), "save_top_k=3", "nothing to rank");
  EXPECT_THROW_MSG(ModelCheckpoint({.every_n_epochs = 1, .every_n_train_steps = 5}),
                   "mutually exclusive");
  EXPECT_THROW_MSG(ModelCheckpoint({.every_n_train_steps = -1}),
                   "every_n_train_steps must be >= 0");
  ModelCheckpoint defaults;
  EXPECT_EQ(defaults.every_n_epochs(), 1);
  EXPECT_EQ(defaults.every_n_train_steps(), 0);
  EXPECT_EQ(defaults.state_key(),
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, "
            "'every_n_epochs': 1, 'train_time_interval': None}");
  ModelCheckpoint steps({.monitor = "val_loss", .every_n_train_steps = 5});
  EXPECT_EQ(steps.every_n_epochs(), 0);
  EXPECT_EQ(steps.state_key(),
            "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min', 'every_n_train_steps': 5, "
            "'every_n_epochs': 0, 'train_time_interval': None}");
}

// ---- Top-k bookkeeping on a hand sequence of scores.
struct TopKRun {
  std::set<std::string> files;
  ModelCheckpoint* mc;
};

void feed(ModelCheckpoint& mc, FileWriter& w, const std::vector<double>& scores) {
  for (size_t e = 0; e < scores.size(); ++e) {
    w.step = static_cast<int64_t>(e + 1) * 10;
    std::map<std::string, double> m = {{"epoch", static_cast<double>(e)},
                                       {"step", static_cast<double>(w.step)},
                                       {"val_loss", scores[e]}};
    mc.save_topk(m, w.fn());
    mc.save_last_checkpoint(m, w.fn());
  }
}

TEST(CallbackCheckpoint, TopKMinKeepsTheTwoLowest) {
  TempDir dir("ckpt_min");
  ModelCheckpoint mc({.dirpath = dir.str(),
                      .filename = "{epoch}-{val_loss:.2f}",
                      .monitor = "val_loss",
                      .mode = "min",
                      .save_top_k = 2});
  FileWriter w;
  // e0 0.5 kept; e1 0.4 kept (k reached: kth = e0); e2 0.6 not better than 0.5; e3 0.3
  // replaces e0 (kth becomes e1 = 0.4); e4 0.45 not better than 0.4.
  feed(mc, w, {0.5, 0.4, 0.6, 0.3, 0.45});
  EXPECT_EQ(files_in(dir.path),
            (std::set<std::string>{"epoch=1-val_loss=0.40.ckpt", "epoch=3-val_loss=0.30.ckpt"}));
  EXPECT_EQ(w.written,
            (std::vector<std::string>{"epoch=0-val_loss=0.50.ckpt", "epoch=1-val_loss=0.40.ckpt",
                                      "epoch=3-val_loss=0.30.ckpt"}));
  EXPECT_EQ(mc.best_model_path(), dir.str("epoch=3-val_loss=0.30.ckpt"));
  EXPECT_EQ(mc.best_model_score(), 0.3);
  EXPECT_EQ(mc.kth_best_model_path(), dir.str("epoch=1-val_loss=0.40.ckpt"));
  EXPECT_EQ(mc.kth_value(), 0.4);
  EXPECT_EQ(mc.current_score(), 0.3);
  EXPECT_EQ(mc.last_model_path(), "");  // save_last off
}

TEST(CallbackCheckpoint, TopKMaxKeepsTheTwoHighestAndLast) {
  TempDir dir("ckpt_max");
  ModelCheckpoint mc({.dirpath = dir.str(),
                      .filename = "{epoch}-{val_loss:.2f}",
                      .monitor = "val_loss",
                      .mode = "max",
                      .save_top_k = 2,
                      .save_last = true});
  FileWriter w;
  // e0 0.5, e1 0.4 kept (kth = e1); e2 0.6 > 0.4 replaces e1 (kth = e0 0.5); e3 0.3, e4 0.45
  // are not above 0.5.
  feed(mc, w, {0.5, 0.4, 0.6, 0.3, 0.45});
  EXPECT_EQ(files_in(dir.path), (std::set<std::string>{"epoch=0-val_loss=0.50.ckpt",
                                                       "epoch=2-val_loss=0.60.ckpt", "last.ckpt"}));
  EXPECT_EQ(mc.best_model_path(), dir.str("epoch=2-val_loss=0.60.ckpt"));
  EXPECT_EQ(mc.best_model_score(), 0.6);
  EXPECT_EQ(mc.kth_value(), 0.5);
  EXPECT_EQ(mc.last_model_path(), dir.str("last.ckpt"));
  std::ifstream last(dir.str("last.ckpt"));
  int64_t step = 0;
  last >> step;
  EXPECT_EQ(step, 50);  // re-saved at every save point, the last one at step 50
}

TEST(CallbackCheckpoint, TopKAllAndNone) {
  TempDir dir("ckpt_all");
  ModelCheckpoint all({.dirpath = dir.str("all"),
                       .filename = "{epoch}",
                       .monitor = "val_loss",
                       .mode = "min",
                       .save_top_k = -1});
  ModelCheckpoint none({.dirpath = dir.str("none"),
                        .filename = "{epoch}",
                        .monitor = "val_loss",
                        .mode = "min",
                        .save_top_k = 0,
                        .save_last = true});
  FileWriter w1, w2;
  fs::create_directories(dir.path / "all");
  fs::create_directories(dir.path / "none");
  feed(all, w1, {0.5, 0.4, 0.6});
  feed(none, w2, {0.5, 0.4, 0.6});
  EXPECT_EQ(files_in(dir.path / "all"),
            (std::set<std::string>{"epoch=0.ckpt", "epoch=1.ckpt", "epoch=2.ckpt"}));
  EXPECT_EQ(all.best_model_path(), dir.str("all/epoch=1.ckpt"));
  EXPECT_EQ(all.best_k_models().size(), 3u);
  EXPECT_EQ(files_in(dir.path / "none"), (std::set<std::string>{"last.ckpt"}));
  EXPECT_EQ(none.best_model_path(), "");
}

TEST(CallbackCheckpoint, NoMonitorKeepsTheLatestAndVersionsClashingNames) {
  TempDir dir("ckpt_nomon");
  ModelCheckpoint latest({.dirpath = dir.str("latest")});
  fs::create_directories(dir.path / "latest");
  FileWriter w;
  for (int64_t s : {5, 10, 15}) {
    w.step = s;
    latest.save_topk({{"epoch", 0}, {"step", static_cast<double>(s)}}, w.fn());
  }
  EXPECT_EQ(files_in(dir.path / "latest"), (std::set<std::string>{"epoch=0-step=15.ckpt"}));
  EXPECT_EQ(latest.best_model_path(), dir.str("latest/epoch=0-step=15.ckpt"));

  // The same name from a new run into the same directory gets -v1, -v2 (within one run the
  // no-monitor checkpoint replaces its own previous file, as Lightning).
  for (int i = 0; i < 3; ++i) {
    ModelCheckpoint rerun({.dirpath = dir.str(), .filename = "model", .save_top_k = -1});
    rerun.save_topk({{"epoch", 0}, {"step", 0}}, w.fn());
  }
  EXPECT_EQ(files_in(dir.path),
            (std::set<std::string>{"latest", "model.ckpt", "model-v1.ckpt", "model-v2.ckpt"}));
  // ... but a file already in a run's directory is not rewritten by a different name:
  // last.ckpt from an earlier run becomes last-v1.ckpt.
  std::ofstream(dir.str("last.ckpt")) << "old";
  ModelCheckpoint rerun({.dirpath = dir.str(), .save_top_k = 0, .save_last = true});
  rerun.save_last_checkpoint({{"epoch", 0}, {"step", 1}}, w.fn());
  rerun.save_last_checkpoint({{"epoch", 0}, {"step", 2}}, w.fn());
  EXPECT_EQ(rerun.last_model_path(), dir.str("last-v1.ckpt"));
  EXPECT_TRUE(fs::exists(dir.str("last.ckpt")));
}

TEST(CallbackCheckpoint, MissingMonitorListsAvailableMetrics) {
  TempDir dir("ckpt_missing");
  ModelCheckpoint mc({.dirpath = dir.str(), .monitor = "val_acc", .mode = "max"});
  FileWriter w;
  EXPECT_THROW_MSG(mc.save_topk({{"epoch", 0}, {"step", 1}, {"train_loss", 0.3}}, w.fn()),
                   "ModelCheckpoint(monitor='val_acc') could not find the monitored key",
                   "[epoch, step, train_loss]", "log('val_acc', value)");
  EXPECT_TRUE(w.written.empty());
}

TEST(CallbackCheckpoint, NaNScoresAreTheWorst) {
  TempDir dir("ckpt_nan");
  ModelCheckpoint mc({.dirpath = dir.str(),
                      .filename = "{epoch}",
                      .monitor = "val_loss",
                      .mode = "min",
                      .save_top_k = 2});
  FileWriter w;
  feed(mc, w, {NAN, 0.7, 0.9});
  // NaN is stored as +inf, so 0.9 displaces it.
  EXPECT_EQ(files_in(dir.path), (std::set<std::string>{"epoch=1.ckpt", "epoch=2.ckpt"}));
  EXPECT_EQ(mc.best_model_score(), 0.7);
}

TEST(CallbackCheckpoint, StateDictRoundTrip) {
  TempDir dir("ckpt_state");
  ModelCheckpoint mc({.dirpath = dir.str(),
                      .filename = "{epoch}",
                      .monitor = "val_loss",
                      .mode = "min",
                      .save_top_k = 2,
                      .save_last = true});
  FileWriter w;
  feed(mc, w, {0.5, 0.4, 0.3});
  State s = mc.state_dict();
  EXPECT_EQ(s.get_string("monitor"), "val_loss");
  EXPECT_EQ(s.get_double("best_model_score"), 0.3);

  ModelCheckpoint resumed({.dirpath = dir.str(),
                           .filename = "{epoch}",
                           .monitor = "val_loss",
                           .mode = "min",
                           .save_top_k = 2,
                           .save_last = true});
  resumed.load_state_dict(s);
  EXPECT_EQ(resumed.best_k_models(), mc.best_k_models());
  EXPECT_EQ(resumed.best_model_path(), mc.best_model_path());
  EXPECT_EQ(resumed.best_model_score(), mc.best_model_score());
  EXPECT_EQ(resumed.kth_best_model_path(), mc.kth_best_model_path());
  EXPECT_EQ(resumed.kth_value(), mc.kth_value());
  EXPECT_EQ(resumed.last_model_path(), mc.last_model_path());
  // Continuing after the resume deletes the right file: 0.35 beats the kth (0.4, epoch 1).
  std::map<std::string, double> m = {{"epoch", 3}, {"step", 40}, {"val_loss", 0.35}};
  resumed.save_topk(m, w.fn());
  EXPECT_EQ(files_in(dir.path),
            (std::set<std::string>{"epoch=2.ckpt", "epoch=3.ckpt", "last.ckpt"}));

  // From another directory only best_model_path comes back.
  ModelCheckpoint moved({.dirpath = dir.str("elsewhere"), .monitor = "val_loss"});
  moved.load_state_dict(s);
  EXPECT_EQ(moved.best_model_path(), mc.best_model_path());
  EXPECT_TRUE(moved.best_k_models().empty());
  EXPECT_FALSE(moved.best_model_score().has_value());
}

// ---- EarlyStopping on hand sequences
TEST(CallbackEarlyStopping, PatienceAndMinDeltaMin) {
  EarlyStopping es({.monitor = "val_loss", .min_delta = 0.1, .patience = 2});
  // 1.0 improves on +inf; 0.95 is not 0.1 below 1.0 (wait 1); 0.85 is (best 0.85, wait 0);
  // 0.8 and 0.79 are not below 0.75: wait 1, then 2 = patience -> stop.
  std::vector<std::pair<double, bool>> steps = {
      {1.0, false}, {0.95, false}, {0.85, false}, {0.8, false}, {0.79, true}};
  std::vector<int64_t> waits = {0, 1, 0, 1, 2};
  for (size_t i = 0; i < steps.size(); ++i) {
    auto [stop, reason] = es.evaluate_stopping_criteria(steps[i].first);
    EXPECT_EQ(stop, steps[i].second) << "value " << i;
    EXPECT_EQ(es.wait_count(), waits[i]) << "value " << i;
    if (i == 0) {
      EXPECT_EQ(reason, "Metric val_loss improved. New best score: 1.000");
    }
    if (i == 2) {
      EXPECT_EQ(reason,
                "Metric val_loss improved by 0.150 >= min_delta = 0.1. New best score: 0.850");
    }
    if (i == 4) {
      EXPECT_EQ(reason,
                "Monitored metric val_loss did not improve in the last 2 records. Best "
                "score: 0.850. Signaling Trainer to stop.");
    }
  }
  EXPECT_EQ(es.best_score(), 0.85);
}

TEST(CallbackEarlyStopping, MaxModeThresholdsAndNonFinite) {
  EarlyStopping es({.monitor = "acc", .min_delta = 0.0, .patience = 5, .mode = "max"});
  EXPECT_FALSE(es.evaluate_stopping_criteria(0.5).first);
  EXPECT_FALSE(es.evaluate_stopping_criteria(0.5).first);  // equal is no improvement
  EXPECT_EQ(es.wait_count(), 1);
  EXPECT_FALSE(es.evaluate_stopping_criteria(0.6).first);
  EXPECT_EQ(es.wait_count(), 0);
  EXPECT_EQ(es.best_score(), 0.6);
  auto [stop, reason] = es.evaluate_stopping_criteria(NAN);
  EXPECT_TRUE(stop);
  EXPECT_EQ(reason,
            "Monitored metric acc = nan is not finite. Previous best value was 0.600. "
            "Signaling Trainer to stop.");

  EarlyStopping good({.monitor = "acc",
                      .min_delta = 0.0,
                      .patience = 5,
                      .mode = "max",
                      .strict = true,
                      .check_finite = true,
                      .stopping_threshold = 0.9});
  EXPECT_FALSE(good.evaluate_stopping_criteria(0.9).first);  // must be strictly better
  auto s = good.evaluate_stopping_criteria(0.95);
  EXPECT_TRUE(s.first);
  EXPECT_EQ(s.second, "Stopping threshold reached: acc = 0.95 > 0.9. Signaling Trainer to stop.");

  EarlyStopping diverge({.monitor = "loss",
                         .min_delta = 0.0,
                         .patience = 5,
                         .mode = "min",
                         .strict = true,
                         .check_finite = true,
                         .stopping_threshold = std::nullopt,
                         .divergence_threshold = 10.0});
  EXPECT_FALSE(diverge.evaluate_stopping_criteria(9.0).first);
  auto d = diverge.evaluate_stopping_criteria(12.0);
  EXPECT_TRUE(d.first);
  EXPECT_EQ(d.second,
            "Divergence threshold reached: loss = 12.0 < 10.0. Signaling Trainer to stop.");

  // patience 0 stops at the first record that does not improve.
  EarlyStopping impatient({.monitor = "loss", .min_delta = 0.0, .patience = 0});
  EXPECT_FALSE(impatient.evaluate_stopping_criteria(1.0).first);
  EXPECT_TRUE(impatient.evaluate_stopping_criteria(1.0).first);
}

TEST(CallbackEarlyStopping, ErrorsAndState) {
  EXPECT_THROW_MSG(EarlyStopping({.monitor = "x", .min_delta = 0, .patience = 3, .mode = "best"}),
                   "mode can be min, max, got 'best'");
  EXPECT_THROW_MSG(EarlyStopping({}), "monitor must name a logged metric");
  EXPECT_THROW_MSG(EarlyStopping({.monitor = "x", .min_delta = 0, .patience = -1}),
                   "patience must be >= 0");
  EarlyStopping es({.monitor = "val_loss"});
  EXPECT_EQ(es.state_key(), "EarlyStopping{'monitor': 'val_loss', 'mode': 'min'}");
  es.evaluate_stopping_criteria(0.5);
  es.evaluate_stopping_criteria(0.7);
  State s = es.state_dict();
  EarlyStopping other({.monitor = "val_loss", .min_delta = 0, .patience = 9});
  other.load_state_dict(s);
  EXPECT_EQ(other.wait_count(), 1);
  EXPECT_EQ(other.best_score(), 0.5);
  EXPECT_EQ(other.patience(), 3);
  EXPECT_EQ(other.stopped_epoch(), 0);
}

// ---- ModelSummary
TEST(CallbackModelSummary, HumanReadableCounts) {
  // The examples of Lightning's get_human_readable_count docstring.
  EXPECT_EQ(human_readable_count(123), "123  ");
  EXPECT_EQ(human_readable_count(1234), "1.2 K");
  EXPECT_EQ(human_readable_count(2000000), "2.0 M");
  EXPECT_EQ(human_readable_count(3000000000), "3.0 B");
  EXPECT_EQ(human_readable_count(400000000000000), "400 T");
  EXPECT_EQ(human_readable_count(5000000000000000), "5,000 T");
  EXPECT_EQ(human_readable_count(0), "0  ");
  EXPECT_EQ(human_readable_count(203530), "203 K");
}

struct Block : nn::Module {
  nn::Linear a{3, 4}, b{4, 2};
  Block() {
    register_module("a", a);
    register_module("b", b);
  }
  std::string type_name() const override { return "Block"; }
};

struct Net : nn::Module {
  nn::Linear fc1{784, 256};
  Block block;
  Tensor scale = ones({5});
  Net() {
    register_module("fc1", fc1);
    register_module("block", block);
    register_parameter("scale", scale);
  }
  std::string type_name() const override { return "Net"; }
};

TEST(CallbackModelSummary, TableMatchesHandCounts) {
  Net net;
  // fc1: 784*256 + 256 = 200960; block.a: 3*4 + 4 = 16; block.b: 4*2 + 2 = 10 (block 26);
  // scale: 5 (held by the root: "other params"). Total 200991, of which block.b's 10 frozen;
  // Lightning truncates 200.991 K to "200 K". Rule width: column widths 1+12+6+6+5 plus 3 per
  // column and one more (Lightning's n_cols = 1 + len(cols)) = 48. Size 200991*4/1e6 MB.
  net.block.b.weight.requires_grad_(false);
  net.block.b.bias.requires_grad_(false);
  net.block.b.eval();
  EXPECT_EQ(model_summary_table(net, 1),
            "  | Name         | Type   | Params | Mode \n"
            "------------------------------------------------\n"
            "0 | fc1          | Linear | 200 K  | train\n"
            "1 | block        | Block  | 26     | train\n"
            "  | other params | n/a    | 5      | n/a  \n"
            "------------------------------------------------\n"
            "200 K     Trainable params\n"
            "10        Non-trainable params\n"
            "200 K     Total params\n"
            "0.804     Total estimated model params size (MB)\n"
            "3         Modules in train mode\n"
            "1         Modules in eval mode");
  // Depth 2 lists the grandchildren too; -1 lists everything (the same here).
  std::string deep = model_summary_table(net, 2);
  EXPECT_NE(deep.find("2 | block.a      | Linear | 16     | train"), std::string::npos) << deep;
  EXPECT_NE(deep.find("3 | block.b      | Linear | 10     | eval "), std::string::npos) << deep;
  EXPECT_EQ(model_summary_table(net, -1), deep);
  EXPECT_THROW_MSG(model_summary_table(net, -2), "max_depth must be >= -1");
  EXPECT_THROW_MSG(ModelSummary({.max_depth = -3}), "max_depth must be >= -1");
}

// ---- Timer and LearningRateMonitor configuration
TEST(CallbackTimer, DurationsAndState) {
  EXPECT_EQ(parse_duration("01:02:03:04"), 86400 + 2 * 3600 + 3 * 60 + 4);
  EXPECT_EQ(parse_duration(" 00:00:01:00 "), 60);
  EXPECT_EQ(TimerDuration("00:12:00:00").seconds, 43200);
  EXPECT_THROW_MSG(parse_duration("1:2:3"), "not a valid duration", "DD:HH:MM:SS");
  EXPECT_THROW_MSG(parse_duration("00:1:00:00"), "DD:HH:MM:SS");
  EXPECT_THROW_MSG(Timer({.duration = 5.0, .interval = "batch"}), "unsupported interval");
  Timer t({.duration = 10.0});
  EXPECT_EQ(t.time_elapsed(), 0.0);
  EXPECT_EQ(t.time_remaining(), 10.0);
  State s;
  s.attrs["time_elapsed.train"] = 4.5;
  t.load_state_dict(s);
  EXPECT_EQ(t.time_elapsed("train"), 4.5);  // not started: the loaded offset
  EXPECT_EQ(t.time_elapsed("validate"), 0.0);
  EXPECT_EQ(t.state_dict().get_double("time_elapsed.train"), 4.5);
  EXPECT_FALSE(Timer().time_remaining().has_value());
}

TEST(CallbackLearningRateMonitor, BadInterval) {
  EXPECT_THROW_MSG(LearningRateMonitor({.logging_interval = "batch"}),
                   "logging_interval should be \"step\" or \"epoch\"");
}

// ---- With a real Trainer
using lumen::testing::quiet;
using lumen::testing::RecordingLogger;
using lumen::testing::TinyData;
using lumen::testing::TinyModel;

// Logs "score" = scores[epoch] in every validation step (a hand-made metric curve).
struct ScriptedModel : TinyModel {
  std::vector<double> scores;
  explicit ScriptedModel(std::vector<double> s) : scores(std::move(s)) {}
  void validation_step(const Batch& b, int64_t i) override {
    TinyModel::validation_step(b, i);
    auto e = static_cast<size_t>(trainer()->current_epoch());
    log("score", scores[std::min(e, scores.size() - 1)]);
  }
};

TEST(CallbackTrainer, CheckpointTopKAndLastInAFit) {
  TempDir dir("fit_ckpt");
  ScriptedModel model({0.5, 0.4, 0.6, 0.3, 0.45});
  TinyData data;
  auto mc =
      std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir.str("ckpt"),
                                                               .filename = "{epoch}-{score:.2f}",
                                                               .monitor = "score",
                                                               .mode = "min",
                                                               .save_top_k = 2,
                                                               .save_last = true});
  TrainerOptions o;
  o.max_epochs = 5;
  o.default_root_dir = dir.str();
  o.callbacks = {mc};
  Trainer trainer(quiet(o));
  trainer.fit(model, data);
  // The same sequence as TopKMinKeepsTheTwoLowest, now scored by validation in each epoch.
  EXPECT_EQ(
      files_in(dir.path / "ckpt"),
      (std::set<std::string>{"epoch=1-score=0.40.ckpt", "epoch=3-score=0.30.ckpt", "last.ckpt"}));
  EXPECT_EQ(mc->best_model_path(), dir.str("ckpt/epoch=3-score=0.30.ckpt"));
  EXPECT_EQ(mc->best_model_score(), 0.3);
  EXPECT_EQ(mc->last_model_path(), dir.str("ckpt/last.ckpt"));
  EXPECT_EQ(mc->dirpath(trainer), dir.str("ckpt"));
}

TEST(CallbackTrainer, CheckpointStateComesBackOnResume) {
  TempDir dir("fit_resume");
  std::vector<double> scores = {0.5, 0.4, 0.6, 0.3};
  TinyData data;
  auto make = [&] {
    return std::make_shared<ModelCheckpoint>(ModelCheckpointOptions{.dirpath = dir.str("ckpt"),
                                                                    .filename = "{epoch}",
                                                                    .monitor = "score",
                                                                    .mode = "min",
                                                                    .save_top_k = 2,
                                                                    .save_last = true});
  };
  TrainerOptions o;
  o.default_root_dir = dir.str();
  o.max_epochs = 2;
  auto first = make();
  o.callbacks = {first};
  {
    ScriptedModel model(scores);
    Trainer trainer(quiet(o));
    trainer.fit(model, data);
  }
  EXPECT_EQ(files_in(dir.path / "ckpt"),
            (std::set<std::string>{"epoch=0.ckpt", "epoch=1.ckpt", "last.ckpt"}));
  // Resumed: the top-k list comes back from last.ckpt, so epoch 3's 0.3 displaces epoch 0's
  // 0.5 (a fresh callback would keep all four files), and epoch 2's 0.6 is not saved.
  auto resumed = make();
  o.callbacks = {resumed};
  o.max_epochs = 4;
  ScriptedModel model(scores);
  Trainer trainer(quiet(o));
  trainer.fit(model, data, "last");
  EXPECT_EQ(files_in(dir.path / "ckpt"),
            (std::set<std::string>{"epoch=1.ckpt", "epoch=3.ckpt", "last.ckpt"}));
  EXPECT_EQ(resumed->best_model_path(), dir.str("ckpt/epoch=3.ckpt"));
  EXPECT_EQ(resumed->kth_value(), 0.4);
}

TEST(CallbackTrainer, CheckpointEveryNTrainSteps) {
  TempDir dir("fit_steps");
  TinyModel model;
  TinyData data;  // 64 rows / 8 = 8 batches per epoch
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.save_top_k = -1, .every_n_train_steps = 3});
  TrainerOptions o;
  o.max_epochs = 2;
  o.default_root_dir = dir.str();
  o.callbacks = {mc};
  o.logger = false;
  Trainer trainer(quiet(o));
  trainer.fit(model, data);
  // No logger: the default directory is <default_root_dir>/checkpoints. Steps 3, 6 fall in
  // epoch 0 (steps 1-8), 9, 12, 15 in epoch 1; none at epoch ends (every_n_epochs is 0).
  EXPECT_EQ(mc->dirpath(), dir.str("checkpoints"));
  EXPECT_EQ(
      files_in(dir.path / "checkpoints"),
      (std::set<std::string>{"epoch=0-step=3.ckpt", "epoch=0-step=6.ckpt", "epoch=1-step=9.ckpt",
                             "epoch=1-step=12.ckpt", "epoch=1-step=15.ckpt"}));
}

TEST(CallbackTrainer, CheckpointMissingMonitorFailsAfterValidation) {
  TempDir dir("fit_missing");
  TinyModel model;
  TinyData data;
  auto mc = std::make_shared<ModelCheckpoint>(
      ModelCheckpointOptions{.dirpath = dir.str("ckpt"), .monitor = "val_acc", .mode = "max"});
  TrainerOptions o;
  o.max_epochs = 1;
  o.default_root_dir = dir.str();
  o.callbacks = {mc};
  Trainer trainer(quiet(o));
  EXPECT_THROW_MSG(trainer.fit(model, data), "could not find the monitored key", "val_loss");
}

TEST(CallbackTrainer, EarlyStoppingStopsAfterPatience) {
  TempDir dir("fit_es");
  // 1.0, 0.9 improve; 0.95, 0.92 do not -> stop at the end of epoch 3 (patience 2).
  ScriptedModel model({1.0, 0.9, 0.95, 0.92, 0.1, 0.1, 0.1, 0.1});
  TinyData data;
  auto es = std::make_shared<EarlyStopping>(
      EarlyStoppingOptions{.monitor = "score", .min_delta = 0.0, .patience = 2});
  TrainerOptions o;
  o.max_epochs = 8;
  o.default_root_dir = dir.str();
  o.callbacks = {es};
  Trainer trainer(quiet(o));
  trainer.fit(model, data);
  EXPECT_EQ(es->stopped_epoch(), 3);
  EXPECT_EQ(es->best_score(), 0.9);
  EXPECT_EQ(es->wait_count(), 2);
  EXPECT_EQ(model.training_steps, 4 * 8);
  EXPECT_NE(es->last_reason().find("did not improve in the last 2 records"), std::string::npos);

  // strict: a metric that is never logged is an error naming the available ones.
  TinyModel plain;
  auto strict = std::make_shared<EarlyStopping>(EarlyStoppingOptions{.monitor = "nope"});
  TrainerOptions o2 = o;
  o2.callbacks = {strict};
  Trainer t2(quiet(o2));
  EXPECT_THROW_MSG(t2.fit(plain, data), "Early stopping conditioned on metric `nope`",
                   "`val_loss`");
}

TEST(CallbackTrainer, TimerStopsAfterTheFirstStep) {
  TempDir dir("fit_timer");
  TinyModel model;
  TinyData data;
  auto timer =
      std::make_shared<Timer>(TimerOptions{.duration = 1e-9, .interval = "step", .verbose = false});
  TrainerOptions o;
  o.max_epochs = 3;
  o.default_root_dir = dir.str();
  o.callbacks = {timer};
  Trainer trainer(quiet(o));
  trainer.fit(model, data);
  EXPECT_EQ(model.training_steps, 1);
  EXPECT_GT(timer->time_elapsed("train"), 0.0);
  EXPECT_TRUE(timer->end_time("train").has_value());
}

TEST(CallbackTrainer, LearningRateMonitorLogsThroughTheLoggers) {
  TempDir dir("fit_lr");
  TinyModel model({.hidden = 8, .dropout = 0.0, .lr = 0.05, .momentum = 0.9});
  TinyData data;
  auto logger = std::make_shared<RecordingLogger>();
  auto lrm = std::make_shared<LearningRateMonitor>(
      LearningRateMonitorOptions{.logging_interval = "step", .log_momentum = true});
  TrainerOptions o;
  o.max_epochs = 1;
  o.log_every_n_steps = 2;
  o.default_root_dir = dir.str();
  o.callbacks = {lrm};
  o.logger = LoggerOption(std::shared_ptr<Logger>(logger));
  Trainer trainer(quiet(o));
  trainer.fit(model, data);
  // Logged before steps 2, 4, 6, 8 (global_step 1, 3, 5, 7 when the batch starts).
  std::vector<int64_t> steps;
  for (const auto& row : logger->rows) {
    if (!row.metrics.count("lr-SGD")) continue;
    steps.push_back(row.step);
    EXPECT_EQ(row.metrics.at("lr-SGD"), 0.05);
    EXPECT_EQ(row.metrics.at("lr-SGD-momentum"), 0.9);
  }
  EXPECT_EQ(steps, (std::vector<int64_t>{1, 3, 5, 7}));
  EXPECT_EQ(lrm->lrs().at("lr-SGD").size(), 4u);

  // Without a logger it refuses to run.
  TinyModel other;
  TrainerOptions o2 = o;
  o2.logger = false;
  o2.callbacks = {std::make_shared<LearningRateMonitor>()};
  Trainer t2(quiet(o2));
  EXPECT_THROW_MSG(t2.fit(other, data), "LearningRateMonitor", "no logger");
}

// Two parameter groups and a named epoch scheduler: keys "<name>/pg1", "<name>/pg2".
struct TwoGroupModel : TinyModel {
  std::string scheduler_name;
  explicit TwoGroupModel(std::string name) : scheduler_name(std::move(name)) {}
  OptimizerConfig configure_optimizers() override {
    std::vector<optim::ParamGroup> groups(2);
    groups[0].params = fc1.parameters();
    groups[0].options = {{"lr", 0.1}, {"momentum", 0.5}};
    groups[1].params = fc2.parameters();
    groups[1].options = {{"lr", 0.01}};
    auto opt = std::make_shared<optim::SGD>(groups, optim::SGDOptions{.lr = 1.0});
    SchedulerConfig sched;
    sched.scheduler = std::make_shared<optim::StepLR>(*opt, 1, 0.5);
    sched.name = scheduler_name;
    return OptimizerConfig(opt, sched);
  }
};

TEST(CallbackTrainer, LearningRateMonitorNamesGroupsAndSchedulers) {
  TempDir dir("fit_lr_groups");
  TinyData data;
  for (std::string name : {"my_lr", ""}) {
    TwoGroupModel model(name);
    auto logger = std::make_shared<RecordingLogger>();
    TrainerOptions o;
    o.max_epochs = 2;
    o.default_root_dir = dir.str();
    o.callbacks = {std::make_shared<LearningRateMonitor>()};
    o.logger = LoggerOption(std::shared_ptr<Logger>(logger));
    Trainer trainer(quiet(o));
    trainer.fit(model, data);
    std::string key = name.empty() ? "lr-SGD" : name;
    // Unset interval: the epoch scheduler's rates at each epoch start (steps 0 and 8), halved
    // by StepLR(step_size 1, gamma 0.5) after epoch 0.
    std::vector<std::tuple<int64_t, double, double>> got;
    for (const auto& row : logger->rows)
      if (row.metrics.count(key + "/pg1"))
        got.emplace_back(row.step, row.metrics.at(key + "/pg1"), row.metrics.at(key + "/pg2"));
    EXPECT_EQ(got,
              (std::vector<std::tuple<int64_t, double, double>>{{0, 0.1, 0.01}, {8, 0.05, 0.005}}))
        << key;
  }
}

TEST(CallbackTrainer, ModelSummaryPrintsAtFitStart) {
  TempDir dir("fit_summary");
  TinyModel model;  // fc1 4*8+8 = 40, drop 0, fc2 8+1 = 9
  TinyData data;
  TrainerOptions o;
  o.max_epochs = 1;
  o.limit_train_batches = 1;
  o.default_root_dir = dir.str();
  o.callbacks = {std::make_shared<ModelSummary>()};
  Trainer trainer(quiet(o));
  ::testing::internal::CaptureStdout();
  trainer.fit(model, data);
  std::string out = ::testing::internal::GetCapturedStdout();
  EXPECT_NE(out.find("0 | fc1  | Linear  | 40     | train"), std::string::npos) << out;
  EXPECT_NE(out.find("49        Total params"), std::string::npos) << out;
}

TEST(CallbackTrainer, DefaultCSVLoggerWritesMetrics) {
  TempDir dir("fit_csv");
  TinyModel model;
  TinyData data;
  TrainerOptions o;
  o.max_epochs = 2;
  o.log_every_n_steps = 4;
  o.default_root_dir = dir.str();
  o.enable_progress_bar = false;
  o.enable_checkpointing = false;
  o.enable_model_summary = false;
  o.accelerator = "cpu";  // TinyModel reads its batches on the host
  Trainer trainer(o);
  trainer.fit(model, data);
  auto path = dir.path / "lightning_logs" / "version_0" / "metrics.csv";
  ASSERT_TRUE(fs::exists(path));
  std::ifstream f(path);
  std::string header;
  std::getline(f, header);
  EXPECT_NE(header.find("train_loss"), std::string::npos) << header;
  EXPECT_NE(header.find("val_loss"), std::string::npos) << header;
  EXPECT_NE(header.find("step"), std::string::npos) << header;
  int rows = 0;
  for (std::string line; std::getline(f, line);) ++rows;
  EXPECT_GE(rows, 4);  // train_loss at steps 4, 8, 12, 16 at least
}

// DeviceStatsMonitor: every batch hook of fit logs the device's memory (and on the CPU the
// host's) under Lightning's keys, at the step of batches that stepped; without a logger fit
// refuses it; cpu_stats = false logs nothing on the CPU.
TEST(CallbackDeviceStatsMonitor, LogsMemoryAroundEveryBatch) {
  auto logger = std::make_shared<testing::RecordingLogger>();
  testing::TinyModel model;
  testing::TinyData data({.n_train = 16, .n_val = 8, .batch_size = 8});
  Trainer trainer(testing::quiet({.max_epochs = 1,
                                  .num_sanity_val_steps = 0,
                                  .log_every_n_steps = 1,
                                  .callbacks = {std::make_shared<DeviceStatsMonitor>()},
                                  .logger = logger}));
  trainer.fit(model, data);
  std::map<std::string, int> hooks;
  for (const auto& row : logger->rows) {
    for (const auto& [key, value] : row.metrics) {
      if (key.rfind("DeviceStatsMonitor.", 0) != 0) continue;
      const std::string hook = key.substr(19, key.find('/') - 19);
      const std::string stat = key.substr(key.find('/') + 1);
      if (stat == "allocated_bytes.all.current") {
        ++hooks[hook];
        EXPECT_GT(value, 0.0) << key;  // the model's parameters at least
        EXPECT_GE(row.metrics.at("DeviceStatsMonitor." + hook + "/allocated_bytes.all.peak"),
                  value);
        EXPECT_GE(row.metrics.at("DeviceStatsMonitor." + hook + "/reserved_bytes.all.current"),
                  value);
      }
      if (stat == "cpu_vm_percent") {
        EXPECT_GT(value, 0.0);
        EXPECT_LE(value, 100.0);
      }
    }
  }
  EXPECT_EQ(hooks, (std::map<std::string, int>{{"on_train_batch_start", 2},
                                               {"on_train_batch_end", 2},
                                               {"on_validation_batch_start", 1},
                                               {"on_validation_batch_end", 1}}));
  DeviceStatsMonitor off({.cpu_stats = false});
  EXPECT_TRUE(off.device_stats(trainer, "on_train_batch_end").empty());
  std::map<std::string, double> now = DeviceStatsMonitor().device_stats(trainer, "x");
  ASSERT_TRUE(now.count("DeviceStatsMonitor.x/cpu_percent"));
  EXPECT_GE(now.at("DeviceStatsMonitor.x/cpu_percent"), 0.0);
  EXPECT_LE(now.at("DeviceStatsMonitor.x/cpu_percent"), 100.0);

  Trainer no_logger(testing::quiet(
      {.max_epochs = 1, .callbacks = {std::make_shared<DeviceStatsMonitor>()}, .logger = false}));
  EXPECT_THROW_MSG(no_logger.fit(model, data), "DeviceStatsMonitor", "no logger");
}

// GradientAccumulationScheduler({1: 2}): 1 batch a step in epoch 0, 2 from epoch 1, so two
// epochs of 4 batches make 4 + 2 steps, and epoch 1's backward starts from half the loss.
TEST(CallbackGradientAccumulationScheduler, ChangesTheFactorByEpoch) {
  struct Losses : Callback {
    std::vector<float> backward;
    std::string state_key() const override { return "Losses"; }
    void on_before_backward(Trainer&, LightningModule&, const Tensor& loss) override {
      backward.push_back(loss.item<float>());
    }
  };
  auto scheduler =
      std::make_shared<GradientAccumulationScheduler>(std::map<int64_t, int64_t>{{1, 2}});
  EXPECT_EQ(scheduler->get_accumulate_grad_batches(0), 1);
  EXPECT_EQ(scheduler->get_accumulate_grad_batches(1), 2);
  EXPECT_EQ(scheduler->get_accumulate_grad_batches(7), 2);
  EXPECT_TRUE(scheduler->going_to_accumulate_grad_batches());
  auto losses = std::make_shared<Losses>();
  TinyModel model;
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  Trainer trainer(quiet({.max_epochs = 2, .callbacks = {scheduler, losses}}));
  trainer.fit(model, data);
  EXPECT_EQ(trainer.global_step(), 6);
  EXPECT_EQ(trainer.accumulate_grad_batches(), 2);
  ASSERT_EQ(losses->backward.size(), 8u);
  for (size_t i = 0; i < 8; ++i)
    EXPECT_FLOAT_EQ(losses->backward[i], model.train_losses[i] / (i < 4 ? 1.0f : 2.0f)) << i;

  using Scheduling = std::map<int64_t, int64_t>;
  EXPECT_THROW_MSG(GradientAccumulationScheduler(Scheduling{}), "scheduling is empty");
  EXPECT_THROW_MSG(GradientAccumulationScheduler(Scheduling{{-1, 2}}), "epochs must be >= 0");
  EXPECT_THROW_MSG(GradientAccumulationScheduler(Scheduling{{2, 0}}), "factor of epoch 2",
                   ">= 1, got 0");
  TinyModel other;
  Trainer both(quiet({.max_epochs = 1, .accumulate_grad_batches = 2, .callbacks = {scheduler}}));
  EXPECT_THROW_MSG(both.fit(other, data), "accumulate_grad_batches = 2 as well");
  struct Manual : TinyModel {
    Manual() { automatic_optimization = false; }
  } manual;
  Trainer manual_trainer(quiet({.max_epochs = 1, .callbacks = {scheduler}}));
  EXPECT_THROW_MSG(manual_trainer.fit(manual, data), "not supported for manual optimization");
}

// OnExceptionCheckpoint: a crash before step 6 leaves the run's state at step 5 in
// <dir>/on_exception.ckpt, which a new fit resumes from to the end; a stage that ends normally
// removes the file.
TEST(CallbackOnExceptionCheckpoint, SavesWhereTheRunFailedAndGoesWhenOneSucceeds) {
  TempDir dir("on_exception");
  const std::string path = dir.str("ckpts/on_exception.ckpt");
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  TinyModel model;
  Trainer trainer(
      quiet({.max_epochs = 3,
             .callbacks = {OnExceptionCheckpoint(dir.str("ckpts")), testing::CrashAfterStep(5)}}));
  EXPECT_THROW_MSG(trainer.fit(model, data), "simulated crash");
  ASSERT_TRUE(std::filesystem::exists(path));
  State ckpt = io::load_checkpoint(path);
  EXPECT_EQ(ckpt.group("trainer").get_int("global_step"), 5);
  EXPECT_EQ(ckpt.group("state_dict").tensor("fc1.weight").to_vector<float>(),
            model.fc1.weight.to_vector<float>());

  TinyModel resumed;
  Trainer again(quiet({.max_epochs = 3, .callbacks = {OnExceptionCheckpoint(dir.str("ckpts"))}}));
  again.fit(resumed, data, path);
  EXPECT_EQ(again.global_step(), 12);
  EXPECT_FALSE(std::filesystem::exists(path));
  EXPECT_THROW_MSG(OnExceptionCheckpoint(dir.str(), "a/b"), "must be a plain file name");
}

}  // namespace
}  // namespace lumen
