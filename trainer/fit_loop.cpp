// The fit loop, as Lightning's _FitLoop (epochs) and _TrainingEpochLoop (batches) with
// automatic optimization: what runs when, in which order, and when the loop ends. Under manual
// optimization train_batch runs training_step alone (manual_optimization.cpp has what it
// calls), and no scheduler steps.
//
//   fit_loop:      on_train_start; while !done: train_epoch; on_train_end
//   train_epoch:   on_train_epoch_start; for each batch: train_batch, finish_train_batch;
//                  on_train_epoch_end; epoch metrics and schedulers
//   train_batch:   on_train_batch_start; training_step; [on_before_zero_grad; zero_grad]
//                  (first batch of an accumulation window); on_before_backward;
//                  backward(loss / accumulate_grad_batches); on_after_backward;
//                  [optimizer step]; step schedulers; on_train_batch_end; log
//   optimizer step: [16-mixed: unscale gradients]; on_before_optimizer_step; clip gradients;
//                  optimizer.step() [16-mixed: unless a gradient is inf/NaN; update the
//                  scale]; global_step++
//   finish_train_batch: validation when due; plateau step schedulers; the logging step
#include <cstdio>
#include <sstream>

#include "autograd/grad_mode.h"
#include "nn/functional/elementwise.h"
#include "nn/optim/clip_grad.h"
#include "tensor/error.h"
#include "tensor/generator.h"
#include "trainer/device_prefetcher.h"
#include "trainer/early_stopping.h"
#include "trainer/model_checkpoint.h"
#include "trainer/trainer_loop.h"

