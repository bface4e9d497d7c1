// BaseFinetuning's helpers on a module tree, BackboneFinetuning in fits (when the backbone
// trains, the learning rates it gets, LearningRateMonitor's names) and resuming a fit whose
// optimizer gained a group.
#include <gtest/gtest.h>

#include "op_harness.h"
#include "trainer/finetuning.h"
#include "trainer/learning_rate_monitor.h"
#include "trainer_fixtures.h"

namespace lumen {
namespace {

using testing::BackboneModel;
using testing::parameters_of;
using testing::quiet;
using testing::RecordingLogger;
using testing::SaveAtEpochEnd;
using testing::TempDir;
using testing::TinyData;

std::vector<bool> requires_grad_of(const nn::Module& m) {
  std::vector<bool> out;
  for (const Tensor& p : m.parameters()) out.push_back(p.requires_grad());
  return out;
}

// A parent that holds a parameter of its own besides its children.
struct ScaledBackbone : nn::Module {
  BackboneModel::Backbone inner{true};
  Tensor scale = ones({8});
  ScaledBackbone() {
    register_module("inner", inner);
    register_parameter("scale", scale);
  }
};

TEST(BaseFinetuning, FlattenFreezeFilterAndUnfreeze) {
  ScaledBackbone tree;
  std::vector<nn::Module*> flat = BaseFinetuning::flatten_modules(tree);
  // The parent (own parameter "scale"), the Linear and the BatchNorm; not "inner" (no own
  // parameters, has children).
  ASSERT_EQ(flat.size(), 3u);
  EXPECT_EQ(flat[0], &tree);
  EXPECT_EQ(flat[1], &tree.inner.fc);
  EXPECT_EQ(flat[2], tree.inner.bn.get());
  // A module reached twice counts once.
  EXPECT_EQ(BaseFinetuning::flatten_modules({&tree, &tree.inner.fc}).size(), 3u);

  BaseFinetuning::freeze(tree);  // train_bn: the BatchNorm stays trainable
  // parameters(): scale, fc.weight, fc.bias, bn.weight, bn.bias
  EXPECT_EQ(requires_grad_of(tree), (std::vector<bool>{false, false, false, true, true}));
  EXPECT_TRUE(tree.inner.bn->track_running_stats);
  EXPECT_EQ(BaseFinetuning::filter_params(tree, true, false).size(), 3u);
  EXPECT_EQ(BaseFinetuning::filter_params(tree, false, true).size(), 0u);  // BN left out

  BaseFinetuning::freeze(tree, /*train_bn=*/false);
  EXPECT_EQ(requires_grad_of(tree), (std::vector<bool>(5, false)));
  EXPECT_FALSE(tree.inner.bn->track_running_stats);

  // Unfreezing into an optimizer that already holds fc.weight: the rest form a new group with
  // the first group's lr / initial_denom_lr.
  optim::SGD opt({tree.inner.fc.weight}, {.lr = 0.5});
  BaseFinetuning::unfreeze_and_add_param_group({&tree, &tree.inner}, opt);
  EXPECT_EQ(requires_grad_of(tree), (std::vector<bool>(5, true)));
  EXPECT_TRUE(tree.inner.bn->track_running_stats);
  ASSERT_EQ(opt.param_groups().size(), 2u);
  EXPECT_EQ(opt.param_groups()[1].params.size(), 4u);
  EXPECT_EQ(opt.param_groups()[1].lr(), 0.05);
  // Nothing left to add: no new group.
  BaseFinetuning::unfreeze_and_add_param_group(tree, opt, 0.3);
  EXPECT_EQ(opt.param_groups().size(), 2u);

  ScaledBackbone other;
  BaseFinetuning::freeze({&other.inner.fc, other.inner.bn.get()}, false);
  EXPECT_EQ(requires_grad_of(other), (std::vector<bool>{true, false, false, false, false}));
}

// Records the optimizer's learning rates at every epoch's start (listed after the fine-tuning
// callback) and the backbone's weights at every epoch's end.
struct EpochRecorder : Callback {
  std::vector<std::vector<double>> lrs;
  std::vector<std::vector<float>> backbone;
  std::string state_key() const override { return "EpochRecorder"; }
  void on_train_epoch_start(Trainer& t, LightningModule&) override {
    std::vector<double> row;
    for (const auto& g : t.optimizers().front()->param_groups()) row.push_back(g.lr());
    lrs.push_back(row);
  }
  void on_train_epoch_end(Trainer&, LightningModule& m) override {
    backbone.push_back(static_cast<BackboneModel&>(m).backbone.fc.weight.to_vector<float>());
  }
};

// Unfrozen at epoch 2 with 0.1 x the head's lr 0.1, then x2 an epoch (Lightning's default
// lambda_func): 0.01, 0.02, 0.04.
// The backbone does not move before epoch 2; LearningRateMonitor's history of the single group
// goes on as "/pg1".
TEST(BackboneFinetuningTrainer, UnfreezesAtTheEpochWithTheScheduledRates) {
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  auto recorder = std::make_shared<EpochRecorder>();
  auto logger = std::make_shared<RecordingLogger>();
  auto monitor = std::make_shared<LearningRateMonitor>(
      LearningRateMonitorOptions{.logging_interval = "epoch"});
  seed_everything(21);
  BackboneModel model({.momentum = 0});
  const std::vector<float> initial = model.backbone.fc.weight.to_vector<float>();
  Trainer trainer(quiet(
      {.max_epochs = 5,
       .callbacks = {BackboneFinetuning({.unfreeze_backbone_at_epoch = 2}), recorder, monitor},
       .logger = logger}));
  trainer.fit(model, data);
  ASSERT_EQ(recorder->lrs.size(), 5u);
  EXPECT_EQ(recorder->lrs[0], (std::vector<double>{0.1}));
  EXPECT_EQ(recorder->lrs[1], (std::vector<double>{0.1}));
  EXPECT_NEAR(recorder->lrs[2][1], 0.01, 1e-15);
  EXPECT_NEAR(recorder->lrs[3][1], 0.02, 1e-15);
  EXPECT_NEAR(recorder->lrs[4][1], 0.04, 1e-15);
  EXPECT_EQ(recorder->backbone[0], initial);
  EXPECT_EQ(recorder->backbone[1], initial);
  EXPECT_NE(recorder->backbone[2], initial);
  EXPECT_NE(recorder->backbone[4], recorder->backbone[3]);
  EXPECT_EQ(monitor->lrs().at("lr-SGD/pg1").size(), 5u);
  const std::vector<double>& backbone_lrs = monitor->lrs().at("lr-SGD/pg2");
  ASSERT_EQ(backbone_lrs.size(), 3u);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(backbone_lrs[i], recorder->lrs[i + 2][1]);
  EXPECT_EQ(monitor->lrs().count("lr-SGD"), 0u);

  // should_align: the backbone's lr never exceeds the head's (0.08, then 0.16 capped at 0.1).
  auto aligned = std::make_shared<EpochRecorder>();
  BackboneModel capped({.momentum = 0});
  Trainer capped_trainer(
      quiet({.max_epochs = 3,
             .callbacks = {BackboneFinetuning({.unfreeze_backbone_at_epoch = 1,
                                               .lambda_func = [](int64_t) { return 2.0; },
                                               .backbone_initial_lr = 0.08}),
                           aligned}}));
  capped_trainer.fit(capped, data);
  EXPECT_EQ(aligned->lrs[1], (std::vector<double>{0.1, 0.08}));
  EXPECT_EQ(aligned->lrs[2], (std::vector<double>{0.1, 0.1}));
}

// Stopped after epoch 3 (the backbone unfrozen at 2) and resumed: the optimizer gets its
// second group back before its state (momentum buffers) loads, the backbone trains again, and
// the fit ends with the uninterrupted one's weights, bit for bit. train_bn = false keeps the
// BatchNorm out of the backbone's group (it trains in the head's from the start). With every
// parameter in the optimizer no group is added and no learning rate changes.
TEST(BackboneFinetuningTrainer, ResumesWithTheAddedGroup) {
  TempDir dir("finetuning");
  const std::string path = dir.str("epoch3.ckpt");
  TinyData data({.n_train = 32, .batch_size = 8, .with_val = false});
  BackboneFinetuningOptions options{.unfreeze_backbone_at_epoch = 2, .train_bn = false};
  for (bool all_parameters : {false, true}) {
    seed_everything(22);
    BackboneModel whole({.batch_norm = true, .all_parameters = all_parameters});
    Trainer whole_trainer(quiet({.max_epochs = 6, .callbacks = {BackboneFinetuning(options)}}));
    whole_trainer.fit(whole, data);

    seed_everything(22);
    BackboneModel first({.batch_norm = true, .all_parameters = all_parameters});
    Trainer first_trainer(quiet(
        {.max_epochs = 4, .callbacks = {BackboneFinetuning(options), SaveAtEpochEnd(path, 3)}}));
    first_trainer.fit(first, data);

    BackboneModel resumed({.batch_norm = true, .all_parameters = all_parameters});
    Trainer resumed_trainer(quiet({.max_epochs = 6, .callbacks = {BackboneFinetuning(options)}}));
    resumed_trainer.fit(resumed, data, path);
    EXPECT_EQ(parameters_of(resumed), parameters_of(whole)) << all_parameters;
    EXPECT_EQ(resumed.backbone.bn->running_mean.to_vector<float>(),
              whole.backbone.bn->running_mean.to_vector<float>());
    const auto& groups = resumed_trainer.optimizers().front()->param_groups();
    ASSERT_EQ(groups.size(), all_parameters ? 1u : 2u);
    EXPECT_EQ(groups[0].lr(), 0.1);
    if (!all_parameters) {
      EXPECT_EQ(groups[1].params.size(), 2u);    // fc's weight and bias, not the BatchNorm's
      EXPECT_NEAR(groups[1].lr(), 0.08, 1e-15);  // 0.01 at epoch 2, doubled at 3, 4 and 5
    }
  }
}

TEST(BackboneFinetuningTrainer, Errors) {
  EXPECT_THROW_MSG(BackboneFinetuning({.unfreeze_backbone_at_epoch = -1}),
                   "unfreeze_backbone_at_epoch must be >= 0, got -1");
  EXPECT_THROW_MSG(BackboneFinetuning({.lambda_func = nullptr}), "lambda_func is empty");
  TinyData data({.n_train = 16, .batch_size = 8, .with_val = false});
  testing::TinyModel no_backbone;
  Trainer trainer(quiet({.max_epochs = 1, .callbacks = {BackboneFinetuning()}}));
  EXPECT_THROW_MSG(trainer.fit(no_backbone, data), "child module registered as \"backbone\"");

  // A checkpoint whose metadata names a parameter the module lacks.
  TempDir dir("finetuning_errors");
  const std::string path = dir.str("e0.ckpt");
  BackboneModel model;
  Trainer saver(quiet({.max_epochs = 1,
                       .callbacks = {BackboneFinetuning({.unfreeze_backbone_at_epoch = 0}),
                                     SaveAtEpochEnd(path, 0)}}));
  saver.fit(model, data);
  State ckpt = io::load_checkpoint(path);
  State& group = ckpt.groups["callbacks"]
                     .groups["BackboneFinetuning"]
                     .groups["internal_optimizer_metadata"]
                     .groups["0"]
                     .groups["1"];
  group.attrs["params"] = std::string("backbone.nothing");
  io::save_checkpoint(path, ckpt);
  BackboneModel again;
  Trainer resume(quiet(
      {.max_epochs = 2, .callbacks = {BackboneFinetuning({.unfreeze_backbone_at_epoch = 0})}}));
  EXPECT_THROW_MSG(resume.fit(again, data, path), "holds 'backbone.nothing'",
                   "which the module does not have");
}

}  // namespace
}  // namespace lumen
