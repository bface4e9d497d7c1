#include "trainer/weight_averaging.h"

#include <cstdio>

#include "io/checkpoint.h"
#include "tensor/error.h"
#include "trainer/lightning_module.h"
#include "trainer/trainer.h"

namespace lumen {

WeightAveraging::WeightAveraging(WeightAveragingOptions options) : options_(std::move(options)) {}

bool WeightAveraging::should_update(std::optional<int64_t> step_idx, std::optional<int64_t>) {
  return step_idx.has_value();
}

void WeightAveraging::setup(Trainer&, LightningModule& module, const std::string& stage) {
  // The average belongs to the module of the last fit until another stage starts: a checkpoint
  // written after fit returns still holds it (Lightning's too).
  fitted_ = stage == "fit";
  if (stage != "fit") return;
  average_ = std::make_unique<optim::AveragedModel>(
      module, optim::AveragedModelOptions{.device = options_.device,
                                          .use_buffers = options_.use_buffers,
                                          .avg_fn = options_.avg_fn});
  swapped_ = false;
  latest_update_step_ = 0;
  latest_update_epoch_ = -1;
}

// The module has moved to the Trainer's device by now (setup runs before).
void WeightAveraging::on_fit_start(Trainer& trainer, LightningModule&) {
  if (average_) average_->to(options_.device.value_or(trainer.device()));
}

// Lightning passes the zero-based index of the optimizer step just taken; with
// accumulate_grad_batches = N that is after every N-th batch, and at most once per batch under
// manual optimization.
void WeightAveraging::on_train_batch_end(Trainer& trainer, LightningModule& module, const Tensor&,
                                         const Batch&, int64_t) {
  const int64_t step = trainer.global_step();
  if (average_ && step > latest_update_step_ && should_update(step - 1, std::nullopt)) {
    average_->update_parameters(module);
    latest_update_step_ = step;
  }
}

void WeightAveraging::on_train_epoch_end(Trainer& trainer, LightningModule& module) {
  const int64_t epoch = trainer.current_epoch();
  if (average_ && epoch > latest_update_epoch_ && should_update(std::nullopt, epoch)) {
    average_->update_parameters(module);
    latest_update_epoch_ = epoch;
  }
}

void WeightAveraging::on_train_end(Trainer& trainer, LightningModule& module) {
  if (!average_) return;
  if (average_->n_averaged() > 0) {
    average_->copy_to(module);
  } else if (trainer.is_global_zero()) {
    std::fprintf(stderr,
                 "lumen: %s never updated its average (should_update returned false after every "
                 "step and epoch); the module keeps its trained weights\n",
                 state_key().c_str());
  }
}

void WeightAveraging::on_validation_epoch_start(Trainer& trainer, LightningModule& module) {
  if (average_ && !swapped_ && trainer.stage() == "fit" && average_->n_averaged() > 0) {
    average_->swap(module);
    swapped_ = true;
  }
}

void WeightAveraging::on_validation_epoch_end(Trainer&, LightningModule& module) {
  if (swapped_) {
    average_->swap(module);
    swapped_ = false;
  }
}

void WeightAveraging::on_exception(Trainer& trainer, LightningModule& module,
                                   const std::exception& e) {
  on_validation_epoch_end(trainer, module);
  (void)e;
}

// /state_dict gets the average and /current_model_state the module's own weights. Inside a
// validation epoch (a checkpoint written from a validation hook) the two are swapped: the module
// holds the average and the AveragedModel the module's weights.
void WeightAveraging::on_save_checkpoint(Trainer&, LightningModule&, State& checkpoint) {
  if (!average_ || !fitted_) return;
  State& weights = checkpoint.groups["state_dict"];
  State& current = checkpoint.groups["current_model_state"];
  current = weights;
  const bool averaged = average_->n_averaged() > 0;
  for (const auto& [name, t] : average_->averaged()) {
    if (swapped_)
      current.tensors[name] = t;
    else if (averaged)
      weights.tensors[name] = t;
  }
  checkpoint.groups["averaging_state"].attrs["n_averaged"] = average_->n_averaged();
}

void WeightAveraging::on_load_checkpoint(Trainer& trainer, LightningModule& module,
                                         const State& checkpoint) {
  if (!average_) return;
  if (!checkpoint.has_group("current_model_state") || !checkpoint.has_group("averaging_state")) {
    if (trainer.is_global_zero())
      std::fprintf(stderr,
                   "lumen: the checkpoint was not written with %s; the average starts afresh "
                   "from the loaded weights\n",
                   state_key().c_str());
    return;
  }
  State saved;
  const State& weights = checkpoint.group("state_dict");
  for (const auto& [name, t] : average_->averaged()) {
    LUMEN_CHECK(weights.has_tensor(name), state_key(), ": the checkpoint's /state_dict has no '",
                name, "' to restore the average from");
    saved.tensors[name] = weights.tensor(name);
  }
  saved.attrs["n_averaged"] = checkpoint.group("averaging_state").get_int("n_averaged");
  // The Trainer loaded /state_dict (the average) into the module; its own weights are these.
  // They are checked before the average or they load.
  const State& current = checkpoint.group("current_model_state");
  io::compare_state(state_key() +
                        ": the checkpoint's /current_model_state does not match the "
                        "model",
                    nn::to_state(module.state_dict()), current);
  average_->load_state_dict(saved);
  module.load_state_dict(nn::StateDict(current.tensors.begin(), current.tensors.end()));
}

State WeightAveraging::state_dict() const {
  State s;
  s.attrs["latest_update_step"] = latest_update_step_;
  s.attrs["latest_update_epoch"] = latest_update_epoch_;
  return s;
}

void WeightAveraging::load_state_dict(const State& state) {
  latest_update_step_ = state.get_int("latest_update_step");
  if (state.has_attr("latest_update_epoch"))
    latest_update_epoch_ = state.get_int("latest_update_epoch");
}

EMAWeightAveraging::EMAWeightAveraging(EMAWeightAveragingOptions options)
    : WeightAveraging({.device = options.device,
                       .use_buffers = options.use_buffers,
                       .avg_fn = optim::ema_avg_fn(options.decay)}),
      ema_(options) {
  LUMEN_CHECK(options.update_every_n_steps >= 0,
              "EMAWeightAveraging: update_every_n_steps must be >= 0, got ",
              options.update_every_n_steps);
}

bool EMAWeightAveraging::should_update(std::optional<int64_t> step_idx,
                                       std::optional<int64_t> epoch_idx) {
  if (step_idx) {
    const bool started =
        !ema_.update_starting_at_step || *step_idx >= *ema_.update_starting_at_step;
    const bool due = ema_.update_every_n_steps > 0 && *step_idx % ema_.update_every_n_steps == 0;
    if (started && due) return true;
  }
  return epoch_idx && ema_.update_starting_at_epoch && *epoch_idx >= *ema_.update_starting_at_epoch;
}

}  // namespace lumen