namespace lumen {

namespace {

// Lightning's extract_batch_size: the leading dim of the batch's first tensor.
int64_t batch_size_of(const Batch& batch) {
  for (const Tensor& t : batch)
    if (t.defined()) return t.dim() == 0 ? 1 : std::max<int64_t>(t.size(0), 1);
  return 1;
}

// Lightning runs ModelCheckpoint and EarlyStopping's on_train_epoch_end after the module's,
// so they can monitor what the module logs there.
bool is_monitoring_callback(const Callback& cb) {
  return dynamic_cast<const ModelCheckpoint*>(&cb) != nullptr ||
         dynamic_cast<const EarlyStopping*>(&cb) != nullptr;
}

}  // namespace

void Trainer::follow_trainable_parameters() {
  Loop& L = *loop_;
  std::vector<Tensor> params;
  for (const Tensor& p : L.model->parameters())
    if (p.requires_grad()) params.push_back(p);
  if (L.buckets) {
    const std::vector<Tensor>& current = L.buckets->params();
    bool same = current.size() == params.size();
    for (size_t i = 0; same && i < params.size(); ++i) same = current[i].impl() == params[i].impl();
    if (same) return;
    L.buckets.reset();  // its hooks go before the new buckets add theirs
  }
  auto cap = static_cast<int64_t>(options_.strategy.ddp.bucket_cap_mb * 1024 * 1024);
  L.buckets = std::make_unique<GradientBuckets>(params, L.device_comm, cap);
}

// Lightning's _run_sanity_check: a few validation batches before training to catch bugs in
// the validation code early. Their metrics are discarded, and the random generator is left
// as it was (isolate_rng), so the sanity check changes nothing in the run.
void Trainer::run_sanity_check() {
  Loop& L = *loop_;
  if (L.val_loader == nullptr || L.num_val_batches == 0 || L.num_sanity_val_steps == 0) return;
  int64_t n = L.num_sanity_val_steps == -1 ? L.num_val_batches
                                           : std::min(L.num_sanity_val_steps, L.num_val_batches);
  GeneratorStateGuard isolate_rng;
  LightningModule& model = *L.model;
  // Lightning clears the metrics after the sanity check; Lumen puts back what was there
  // before (empty, or what a resumed checkpoint restored).
  auto callback_metrics_before = L.callback_metrics;
  auto progress_bar_metrics_before = L.progress_bar_metrics;
  auto logged_metrics_before = L.logged_metrics;
  L.sanity_checking = true;
  call_callbacks("on_sanity_check_start",
                 [&](Callback& cb) { cb.on_sanity_check_start(*this, model); });
  evaluation_loop("validation", n);
  call_callbacks("on_sanity_check_end",
                 [&](Callback& cb) { cb.on_sanity_check_end(*this, model); });
  L.val_results.reset();
  L.callback_metrics = std::move(callback_metrics_before);
  L.progress_bar_metrics = std::move(progress_bar_metrics_before);
  L.logged_metrics = std::move(logged_metrics_before);
  L.sanity_checking = false;
}

void Trainer::fit_loop() {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  // Lightning skips the fit loop when it has nothing to do.
  if (L.num_training_batches == 0 || L.max_epochs == 0) return;
  L.training = true;
  L.active_results = &L.train_results;
  L.epoch_end_reached = false;
  model.train();
  call_callbacks("on_train_start", [&](Callback& cb) { cb.on_train_start(*this, model); });
  call_module("on_train_start", [&] { model.on_train_start(); });

  // Resumed from a checkpoint written in on_train_epoch_end: finish that epoch first.
  if (L.resume_phase == FitPhase::epoch_end) {
    L.resume_phase.reset();
    L.epoch_end_reached = true;
    finish_train_epoch();
  }
  while (!fit_done()) train_epoch();

  call_callbacks("on_train_end", [&](Callback& cb) { cb.on_train_end(*this, model); });
  call_module("on_train_end", [&] { model.on_train_end(); });
  L.training = false;
}

// Lightning's _FitLoop.done.
bool Trainer::fit_done() const {
  const Loop& L = *loop_;
  if (L.max_epochs == 0) return true;
  if (L.max_steps != -1 && L.global_step >= L.max_steps) return true;
  if (L.max_epochs != -1 && L.current_epoch >= L.max_epochs) return true;
  return L.should_stop && can_stop_early();
}

// should_stop is ignored until min_epochs epochs have run (Lightning's _can_stop_early).
bool Trainer::can_stop_early() const { return loop_->current_epoch >= options_.min_epochs; }

// Lightning's _TrainingEpochLoop.done: the epoch's batches (or max_steps) are done, or a stop
// was requested and is allowed.
bool Trainer::epoch_done() const {
  const Loop& L = *loop_;
  if (L.max_steps != -1 && L.global_step >= L.max_steps) return true;
  if (L.batches_completed >= L.num_training_batches) return true;
  return L.should_stop && can_stop_early();
}

void Trainer::train_epoch() {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  std::optional<FitPhase> resumed = std::exchange(L.resume_phase, std::nullopt);
  L.active_results = &L.train_results;
  L.epoch_end_reached = false;
  int64_t start = 0;
  if (resumed) {
    // Mid-epoch resume: the epoch's start hooks already ran before the checkpoint.
    start = L.batches_completed;
  } else {
    L.batches_completed = 0;
    L.phase = FitPhase::between_batches;
    call_callbacks("on_train_epoch_start",
                   [&](Callback& cb) { cb.on_train_epoch_start(*this, model); });
    call_module("on_train_epoch_start", [&] { model.on_train_epoch_start(); });
  }
  if (L.buckets) follow_trainable_parameters();
  // The loader's order of epoch e depends only on (seed, e), and the resumed epoch skips the
  // batches already trained on without loading them.
  L.train_loader->begin_epoch(L.current_epoch, start);
  L.batch_idx = start - 1;
  L.is_last_batch = start == L.num_training_batches;
  if (resumed == FitPhase::batch || resumed == FitPhase::validation)
    finish_train_batch(start - 1, resumed == FitPhase::batch);

  // On a GPU the next batch is copied (copy stream) while this one trains.
  DevicePrefetcher batches(*L.train_loader, L.device, L.num_training_batches - start);
  {
    ProfileScope timing(L.profiler.get(), [] { return "run_training_epoch"; });
    while (!epoch_done()) {
      std::optional<Batch> batch;
      {
        ProfileScope fetching(L.profiler.get(),
                              [] { return "[_TrainingEpochLoop].train_dataloader_next"; });
        batch = batches.next();
      }
      if (!batch) break;
      if (!train_batch(*batch, L.batch_idx + 1)) break;
      finish_train_batch(L.batch_idx, true);
    }
  }
  end_train_epoch_hooks();
  finish_train_epoch();
}

// Lightning's _AutomaticOptimization: the loss of every batch is divided by
// accumulate_grad_batches, and the optimizer steps once every accumulate_grad_batches batches
// and on the epoch's last batch.
bool Trainer::should_accumulate(int64_t batch_idx) const {
  const Loop& L = *loop_;
  bool window_done = (batch_idx + 1) % L.accumulate_grad_batches == 0;
  bool last = batch_idx + 1 == L.num_training_batches;
  return !window_done && !last;
}

bool Trainer::train_batch(const Batch& batch, int64_t batch_idx) {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  L.batch_idx = batch_idx;
  L.is_last_batch = batch_idx + 1 == L.num_training_batches;
  L.current_batch_size = batch_size_of(batch);
  L.phase = FitPhase::between_batches;

  call_callbacks("on_train_batch_start",
                 [&](Callback& cb) { cb.on_train_batch_start(*this, model, batch, batch_idx); });
  bool proceed = true;
  call_module("on_train_batch_start",
              [&] { proceed = model.on_train_batch_start(batch, batch_idx); });
  if (!proceed) return false;  // Lightning's "return -1": the rest of the epoch is skipped

  bool accumulate = should_accumulate(batch_idx);
  // DDP's broadcast_buffers: every rank's forward sees rank 0's buffers.
  if (L.comm && options_.strategy.ddp.broadcast_buffers)
    broadcast_module_state(model, *L.device_comm, true);
  L.manual_backward_ran = false;
  Tensor loss;
  {
    ProfileScope timing(L.profiler.get(), [] { return "run_training_batch"; });
    // Lightning's optimizer_step hook runs the closure (training_step, zero_grad, backward)
    // and then the step: on a batch that steps, all of it is the one action.
    ProfileScope stepping(model.automatic_optimization && !accumulate ? L.profiler.get() : nullptr,
                          [&] { return profiled_action("optimizer_step"); });
    call_module("training_step", [&] {
      ForwardContext autocast(L.autocast_dtype);
      loss = model.training_step(batch, batch_idx);
    });
    if (model.automatic_optimization)
      run_automatic_optimization(loss, batch_idx, accumulate);
    else
      flush_scaler_update();  // manual steps adjust the scale before the batch ends
  }
  // What on_train_batch_end sees (Lightning's outputs["loss"]): the loss that was backpropagated,
  // divided by accumulate_grad_batches under automatic optimization; manual: as returned, if any.
  Tensor step_loss = loss.defined() ? loss.detach() : loss;
  const int64_t accum = L.accumulate_grad_batches;
  if (model.automatic_optimization && accum > 1) step_loss = step_loss / static_cast<double>(accum);
  L.batches_completed = batch_idx + 1;
  L.phase = FitPhase::batch;

  // Step-interval schedulers after each optimizer step; epoch-interval ones (except plateau
  // schedulers, which wait for the epoch's metrics) on the epoch's last batch, as Lightning.
  update_lr_schedulers("step", false);
  if (L.batches_completed == L.num_training_batches) update_lr_schedulers("epoch", false);

  call_callbacks("on_train_batch_end", [&](Callback& cb) {
    cb.on_train_batch_end(*this, model, step_loss, batch, batch_idx);
  });
  call_module("on_train_batch_end", [&] { model.on_train_batch_end(step_loss, batch, batch_idx); });

  // Lightning's logger connector on_batch_end: the step values reach callback_metrics and the
  // progress bar; update_train_step_metrics: the loggers get them every log_every_n_steps
  // batches that stepped (every batch under fast_dev_run). Reaching callback_metrics waits until
  // something reads them or the results change (flush_refresh), so a GPU loss logged every
  // step is not waited for every step.
  L.refresh_pending = true;
  if (!accumulate) {
    if (should_update_logs() || options_.fast_dev_run > 0) {
      std::map<std::string, double> row = L.train_results.metrics(true).log;
      // The loss scaler's state goes to the loggers with the step metrics.
      if (L.scaler) {
        row["grad_scaler/scale"] = L.scaler->get_scale();
        row["grad_scaler/skipped_steps"] = static_cast<double>(L.scaler->skipped_steps());
      }
      log_to_loggers(std::move(row), std::nullopt);
    }
  }
  return true;
}

// Lightning's _AutomaticOptimization.run: zero_grad, backward of the loss, optimizer step.
void Trainer::run_automatic_optimization(const Tensor& loss, int64_t batch_idx, bool accumulate) {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  LUMEN_CHECK(loss.defined(), "training_step (batch ", batch_idx,
              ") returned an undefined tensor; it must return the loss");
  LUMEN_CHECK(loss.numel() == 1, "training_step (batch ", batch_idx,
              ") must return a scalar loss, got shape ", ShapeStr{loss.shape()});
  LUMEN_CHECK(loss.requires_grad(), "training_step (batch ", batch_idx,
              ") returned a loss that does not depend on any parameter that requires grad");
  optim::Optimizer& optimizer = *L.optimizers.front();
  // Lightning zeroes the gradients at the first batch of each accumulation window, after its
  // training_step and before its backward.
  if (batch_idx % L.accumulate_grad_batches == 0) {
    call_callbacks("on_before_zero_grad",
                   [&](Callback& cb) { cb.on_before_zero_grad(*this, model, optimizer); });
    call_module("on_before_zero_grad", [&] { model.on_before_zero_grad(optimizer); });
    ProfileScope timing(L.profiler.get(), [&] { return profiled_action("optimizer_zero_grad"); });
    optimizer.zero_grad();
  }
  int64_t accum = L.accumulate_grad_batches;
  // DDP: the last micro-step of an accumulation window averages the gradients over the ranks.
  backward(accum > 1 ? loss / static_cast<double>(accum) : loss, !accumulate);
  if (!accumulate) optimizer_step();
}

// Lightning's strategy.backward, for both optimization modes: on_before_backward; the backward
// [16-mixed: of loss * S (GradScaler), so that small gradients survive f16; the optimizer step
// unscales them] [DDP with sync: the gradients averaged over the ranks, bucket by bucket as
// the backward produces them]; on_after_backward.
void Trainer::backward(const Tensor& loss, bool sync) {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  ProfileScope timing(L.profiler.get(), [&] { return profiled_action("backward"); });
  call_callbacks("on_before_backward",
                 [&](Callback& cb) { cb.on_before_backward(*this, model, loss); });
  call_module("on_before_backward", [&] { model.on_before_backward(loss); });
  // A synchronised batch norm all-reduces inside the backward; a bucket that one rank starts
  // during the backward and another only in finish() (a parameter unused on that rank) would
  // put the ranks' collectives in different orders. So with one, buckets start after it.
  if (L.buckets) L.buckets->prepare(sync, !L.collectives_in_backward);
  (L.scaler ? L.scaler->scale(loss) : loss).backward();
  if (L.buckets && sync) L.buckets->finish();
  call_callbacks("on_after_backward", [&](Callback& cb) { cb.on_after_backward(*this, model); });
  call_module("on_after_backward", [&] { model.on_after_backward(); });
}

void Trainer::optimizer_step() {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  optim::Optimizer& optimizer = *L.optimizers.front();
  // Lightning's MixedPrecision.optimizer_step: the gradients are unscaled before the hooks and
  // clipping see them; the scaler skips the step if any is inf or NaN, and adjusts its scale.
  // global_step counts the step either way, as Lightning's.
  if (L.scaler && !L.scaler->unscaled(optimizer)) L.scaler->unscale_(optimizer);
  call_callbacks("on_before_optimizer_step",
                 [&](Callback& cb) { cb.on_before_optimizer_step(*this, model, optimizer); });
  call_module("on_before_optimizer_step", [&] { model.on_before_optimizer_step(optimizer); });
  clip_gradients();
  if (L.scaler) {
    L.scaler->step(optimizer);
    L.scaler->update();
  } else {
    optimizer.step();
  }
  ++L.global_step;
}

// Lightning's configure_gradient_clipping default: gradient_clip_val over the optimizer's
// parameters, by total 2-norm ("norm") or elementwise ("value"); 0 or unset clips nothing.
void Trainer::clip_gradients() {
  if (!options_.gradient_clip_val) return;
  clip_optimizer_gradients(*loop_->optimizers.front(), *options_.gradient_clip_val,
                           options_.gradient_clip_algorithm);
}

// Lightning's _should_check_val_fx: in epochs that validate (check_val_every_n_epoch), after
// every val_check_batch-th batch, and whenever a permitted stop is requested.
bool Trainer::should_check_val(int64_t batch_idx) const {
  const Loop& L = *loop_;
  if (L.val_loader == nullptr || L.num_val_batches == 0) return false;
  if ((L.current_epoch + 1) % options_.check_val_every_n_epoch != 0) return false;
  if (L.should_stop && can_stop_early()) return true;
  return (batch_idx + 1) % L.val_check_batch == 0;
}

// Lightning's _TrainingEpochLoop.on_advance_end.
void Trainer::finish_train_batch(int64_t batch_idx, bool validate) {
  Loop& L = *loop_;
  if (validate && should_check_val(batch_idx)) {
    L.phase = FitPhase::validation;
    evaluation_loop("validation", L.num_val_batches);
    L.active_results = &L.train_results;
    L.epoch_end_reached = false;
  }
  L.batch_idx = batch_idx;
  // Plateau schedulers stepping per batch read the metrics validation just produced.
  update_lr_schedulers("step", true);
  if (!should_accumulate(batch_idx)) ++L.batches_that_stepped;
  L.phase = FitPhase::between_batches;
}

// Lightning's _FitLoop.on_advance_end, first half: the epoch-end hooks. Callbacks run first,
// except the monitoring ones (ModelCheckpoint, EarlyStopping), which run after the module.
void Trainer::end_train_epoch_hooks() {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  L.phase = FitPhase::epoch_end;
  flush_refresh();
  L.epoch_end_reached = true;
  call_callbacks("on_train_epoch_end", [&](Callback& cb) {
    if (!is_monitoring_callback(cb)) cb.on_train_epoch_end(*this, model);
  });
  call_module("on_train_epoch_end", [&] { model.on_train_epoch_end(); });
  call_callbacks("on_train_epoch_end", [&](Callback& cb) {
    if (is_monitoring_callback(cb)) cb.on_train_epoch_end(*this, model);
  });
}

// Second half: the epoch's aggregated metrics reach callback_metrics and the loggers (at the
// step of the epoch's last batch, as Lightning), plateau schedulers step, the epoch ends.
void Trainer::finish_train_epoch() {
  Loop& L = *loop_;
  MetricViews views = L.train_results.metrics(false);
  for (auto& [k, v] : views.callback) L.callback_metrics[k] = v;
  for (auto& [k, v] : views.pbar) L.progress_bar_metrics[k] = v;
  if (L.batches_completed >= L.num_training_batches) update_lr_schedulers("epoch", true);
  log_to_loggers(views.log, L.batches_that_stepped - 1);
  L.train_results.reset();
  ++L.current_epoch;
  L.batches_completed = 0;
  L.batch_idx = -1;
  L.phase = FitPhase::idle;
  L.epoch_end_reached = false;
}

// Lightning's _update_learning_rates: schedulers of this interval whose frequency divides the
// 1-based batch (step interval) or epoch (epoch interval) number. Plateau schedulers step on
// their monitored metric; a missing one is an error unless the config is not strict.
void Trainer::update_lr_schedulers(const std::string& interval, bool plateau) {
  Loop& L = *loop_;
  // Under manual optimization the module steps its schedulers itself (lr_schedulers()).
  if (!L.model->automatic_optimization) return;
  if (interval == "step" && should_accumulate(L.batch_idx)) return;
  for (SchedulerConfig& config : L.schedulers) {
    if (config.scheduler->needs_metric() != plateau || config.interval != interval) continue;
    int64_t index = (interval == "step" ? L.batch_idx : L.current_epoch) + 1;
    if (index % config.frequency != 0) continue;
    if (!plateau) {
      config.scheduler->step();
      continue;
    }
    const std::map<std::string, double>& metrics = callback_metrics();
    auto it = metrics.find(config.monitor);
    if (it == metrics.end()) {
      std::ostringstream available;
      for (const auto& [k, v] : metrics) available << (available.tellp() > 0 ? ", " : "") << k;
      LUMEN_CHECK(!config.strict, config.scheduler->type_name(), " conditioned on metric '",
                  config.monitor, "' which is not available. Available metrics are: [",
                  available.str(), "]. Log it, or set the scheduler config's monitor");
      std::fprintf(stderr,
                   "lumen: %s conditioned on metric '%s' which is not available but strict is "
                   "false; skipping the learning-rate update\n",
                   config.scheduler->type_name().c_str(), config.monitor.c_str());
      continue;
    }
    config.scheduler->step(it->second);
  }
}

}  // namespace lumen
