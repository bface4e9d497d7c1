#include "trainer/finetuning.h"

#include <cmath>
#include <cstdio>
#include <set>
#include <sstream>

#include "nn/batch_norm.h"
#include "nn/repr_format.h"
#include "tensor/error.h"
#include "trainer/lightning_module.h"
#include "trainer/trainer.h"

namespace lumen {

namespace {

nn::BatchNorm* as_batch_norm(nn::Module* m) { return dynamic_cast<nn::BatchNorm*>(m); }

std::vector<Tensor> own_parameters(const nn::Module& m) { return m.parameters(false); }

std::string join_lines(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& n : names) {
    if (!out.empty()) out += '\n';
    out += n;
  }
  return out;
}

// A group name of the metadata ("0", "1", ...) as an index.
size_t parse_index(const std::string& key, const char* what) {
  const bool digits =
      !key.empty() && key.size() < 10 && key.find_first_not_of("0123456789") == std::string::npos;
  LUMEN_CHECK(digits, "BaseFinetuning.load_state_dict: ", what, " '", key,
              "' is not an index (expected 0, 1, ...)");
  return std::stoul(key);
}

// Python's round(x, digits) as printed by Lightning's verbose message.
std::string rounded(double x, int digits) {
  const double scale = std::pow(10.0, digits);
  return nn::python_float(std::round(x * scale) / scale);
}

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

}  // namespace

std::vector<nn::Module*> BaseFinetuning::flatten_modules(const FinetuningModules& modules) {
  std::vector<nn::Module*> out;
  std::set<const nn::Module*> seen;
  for (nn::Module* root : modules.modules) {
    LUMEN_CHECK(root != nullptr, "BaseFinetuning: a module to flatten is null");
    for (const auto& [name, m] : root->named_modules())
      if ((m->named_children().empty() || !own_parameters(*m).empty()) && seen.insert(m).second)
        out.push_back(m);
  }
  return out;
}

std::vector<Tensor> BaseFinetuning::filter_params(const FinetuningModules& modules, bool train_bn,
                                                  bool requires_grad) {
  std::vector<Tensor> out;
  std::set<const TensorImpl*> seen;
  for (nn::Module* m : flatten_modules(modules)) {
    if (as_batch_norm(m) && !train_bn) continue;
    for (const Tensor& p : own_parameters(*m))
      if (p.requires_grad() == requires_grad && seen.insert(p.impl()).second) out.push_back(p);
  }
  return out;
}

void BaseFinetuning::make_trainable(const FinetuningModules& modules) {
  for (nn::Module* m : flatten_modules(modules)) {
    if (nn::BatchNorm* bn = as_batch_norm(m)) bn->track_running_stats = true;
    for (Tensor p : own_parameters(*m)) p.requires_grad_(true);
  }
}

void BaseFinetuning::freeze_module(nn::Module& module) {
  if (nn::BatchNorm* bn = as_batch_norm(&module)) bn->track_running_stats = false;
  for (Tensor p : own_parameters(module)) p.requires_grad_(false);
}

void BaseFinetuning::freeze(const FinetuningModules& modules, bool train_bn) {
  for (nn::Module* m : flatten_modules(modules)) {
    if (as_batch_norm(m) && train_bn)
      make_trainable(*m);
    else
      freeze_module(*m);
  }
}

std::vector<Tensor> BaseFinetuning::filter_on_optimizer(const optim::Optimizer& optimizer,
                                                        std::vector<Tensor> params) {
  std::set<const TensorImpl*> present;
  for (const Tensor& p : optimizer.parameters()) present.insert(p.impl());
  std::vector<Tensor> out;
  for (Tensor& p : params)
    if (!present.count(p.impl())) out.push_back(std::move(p));
  if (out.size() != params.size())
    std::fprintf(stderr,
                 "lumen: %zu of the parameters to unfreeze are in a group of the %s optimizer "
                 "already and stay there; give configure_optimizers only the trainable ones "
                 "(those whose requires_grad() is true) to have them join a group of their own\n",
                 params.size() - out.size(), optimizer.type_name().c_str());
  return out;
}

void BaseFinetuning::unfreeze_and_add_param_group(const FinetuningModules& modules,
                                                  optim::Optimizer& optimizer,
                                                  std::optional<double> lr, double initial_denom_lr,
                                                  bool train_bn) {
  make_trainable(modules);
  const double params_lr = lr ? *lr : optimizer.param_groups().front().lr() / initial_denom_lr;
  std::vector<Tensor> params =
      filter_on_optimizer(optimizer, filter_params(modules, train_bn, /*requires_grad=*/true));
  if (!params.empty()) optimizer.add_param_group({std::move(params), {{"lr", params_lr}}});
}

// A fit starts without the groups of an earlier one (a checkpoint's come after, through
// load_state_dict).
void BaseFinetuning::setup(Trainer&, LightningModule& module, const std::string& stage) {
  if (stage == "fit") {
    metadata_.clear();
    recorded_ = restarting_ = false;
  }
  freeze_before_training(module);
}

