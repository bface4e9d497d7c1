#include "trainer/lightning_module.h"

#include <algorithm>

#include "tensor/error.h"
#include "trainer/trainer.h"

namespace lumen {

Device LightningModule::device() const {
  const std::vector<Tensor> params = parameters();
  if (!params.empty()) return params.front().device();
  Trainer* attached = trainer();
  return attached ? attached->device() : Device::cpu();
}

Tensor LightningModule::predict_step(const Batch& batch, int64_t batch_idx) {
  (void)batch;
  (void)batch_idx;
  detail::throw_error("Trainer.predict: ", type_name(),
                      " does not override predict_step(batch, batch_idx)");
}

void LightningModule::log(const std::string& name, const Tensor& value, LogOptions options) {
  LUMEN_CHECK(value.defined(), "log('", name, "'): the value is an undefined tensor");
  LUMEN_CHECK(value.numel() == 1, "log('", name,
              "'): expected a scalar tensor (one element), got shape ", ShapeStr{value.shape()},
              "; reduce it first, e.g. .mean()");
  Trainer* attached = trainer();
  LUMEN_CHECK(attached != nullptr, "log('", name,
              "'): this module is not attached to a Trainer; log() works only inside the hooks "
              "that Trainer.fit/validate/test call");
  attached->log_metric(name, value, options);
}

void LightningModule::log(const std::string& name, double value, LogOptions options) {
  Trainer* attached = trainer();
  LUMEN_CHECK(attached != nullptr, "log('", name,
              "'): this module is not attached to a Trainer; log() works only inside the hooks "
              "that Trainer.fit/validate/test call");
  attached->log_metric(name, value, options);
}

Trainer* LightningModule::trainer() const {
  std::shared_ptr<Trainer* const> link = trainer_link_.lock();
  return link ? *link : nullptr;
}

namespace {

// The Trainer of a running fit, or a clear error naming the call.
Trainer& attached_trainer(Trainer* trainer, const char* what) {
  LUMEN_CHECK(trainer != nullptr, what,
              ": this module is not attached to a Trainer; it works only in the hooks that "
              "Trainer.fit calls");
  return *trainer;
}

}  // namespace

std::vector<LightningOptimizer> LightningModule::optimizers() const {
  Trainer& trainer = attached_trainer(this->trainer(), "optimizers()");
  std::vector<LightningOptimizer> out;
  for (const auto& opt : trainer.optimizers()) out.emplace_back(trainer, opt);
  LUMEN_CHECK(!out.empty(),
              "optimizers(): the Trainer has no optimizers yet; they come from "
              "configure_optimizers when fit starts");
  return out;
}

void LightningModule::check_optimizer_count(size_t have, size_t want) const {
  LUMEN_CHECK(have == want, "optimizers<", want, ">(): configure_optimizers returned ", have,
              " optimizer(s)");
}

std::vector<std::shared_ptr<optim::LRScheduler>> LightningModule::lr_schedulers() const {
  Trainer& trainer = attached_trainer(this->trainer(), "lr_schedulers()");
  std::vector<std::shared_ptr<optim::LRScheduler>> out;
  for (const SchedulerConfig& config : trainer.lr_scheduler_configs())
    out.push_back(config.scheduler);
  return out;
}

void LightningModule::manual_backward(const Tensor& loss) {
  attached_trainer(trainer(), "manual_backward").manual_backward(loss);
}

void LightningModule::clip_gradients(const LightningOptimizer& optimizer, double gradient_clip_val,
                                     const std::string& gradient_clip_algorithm) {
  attached_trainer(trainer(), "clip_gradients")
      .clip_optimizer_gradients(optimizer.optimizer(), gradient_clip_val, gradient_clip_algorithm);
}

// As Lightning: every optimizer's parameters stop requiring gradients, then this optimizer's
// get their own setting back (a frozen parameter stays frozen).
void LightningModule::toggle_optimizer(const LightningOptimizer& optimizer) {
  Trainer& trainer = attached_trainer(this->trainer(), "toggle_optimizer");
  LUMEN_CHECK(requires_grad_before_toggle_.empty(),
              "toggle_optimizer: another optimizer is toggled; call untoggle_optimizer first");
  auto remembered = [&](const Tensor& p) {
    return std::find_if(requires_grad_before_toggle_.begin(), requires_grad_before_toggle_.end(),
                        [&](const auto& entry) { return entry.first.impl() == p.impl(); });
  };
  for (const auto& opt : trainer.optimizers())
    for (const optim::ParamGroup& g : opt->param_groups())
      for (const Tensor& p : g.params)
        if (remembered(p) == requires_grad_before_toggle_.end())
          requires_grad_before_toggle_.emplace_back(p, p.requires_grad());
  for (auto& [p, before] : requires_grad_before_toggle_) p.requires_grad_(false);
  for (const optim::ParamGroup& g : optimizer.param_groups())
    for (const Tensor& p : g.params) {
      auto it = remembered(p);
      if (it != requires_grad_before_toggle_.end()) it->first.requires_grad_(it->second);
    }
}

void LightningModule::untoggle_all() {
  for (auto& [p, before] : requires_grad_before_toggle_) p.requires_grad_(before);
  requires_grad_before_toggle_.clear();
}

// As Lightning: the other optimizers' parameters get their setting from before the toggle back;
// this one's stay as they are now.
void LightningModule::untoggle_optimizer(const LightningOptimizer& optimizer) {
  auto in_optimizer = [&](const Tensor& p) {
    for (const optim::ParamGroup& g : optimizer.param_groups())
      for (const Tensor& q : g.params)
        if (q.impl() == p.impl()) return true;
    return false;
  };
  for (auto& [p, before] : requires_grad_before_toggle_)
    if (!in_optimizer(p)) p.requires_grad_(before);
  requires_grad_before_toggle_.clear();
}

}  // namespace lumen
