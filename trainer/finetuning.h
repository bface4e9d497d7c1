#pragma once
// BaseFinetuning and BackboneFinetuning, as Lightning's (lightning.pytorch.callbacks.finetuning):
// freeze part of a model before training and unfreeze it later, each part joining the optimizer
// as a parameter group of its own with its own learning rate.
//
// A subclass of BaseFinetuning says what to freeze (freeze_before_training, called at setup)
// and what to do at each epoch's start (finetune_function), with the helpers below:
//
//   struct UnfreezeEncoderAt5 : BaseFinetuning {
//     void freeze_before_training(LightningModule& m) override {
//       freeze(static_cast<MyModel&>(m).encoder);
//     }
//     void finetune_function(LightningModule& m, int64_t epoch, optim::Optimizer& opt) override {
//       if (epoch == 5) unfreeze_and_add_param_group(static_cast<MyModel&>(m).encoder, opt);
//     }
//   };
//
// configure_optimizers may pass every parameter or only the trainable ones (Lightning's advice,
// `filter(lambda p: p.requires_grad, ...)`); parameters already in the optimizer are not added
// again (with a warning), so they keep the group they are in.
//
// Resuming: the callback's state records every parameter group the fine-tuning made, by
// parameter name, and a resumed fit rebuilds them before the optimizer's state is loaded.
// Choices where Lightning does something else:
// - The state also names the parameters that were trainable (and the BatchNorms that were
//   frozen) when the checkpoint's epoch started, and a resumed fit sets them so; Lightning
//   rebuilds the groups but leaves the parameters as freeze_before_training left them.
// - A parameter counts as "already in the optimizer" when it is the same tensor; Lightning
//   compares values (torch.equal), so two parameters that hold equal values count as one.
// Under DDP the gradient buckets follow the trainable parameters: the Trainer rebuilds them at
// an epoch's start when the set changed (PyTorch's DDP keeps the parameters that required grad
// when it was built, and never synchronises a backbone unfrozen later).
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "nn/module.h"
#include "trainer/callback.h"

namespace lumen {

// One module or several: what the helpers take (Lightning's Union[Module, Iterable[Module]]).
struct FinetuningModules {
  std::vector<nn::Module*> modules;
  FinetuningModules(nn::Module& m) : modules{&m} {}  // NOLINT: implicit on purpose
  FinetuningModules(std::initializer_list<nn::Module*> ms) : modules(ms) {}
  FinetuningModules(std::vector<nn::Module*> ms) : modules(std::move(ms)) {}  // NOLINT
};

class BaseFinetuning : public Callback {
 public:
  std::string state_key() const override { return "BaseFinetuning"; }

  // The modules whose own parameters make up the given ones: every leaf, and every parent
  // that holds parameters itself; each once, however often it is reached.
  static std::vector<nn::Module*> flatten_modules(const FinetuningModules& modules);
  // Their parameters whose requires_grad equals `requires_grad`, without BatchNorms' unless
  // train_bn; a parameter shared by two modules once.
  static std::vector<Tensor> filter_params(const FinetuningModules& modules, bool train_bn = true,
                                           bool requires_grad = true);
  // Every parameter requires grad, every BatchNorm tracks running statistics.
  static void make_trainable(const FinetuningModules& modules);
  // One module's own parameters stop requiring grad; a BatchNorm stops updating its
  // running statistics.
  static void freeze_module(nn::Module& module);
  // freeze_module on every module of flatten_modules, except BatchNorms when train_bn (those
  // are made trainable).
  static void freeze(const FinetuningModules& modules, bool train_bn = true);
  // The parameters not yet in any of the optimizer's groups (a warning names how many were).
  static std::vector<Tensor> filter_on_optimizer(const optim::Optimizer& optimizer,
                                                 std::vector<Tensor> params);
  // Makes the modules trainable and adds their parameters that are not in the optimizer yet as
  // a new group, with learning rate `lr`, or the first group's lr / initial_denom_lr.
  static void unfreeze_and_add_param_group(const FinetuningModules& modules,
                                           optim::Optimizer& optimizer,
                                           std::optional<double> lr = std::nullopt,
                                           double initial_denom_lr = 10.0, bool train_bn = true);

