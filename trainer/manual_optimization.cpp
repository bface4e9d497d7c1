// Manual optimization, as Lightning's _ManualOptimization: with automatic_optimization = false
// the training step calls manual_backward and LightningOptimizer::step itself, and the
// Trainer only adds what its precision and strategy need around them:
//   manual_backward(loss):  on_before_backward; backward of loss [16-mixed: loss * S]
//                           [DDP: gradients averaged in buckets]; on_after_backward
//   optimizer.step():       [16-mixed: unscale]; on_before_optimizer_step; step
//                           [16-mixed: unless a gradient is inf/NaN]; global_step++
// Under 16-mixed the scale S is adjusted once for the steps taken on one backward's gradients,
// as torch.amp wants (scaler.step(a); scaler.step(b); scaler.update()): the adjustment waits
// until the next manual_backward, the end of the training step, a checkpoint or a read of the
// scaler. (Lightning adjusts it after every step, which unscales a second optimizer's
// gradients of the same backward by a scale they were not computed with.)
#include <algorithm>

#include "autograd/autocast_mode.h"
#include "nn/optim/clip_grad.h"
#include "tensor/error.h"
#include "trainer/trainer_loop.h"

namespace lumen {

void Trainer::check_manual_optimization(const char* what) const {
  const Loop& L = *loop_;
  LUMEN_CHECK(L.training && L.model != nullptr, what,
              " works only in the training part of Trainer.fit (training_step and the hooks it "
              "runs), under manual optimization");
  LUMEN_CHECK(!L.model->automatic_optimization, what, ": ", L.model->type_name(),
              " uses automatic optimization, where the Trainer runs the backward and steps the "
              "optimizer itself; set automatic_optimization = false in its constructor to do "
              "them in training_step");
}

void Trainer::flush_scaler_update() const {
  Loop& L = *loop_;
  if (L.scaler && L.scaler->update_due()) L.scaler->update();
}

void Trainer::manual_backward(const Tensor& loss) {
  check_manual_optimization("manual_backward");
  LUMEN_CHECK(loss.defined(), "manual_backward: the loss is an undefined tensor");
  LUMEN_CHECK(loss.numel() == 1, "manual_backward: the loss must be a scalar, got shape ",
              ShapeStr{loss.shape()});
  LUMEN_CHECK(loss.requires_grad(),
              "manual_backward: the loss does not depend on any parameter that requires grad");
  flush_scaler_update();
  backward(loss, true);
  loop_->manual_backward_ran = true;
}

bool Trainer::manual_optimizer_step(optim::Optimizer& optimizer) {
  check_manual_optimization("LightningOptimizer.step");
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  LUMEN_CHECK(std::any_of(L.optimizers.begin(), L.optimizers.end(),
                          [&](const auto& o) { return o.get() == &optimizer; }),
              "LightningOptimizer.step: the optimizer is not one of this fit's (a "
              "LightningOptimizer kept from an earlier fit?); take them from optimizers()");
  // A loss.backward() in place of manual_backward would step on unscaled (16-mixed) or
  // unaveraged (DDP) gradients without a word.
  LUMEN_CHECK(!(L.scaler || L.buckets) || L.manual_backward_ran,
              "LightningOptimizer.step: no manual_backward ran in this training_step; under ",
              L.scaler ? "16-mixed the loss must be scaled" : "DDP the gradients must be averaged",
              ", so call manual_backward(loss), not loss.backward()");
  // The step runs on f32 master weights whatever autocast the training step is under.
  AutocastGuard no_autocast(AutocastMode::dtype(), false);
  if (L.scaler && !L.scaler->unscaled(optimizer)) L.scaler->unscale_(optimizer);
  call_callbacks("on_before_optimizer_step",
                 [&](Callback& cb) { cb.on_before_optimizer_step(*this, model, optimizer); });
  call_module("on_before_optimizer_step", [&] { model.on_before_optimizer_step(optimizer); });
  bool stepped = true;
  if (L.scaler) {
    stepped = L.scaler->step(optimizer);  // the scale is adjusted when due (flush_scaler_update)
  } else {
    optimizer.step();
  }
  ++L.global_step;
  return stepped;
}

// Lightning's clip_gradients, shared by the automatic loop (gradient_clip_val) and the
// module's own calls: over the optimizer's parameters, unscaled first under 16-mixed.
void Trainer::clip_optimizer_gradients(optim::Optimizer& optimizer, double value,
                                       const std::string& algorithm) {
  LUMEN_CHECK(algorithm == "norm" || algorithm == "value",
              "clip_gradients: gradient_clip_algorithm must be \"norm\" or \"value\", got \"",
              algorithm, "\"");
  LUMEN_CHECK(value >= 0.0, "clip_gradients: gradient_clip_val must be >= 0, got ", value);
  if (value == 0.0) return;
  Loop& L = *loop_;
  AutocastGuard no_autocast(AutocastMode::dtype(), false);
  // Clipped without a step, the inf check still makes an update due, so the next backward's
  // gradients do not pass for unscaled.
  if (L.scaler && !L.scaler->unscaled(optimizer)) L.scaler->unscale_(optimizer);
  const std::vector<Tensor> params = optimizer.parameters();
  if (algorithm == "norm")
    optim::clip_grad_norm_(params, value);
  else
    optim::clip_grad_value_(params, value);
}

LightningOptimizer::LightningOptimizer(Trainer& trainer,
                                       std::shared_ptr<optim::Optimizer> optimizer)
    : trainer_(trainer.loop_->attachment), optimizer_(std::move(optimizer)) {}

bool LightningOptimizer::step() {
  std::shared_ptr<Trainer* const> trainer = trainer_.lock();
  LUMEN_CHECK(trainer != nullptr,
              "LightningOptimizer.step: the Trainer it came from is gone; take the optimizers "
              "from optimizers() inside the training step of a running fit");
  return (*trainer)->manual_optimizer_step(*optimizer_);
}

}  // namespace lumen