void BaseFinetuning::on_exception(Trainer&, LightningModule&, const std::exception&) {
  restarting_ = false;
}

void BaseFinetuning::teardown(Trainer&, LightningModule&, const std::string&) {
  restarting_ = false;
}

// Lightning's _store: the groups of the first epoch, then each group added since.
void BaseFinetuning::store(const LightningModule& module, size_t optimizer_index,
                           size_t groups_before, const optim::Optimizer& optimizer) {
  std::map<const TensorImpl*, std::string> names;
  for (const auto& [name, p] : module.named_parameters()) names.emplace(p.impl(), name);
  auto record = [&](const optim::ParamGroup& g, size_t gi) {
    GroupRecord r;
    r.options = g.options;
    for (size_t pi = 0; pi < g.params.size(); ++pi) {
      const Tensor& p = g.params[pi];
      auto it = names.find(p.impl());
      LUMEN_CHECK(it != names.end(), state_key(), ": parameter ", pi, " of group ", gi,
                  " of optimizer ", optimizer_index, " (shape ", ShapeStr{p.shape()},
                  ") is not a parameter of the module, so a resumed fit could not rebuild its "
                  "group");
      r.params.push_back(it->second);
    }
    return r;
  };
  const auto& groups = optimizer.param_groups();
  auto [it, fresh] = metadata_.try_emplace(optimizer_index);
  const size_t from = fresh ? 0 : groups_before;
  for (size_t g = from; g < groups.size(); ++g) it->second.push_back(record(groups[g], g));
}

void BaseFinetuning::on_train_epoch_start(Trainer& trainer, LightningModule& module) {
  const auto& optimizers = trainer.optimizers();
  for (size_t i = 0; i < optimizers.size(); ++i) {
    const size_t before = optimizers[i]->param_groups().size();
    finetune_function(module, trainer.current_epoch(), *optimizers[i]);
    store(module, i, before, *optimizers[i]);
  }
  // What is frozen now, for a fit resumed from a checkpoint of this epoch.
  trainable_.clear();
  frozen_batch_norms_.clear();
  for (const auto& [name, p] : module.named_parameters())
    if (p.requires_grad()) trainable_.push_back(name);
  for (const auto& [name, m] : module.named_modules())
    if (nn::BatchNorm* bn = as_batch_norm(m); bn && !bn->track_running_stats)
      frozen_batch_norms_.push_back(name);
  recorded_ = true;
}

// A resumed fit: the optimizers get the groups the fine-tuning had made (the Trainer then
// loads their state into them), and the parameters and BatchNorms are frozen or trainable as
// they were when the checkpoint's epoch started.
void BaseFinetuning::on_fit_start(Trainer& trainer, LightningModule& module) {
  if (!restarting_) return;
  restarting_ = false;
  std::map<std::string, Tensor> by_name;
  for (const auto& [name, p] : module.named_parameters()) by_name.emplace(name, p);
  const auto& optimizers = trainer.optimizers();
  for (const auto& [index, records] : metadata_) {
    LUMEN_CHECK(index < optimizers.size(), state_key(), ": the checkpoint has parameter groups of ",
                "optimizer ", index, ", configure_optimizers returned ", optimizers.size());
    std::vector<optim::ParamGroup> groups;
    for (const GroupRecord& r : records) {
      optim::ParamGroup g{{}, r.options};
      for (const std::string& name : r.params) {
        auto it = by_name.find(name);
        LUMEN_CHECK(it != by_name.end(), state_key(), ": the checkpoint's parameter group holds '",
                    name, "', which the module does not have");
        g.params.push_back(it->second);
      }
      groups.push_back(std::move(g));
    }
    optimizers[index]->param_groups() = std::move(groups);
  }
  if (!recorded_) return;
  const std::set<std::string> trainable(trainable_.begin(), trainable_.end());
  const std::set<std::string> frozen(frozen_batch_norms_.begin(), frozen_batch_norms_.end());
  for (auto& [name, p] : module.named_parameters()) p.requires_grad_(trainable.count(name) != 0);
  for (const auto& [name, m] : module.named_modules())
    if (nn::BatchNorm* bn = as_batch_norm(m)) bn->track_running_stats = !frozen.count(name);
}

State BaseFinetuning::state_dict() const {
  State s;
  State& meta = s.groups["internal_optimizer_metadata"];
  for (const auto& [index, records] : metadata_) {
    State& opt = meta.groups[std::to_string(index)];
    for (size_t g = 0; g < records.size(); ++g) {
      State& group = opt.groups[std::to_string(g)];
      for (const auto& [key, value] : records[g].options) group.attrs[key] = value;
      group.attrs["params"] = join_lines(records[g].params);
    }
  }
  if (recorded_) {
    s.attrs["trainable"] = join_lines(trainable_);
    s.attrs["frozen_batch_norms"] = join_lines(frozen_batch_norms_);
  }
  return s;
}