  virtual void freeze_before_training(LightningModule& module) = 0;
  // Called at the start of every training epoch, for each optimizer.
  virtual void finetune_function(LightningModule& module, int64_t epoch,
                                 optim::Optimizer& optimizer) = 0;

  void setup(Trainer& trainer, LightningModule& module, const std::string& stage) override;
  void on_fit_start(Trainer& trainer, LightningModule& module) override;
  void on_train_epoch_start(Trainer& trainer, LightningModule& module) override;
  // A fit that fails (or ends) forgets a checkpoint's groups it had not applied yet.
  void on_exception(Trainer& trainer, LightningModule& module, const std::exception& e) override;
  void teardown(Trainer& trainer, LightningModule& module, const std::string& stage) override;
  // Group "internal_optimizer_metadata": per optimizer ("0", ...), per group ("0", ...) the
  // group's options as attrs and attr "params", its parameters' names joined by '\n'; attrs
  // "trainable" and "frozen_batch_norms", names joined the same way.
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 protected:
  // A parameter group by the names of its parameters.
  struct GroupRecord {
    std::vector<std::string> params;
    std::map<std::string, double> options;
  };

 private:
  void store(const LightningModule& module, size_t optimizer_index, size_t groups_before,
             const optim::Optimizer& optimizer);

  std::map<size_t, std::vector<GroupRecord>> metadata_;
  bool restarting_ = false;
  // At the last epoch start: the parameters that required grad and the BatchNorms that did not
  // track statistics, by name.
  bool recorded_ = false;
  std::vector<std::string> trainable_, frozen_batch_norms_;
};

struct BackboneFinetuningOptions {
  int64_t unfreeze_backbone_at_epoch = 10;
  // The backbone's lr of epoch e + 1 is lambda_func(e + 1) times that of epoch e.
  std::function<double(int64_t)> lambda_func = [](int64_t) { return 2.0; };
  // The backbone's first lr: backbone_initial_lr, or the first group's lr times this ratio.
  double backbone_initial_ratio_lr = 0.1;
  std::optional<double> backbone_initial_lr = std::nullopt;
  // The backbone's lr never exceeds the first group's.
  bool should_align = true;
  double initial_denom_lr = 10.0;
  // Whether the backbone's BatchNorms join its group at the unfreezing. Either way they are
  // not frozen before (Lightning's freeze_before_training freezes with train_bn = true).
  bool train_bn = true;
  bool verbose = false;  // print both learning rates at each epoch from the unfreezing on
  int rounding = 12;     // decimals they are rounded to
};

// Lightning's BackboneFinetuning: the module's child module named "backbone" (Lightning's
// `backbone` attribute) is frozen until epoch unfreeze_backbone_at_epoch, then joins the
// optimizer with lr = backbone_initial_lr (or ratio times the first group's lr), which then
// grows by lambda_func each epoch, capped at the first group's lr when should_align. When the
// optimizer holds the backbone already (configure_optimizers passed every parameter) no group is
// added and no learning rate changed, with a warning (Lightning then rewrites the last group's
// lr, which is the head's).
class BackboneFinetuning : public BaseFinetuning {
 public:
  explicit BackboneFinetuning(BackboneFinetuningOptions options = {});
  std::string state_key() const override { return "BackboneFinetuning"; }

  void freeze_before_training(LightningModule& module) override;
  void finetune_function(LightningModule& module, int64_t epoch,
                         optim::Optimizer& optimizer) override;
  State state_dict() const override;  // + attrs previous_backbone_lr, own_group
  void load_state_dict(const State& state) override;

  // The module's "backbone" child, or an error saying that the callback needs one.
  static nn::Module& backbone_of(LightningModule& module);

 private:
  BackboneFinetuningOptions options_;
  std::optional<double> previous_backbone_lr_;
  bool own_group_ = false;  // the unfreezing added the backbone's group (the last one)
};

}  // namespace lumen
