// The evaluation loops, as Lightning's _EvaluationLoop (validation inside fit and in
// Trainer.validate, test in Trainer.test) and _PredictionLoop. The module is in eval mode and
// gradients are off; hook order:
//   on_validation_start; on_validation_epoch_start; per batch: on_validation_batch_start,
//   validation_step, on_validation_batch_end; on_validation_epoch_end; (metrics published and
//   logged); on_validation_end
// (test the same with on_test_*), each hook on the callbacks and then the module.
#include "autograd/grad_mode.h"
#include "tensor/error.h"
#include "trainer/device_prefetcher.h"
#include "trainer/trainer_loop.h"

namespace lumen {

namespace {

int64_t eval_batch_size(const Batch& batch) {
  for (const Tensor& t : batch)
    if (t.defined()) return t.dim() == 0 ? 1 : std::max<int64_t>(t.size(0), 1);
  return 1;
}

}  // namespace

void Trainer::evaluation_loop(const std::string& kind, int64_t max_batches) {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  const bool test = kind == "test";
  DataLoader& loader = test ? *L.test_loader : *L.val_loader;
  MetricAggregator& results = test ? L.test_results : L.val_results;

  // Validation inside fit interrupts the training loop: keep its state to restore after.
  const bool was_training = L.training;
  const bool module_was_training = model.is_training();
  const int64_t train_batch_idx = L.batch_idx, train_batch_size = L.current_batch_size;
  const bool train_last_batch = L.is_last_batch;
  flush_refresh();  // the training batch's step values, before the results switch
  MetricAggregator* outer_results = L.active_results;
  const bool outer_epoch_end = L.epoch_end_reached;

  L.training = false;
  L.validating = !test;
  L.testing = test;
  results.reset();
  L.active_results = &results;
  L.epoch_end_reached = false;
  model.eval();
  NoGradGuard no_grad;

  if (test) {
    call_callbacks("on_test_start", [&](Callback& cb) { cb.on_test_start(*this, model); });
    call_module("on_test_start", [&] { model.on_test_start(); });
    call_callbacks("on_test_epoch_start",
                   [&](Callback& cb) { cb.on_test_epoch_start(*this, model); });
    call_module("on_test_epoch_start", [&] { model.on_test_epoch_start(); });
  } else {
    call_callbacks("on_validation_start",
                   [&](Callback& cb) { cb.on_validation_start(*this, model); });
    call_module("on_validation_start", [&] { model.on_validation_start(); });
    call_callbacks("on_validation_epoch_start",
                   [&](Callback& cb) { cb.on_validation_epoch_start(*this, model); });
    call_module("on_validation_epoch_start", [&] { model.on_validation_epoch_start(); });
  }

  loader.begin_epoch(L.current_epoch);
  DevicePrefetcher batches(loader, L.device, max_batches);
  for (int64_t i = 0; i < max_batches; ++i) {
    std::optional<Batch> next;
    {
      ProfileScope timing(L.profiler.get(), [&] {
        return std::string("[_EvaluationLoop].") + (test ? "test" : "val") + "_next";
      });
      next = batches.next();
    }
    if (!next) break;
    Batch batch = std::move(*next);
    L.batch_idx = i;
    L.is_last_batch = i + 1 == max_batches;
    L.current_batch_size = eval_batch_size(batch);
    if (test) {
      call_callbacks("on_test_batch_start",
                     [&](Callback& cb) { cb.on_test_batch_start(*this, model, batch, i); });
      call_module("on_test_batch_start", [&] { model.on_test_batch_start(batch, i); });
      call_module("test_step", [&] {
        ForwardContext autocast(L.autocast_dtype);
        model.test_step(batch, i);
      });
      call_callbacks("on_test_batch_end",
                     [&](Callback& cb) { cb.on_test_batch_end(*this, model, batch, i); });
      call_module("on_test_batch_end", [&] { model.on_test_batch_end(batch, i); });
    } else {
      call_callbacks("on_validation_batch_start",
                     [&](Callback& cb) { cb.on_validation_batch_start(*this, model, batch, i); });
      call_module("on_validation_batch_start", [&] { model.on_validation_batch_start(batch, i); });
      call_module("validation_step", [&] {
        ForwardContext autocast(L.autocast_dtype);
        model.validation_step(batch, i);
      });
      call_callbacks("on_validation_batch_end",
                     [&](Callback& cb) { cb.on_validation_batch_end(*this, model, batch, i); });
      call_module("on_validation_batch_end", [&] { model.on_validation_batch_end(batch, i); });
    }
    // As in the fit loop, the step values reach the progress bar when something reads them, so
    // a GPU metric is not waited for after every batch.
    L.refresh_pending = true;
    // Lightning's update_eval_step_metrics: values logged with on_step go to the loggers at
    // a step counting evaluation batches (only then are this batch's values read).
    if (!L.sanity_checking) {
      if (results.logs_steps()) {
        std::map<std::string, double> step_log = results.metrics(true).log;
        if (!step_log.empty()) log_to_loggers(std::move(step_log), L.eval_batches_logged);
      }
      ++L.eval_batches_logged;
    }
  }
  flush_refresh();  // the last batch's step values, before the epoch values replace them

  // Epoch end: hooks (callbacks first), then the epoch values are published and logged (not
  // during the sanity check), then on_*_end, where ModelCheckpoint reads them.
  L.epoch_end_reached = true;
  if (test) {
    call_callbacks("on_test_epoch_end", [&](Callback& cb) { cb.on_test_epoch_end(*this, model); });
    call_module("on_test_epoch_end", [&] { model.on_test_epoch_end(); });
  } else {
    call_callbacks("on_validation_epoch_end",
                   [&](Callback& cb) { cb.on_validation_epoch_end(*this, model); });
    call_module("on_validation_epoch_end", [&] { model.on_validation_epoch_end(); });
  }
  MetricViews views = results.metrics(false);
  for (auto& [k, v] : views.callback) L.callback_metrics[k] = v;
  for (auto& [k, v] : views.pbar) L.progress_bar_metrics[k] = v;
  L.stage_epoch_metrics = views.callback;
  if (!L.sanity_checking) log_to_loggers(views.log, std::nullopt);
  if (test) {
    call_callbacks("on_test_end", [&](Callback& cb) { cb.on_test_end(*this, model); });
    call_module("on_test_end", [&] { model.on_test_end(); });
  } else {
    call_callbacks("on_validation_end", [&](Callback& cb) { cb.on_validation_end(*this, model); });
    call_module("on_validation_end", [&] { model.on_validation_end(); });
  }

  model.train(module_was_training);
  L.training = was_training;
  L.validating = L.testing = false;
  L.batch_idx = train_batch_idx;
  L.current_batch_size = train_batch_size;
  L.is_last_batch = train_last_batch;
  L.active_results = outer_results;
  L.epoch_end_reached = outer_epoch_end;
}

std::vector<Tensor> Trainer::predict_loop() {
  Loop& L = *loop_;
  LightningModule& model = *L.model;
  L.predicting = true;
  model.eval();
  NoGradGuard no_grad;
  call_callbacks("on_predict_start", [&](Callback& cb) { cb.on_predict_start(*this, model); });
  call_module("on_predict_start", [&] { model.on_predict_start(); });
  call_callbacks("on_predict_epoch_start",
                 [&](Callback& cb) { cb.on_predict_epoch_start(*this, model); });
  call_module("on_predict_epoch_start", [&] { model.on_predict_epoch_start(); });
  std::vector<Tensor> outputs;
  L.predict_loader->begin_epoch(0);
  DevicePrefetcher batches(*L.predict_loader, L.device, L.num_predict_batches);
  for (int64_t i = 0; i < L.num_predict_batches; ++i) {
    std::optional<Batch> next;
    {
      ProfileScope timing(L.profiler.get(), [] { return "[_PredictionLoop].predict_next"; });
      next = batches.next();
    }
    if (!next) break;
    Batch batch = std::move(*next);
    L.batch_idx = i;
    L.is_last_batch = i + 1 == L.num_predict_batches;
    call_callbacks("on_predict_batch_start",
                   [&](Callback& cb) { cb.on_predict_batch_start(*this, model, batch, i); });
    call_module("on_predict_batch_start", [&] { model.on_predict_batch_start(batch, i); });
    call_module("predict_step", [&] {
      ForwardContext autocast(L.autocast_dtype);
      outputs.push_back(model.predict_step(batch, i));
    });
    call_callbacks("on_predict_batch_end",
                   [&](Callback& cb) { cb.on_predict_batch_end(*this, model, batch, i); });
    call_module("on_predict_batch_end",
                [&] { model.on_predict_batch_end(outputs.back(), batch, i); });
  }
  call_callbacks("on_predict_epoch_end",
                 [&](Callback& cb) { cb.on_predict_epoch_end(*this, model); });
  call_module("on_predict_epoch_end", [&] { model.on_predict_epoch_end(); });
  call_callbacks("on_predict_end", [&](Callback& cb) { cb.on_predict_end(*this, model); });
  call_module("on_predict_end", [&] { model.on_predict_end(); });
  L.predicting = false;
  return outputs;
}

}  // namespace lumen