void BaseFinetuning::load_state_dict(const State& state) {
  std::map<size_t, std::vector<GroupRecord>> loaded;
  const State& meta = state.group("internal_optimizer_metadata");
  for (const auto& [key, opt] : meta.groups) {
    std::vector<GroupRecord>& records = loaded[parse_index(key, "optimizer")];
    records.resize(opt.groups.size());
    for (const auto& [gkey, group] : opt.groups) {
      const size_t g = parse_index(gkey, "parameter group");
      LUMEN_CHECK(g < records.size(), state_key(), ": parameter group '", gkey, "' of optimizer ",
                  key, " is out of order in the checkpoint");
      for (const auto& [name, value] : group.attrs)
        if (name != "params") records[g].options[name] = group.get_double(name);
      records[g].params = split_lines(group.get_string("params"));
    }
  }
  metadata_ = std::move(loaded);
  recorded_ = state.has_attr("trainable");
  trainable_ = recorded_ ? split_lines(state.get_string("trainable")) : std::vector<std::string>{};
  frozen_batch_norms_ =
      recorded_ ? split_lines(state.get_string("frozen_batch_norms")) : std::vector<std::string>{};
  restarting_ = true;
}

BackboneFinetuning::BackboneFinetuning(BackboneFinetuningOptions options)
    : options_(std::move(options)) {
  LUMEN_CHECK(options_.unfreeze_backbone_at_epoch >= 0,
              "BackboneFinetuning: unfreeze_backbone_at_epoch must be >= 0, got ",
              options_.unfreeze_backbone_at_epoch);
  LUMEN_CHECK(options_.lambda_func != nullptr, "BackboneFinetuning: lambda_func is empty");
  LUMEN_CHECK(options_.initial_denom_lr > 0,
              "BackboneFinetuning: initial_denom_lr must be > 0, got ", options_.initial_denom_lr);
}

nn::Module& BackboneFinetuning::backbone_of(LightningModule& module) {
  nn::Module* backbone = nullptr;
  for (const auto& [name, child] : module.named_children())
    if (name == "backbone") backbone = child;
  LUMEN_CHECK(backbone != nullptr,
              "BackboneFinetuning: the LightningModule should have a child module registered as "
              "\"backbone\" (register_module(\"backbone\", ...)); this one has none");
  return *backbone;
}

void BackboneFinetuning::freeze_before_training(LightningModule& module) {
  previous_backbone_lr_.reset();
  own_group_ = false;
  freeze(backbone_of(module));
}

void BackboneFinetuning::finetune_function(LightningModule& module, int64_t epoch,
                                           optim::Optimizer& optimizer) {
  const int64_t at = options_.unfreeze_backbone_at_epoch;
  if (epoch < at) return;
  const double current_lr = optimizer.param_groups().front().lr();
  double backbone_lr;
  if (epoch == at) {
    backbone_lr =
        options_.backbone_initial_lr.value_or(current_lr * options_.backbone_initial_ratio_lr);
    const size_t before = optimizer.param_groups().size();
    unfreeze_and_add_param_group(backbone_of(module), optimizer, backbone_lr,
                                 options_.initial_denom_lr, options_.train_bn);
    own_group_ = optimizer.param_groups().size() > before;
    if (!own_group_)
      std::fprintf(stderr,
                   "lumen: BackboneFinetuning: the backbone has no group of its own (the optimizer "
                   "held its parameters already), so its learning rate is not scheduled\n");
  } else {
    if (!own_group_) return;
    LUMEN_CHECK(previous_backbone_lr_.has_value(), "BackboneFinetuning: epoch ", epoch,
                " is past the unfreezing epoch ", at,
                ", but the backbone was never unfrozen (resumed from a checkpoint without "
                "this callback's state?)");
    backbone_lr = options_.lambda_func(epoch + 1) * *previous_backbone_lr_;
    if (options_.should_align && backbone_lr > current_lr) backbone_lr = current_lr;
    optimizer.param_groups().back().options["lr"] = backbone_lr;
  }
  previous_backbone_lr_ = backbone_lr;
  if (options_.verbose)
    std::fprintf(stderr, "lumen: current lr: %s, backbone lr: %s\n",
                 rounded(current_lr, options_.rounding).c_str(),
                 rounded(backbone_lr, options_.rounding).c_str());
}

State BackboneFinetuning::state_dict() const {
  State s = BaseFinetuning::state_dict();
  if (previous_backbone_lr_) s.attrs["previous_backbone_lr"] = *previous_backbone_lr_;
  s.attrs["own_group"] = static_cast<int64_t>(own_group_);
  return s;
}

void BackboneFinetuning::load_state_dict(const State& state) {
  BaseFinetuning::load_state_dict(state);
  previous_backbone_lr_.reset();
  if (state.has_attr("previous_backbone_lr"))
    previous_backbone_lr_ = state.get_double("previous_backbone_lr");
  // A state without the flag predates it, when the backbone always had its own group.
  own_group_ = state.has_attr("own_group") ? state.get_int("own_group") != 0
                                           : previous_backbone_lr_.has_value();
}

}  // namespace lumen
