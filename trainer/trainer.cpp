// Trainer: options, the parts every stage shares (Lightning's Trainer._run and the hook
// dispatch of lightning/pytorch/trainer/call.py), metric logging and seed_everything. The
// loops are in fit_loop.cpp and evaluation_loop.cpp, checkpoints in checkpoint_state.cpp.
#include "trainer/trainer.h"

#include <cxxabi.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <iostream>
#include <map>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "autograd/anomaly_mode.h"
#include "autograd/autocast_mode.h"
#include "io/checkpoint.h"
#include "tensor/error.h"
#include "tensor/generator.h"
#include "trainer/accelerator.h"
#include "trainer/csv_logger.h"
#include "trainer/model_checkpoint.h"
#include "trainer/model_summary.h"
#include "trainer/precision.h"
#include "trainer/progress_bar.h"
#include "trainer/results_table.h"
#include "trainer/timer.h"
#include "trainer/trainer_loop.h"

namespace lumen {

int64_t CountOrFraction::of(int64_t total) const {
  if (is_count) return std::min<int64_t>(static_cast<int64_t>(value), total);
  return static_cast<int64_t>(std::floor(static_cast<double>(total) * value));
}

const char* fit_phase_name(FitPhase phase) {
  switch (phase) {
    case FitPhase::idle:
      return "idle";
    case FitPhase::batch:
      return "batch";
    case FitPhase::validation:
      return "validation";
    case FitPhase::between_batches:
      return "between_batches";
    case FitPhase::epoch_end:
      return "epoch_end";
  }
  return "idle";
}

FitPhase parse_fit_phase(const std::string& name) {
  for (FitPhase p : {FitPhase::idle, FitPhase::batch, FitPhase::validation,
                     FitPhase::between_batches, FitPhase::epoch_end})
    if (name == fit_phase_name(p)) return p;
  detail::throw_error("checkpoint: unknown /trainer loop phase \"", name, "\"");
}

namespace {

void check_limit(const char* what, const CountOrFraction& v) {
  if (v.is_count)
    LUMEN_CHECK(v.value >= 0, "Trainer: ", what, " must be a non-negative batch count, got ",
                v.value);
  else
    LUMEN_CHECK(v.value >= 0.0 && v.value <= 1.0, "Trainer: ", what,
                " as a fraction must lie in [0, 1], got ", v.value);
}

}  // namespace

Trainer::Trainer(TrainerOptions options) : options_(std::move(options)), loop_(new Loop) {
  loop_->attachment = std::make_shared<Trainer* const>(this);
  const TrainerOptions& o = options_;
  LUMEN_CHECK(o.accumulate_grad_batches >= 1, "Trainer: accumulate_grad_batches must be >= 1, got ",
              o.accumulate_grad_batches);
  LUMEN_CHECK(o.gradient_clip_algorithm == "norm" || o.gradient_clip_algorithm == "value",
              "Trainer: gradient_clip_algorithm must be \"norm\" or \"value\", got \"",
              o.gradient_clip_algorithm, "\"");
  LUMEN_CHECK(!o.gradient_clip_val || *o.gradient_clip_val >= 0.0,
              "Trainer: gradient_clip_val must be >= 0, got ", o.gradient_clip_val.value_or(0));
  LUMEN_CHECK(o.check_val_every_n_epoch >= 1, "Trainer: check_val_every_n_epoch must be >= 1, got ",
              o.check_val_every_n_epoch);
  LUMEN_CHECK(
      o.val_check_interval.is_count
          ? o.val_check_interval.value >= 1
          : (o.val_check_interval.value > 0.0 && o.val_check_interval.value <= 1.0),
      "Trainer: val_check_interval must be a batch count >= 1 or a fraction in (0, 1], got ",
      o.val_check_interval.value);
  check_limit("limit_train_batches", o.limit_train_batches);
  check_limit("limit_val_batches", o.limit_val_batches);
  check_limit("limit_test_batches", o.limit_test_batches);
  check_limit("limit_predict_batches", o.limit_predict_batches);
  check_limit("overfit_batches", o.overfit_batches);
  LUMEN_CHECK(o.fast_dev_run >= 0, "Trainer: fast_dev_run must be >= 0, got ", o.fast_dev_run);
  LUMEN_CHECK(o.num_sanity_val_steps >= -1,
              "Trainer: num_sanity_val_steps must be >= -1 (-1: all), got ",
              o.num_sanity_val_steps);
  LUMEN_CHECK(o.log_every_n_steps >= 1, "Trainer: log_every_n_steps must be >= 1, got ",
              o.log_every_n_steps);
  LUMEN_CHECK(o.max_steps >= -1, "Trainer: max_steps must be >= -1 (-1: no limit), got ",
              o.max_steps);
  LUMEN_CHECK(!o.max_epochs || *o.max_epochs >= -1,
              "Trainer: max_epochs must be >= -1 (-1: no limit), got ", o.max_epochs.value_or(0));
  LUMEN_CHECK(o.min_epochs >= 0, "Trainer: min_epochs must be >= 0, got ", o.min_epochs);
  {
    Precision precision = parse_precision(o.precision, "Trainer");
    loop_->precision = precision.name;
    loop_->autocast_dtype = precision.autocast_dtype;
    if (precision.scales_loss()) loop_->scaler = std::make_unique<optim::GradScaler>(o.grad_scaler);
  }
  check_accelerator(o.accelerator, "Trainer");

  Loop& L = *loop_;
  L.profiler = o.profiler.profiler;
  L.accumulate_grad_batches = o.accumulate_grad_batches;
  // Lightning's _init_debugging_flags and max_epochs defaults (_parse_loop_limits: a time
  // limit, from max_time or a Timer callback, also lifts the epoch limit).
  bool timed = o.max_time.seconds.has_value();
  for (const auto& cb : o.callbacks) timed = timed || dynamic_cast<Timer*>(cb.get()) != nullptr;
  L.max_epochs = o.max_epochs ? *o.max_epochs : (o.max_steps == -1 && !timed ? 1000 : -1);
  L.max_steps = o.max_steps;
  L.num_sanity_val_steps = o.num_sanity_val_steps;
  L.log_every_n_steps = o.log_every_n_steps;
  L.val_check_interval = o.val_check_interval;
  L.limit_train = o.limit_train_batches;
  L.limit_val = o.limit_val_batches;
  L.limit_test = o.limit_test_batches;
  L.limit_predict = o.limit_predict_batches;
  L.overfit = o.overfit_batches.value > 0;
  if (L.overfit) {
    L.limit_train = o.overfit_batches;
    L.limit_val = o.overfit_batches;
  }
  if (o.fast_dev_run > 0) {
    int64_t n = o.fast_dev_run;
    if (!L.overfit) {
      L.limit_train = n;
      L.limit_val = n;
    }
    L.limit_test = n;
    L.limit_predict = n;
    L.max_steps = n;
    L.num_sanity_val_steps = 0;
    L.max_epochs = 1;
    L.val_check_interval = 1.0;
  }

  // Callbacks: the user's, then the defaults Lightning adds (model summary, progress bar,
  // checkpointing), with every ModelCheckpoint moved to the end so it sees what the others
  // did first (Lightning's _reorder_callbacks).
  for (const auto& cb : o.callbacks)
    LUMEN_CHECK(cb != nullptr, "Trainer: callbacks holds a null callback");
  auto has = [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    for (const auto& cb : o.callbacks)
      if (dynamic_cast<T*>(cb.get()) != nullptr) return true;
    return false;
  };
  std::vector<std::shared_ptr<Callback>> checkpoints;
  for (const auto& cb : o.callbacks)
    (dynamic_cast<ModelCheckpoint*>(cb.get()) ? checkpoints : L.callbacks).push_back(cb);
  // Lightning's _configure_timer_callback: max_time adds a Timer unless there is one.
  if (o.max_time.seconds && !has(static_cast<Timer*>(nullptr)))
    L.callbacks.push_back(std::make_shared<Timer>(TimerOptions{.duration = o.max_time}));
  if (o.enable_model_summary && !has(static_cast<ModelSummary*>(nullptr)))
    L.callbacks.push_back(std::make_shared<ModelSummary>());
  if (o.enable_progress_bar && !has(static_cast<ProgressBar*>(nullptr)))
    L.callbacks.push_back(std::make_shared<ProgressBar>());
  if (o.enable_checkpointing && checkpoints.empty())
    checkpoints.push_back(std::make_shared<ModelCheckpoint>());
  L.callbacks.insert(L.callbacks.end(), checkpoints.begin(), checkpoints.end());
  for (size_t i = 0; i < L.callbacks.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      LUMEN_CHECK(L.callbacks[i]->state_key() != L.callbacks[j]->state_key(),
                  "Trainer: two callbacks have the state_key \"", L.callbacks[i]->state_key(),
                  "\"; checkpoints need them unique (override state_key())");

  // The strategy: "auto" is DDP when a launcher started several processes.
  L.comm = strategy_communicator(o.strategy, "Trainer");
  // Only rank 0 shows a progress bar and a model summary (Lightning's rank_zero_only).
  if (!is_global_zero())
    std::erase_if(L.callbacks, [](const std::shared_ptr<Callback>& cb) {
      return dynamic_cast<ProgressBar*>(cb.get()) != nullptr ||
             dynamic_cast<ModelSummary*>(cb.get()) != nullptr;
    });

  // Loggers: fast_dev_run logs nothing (Lightning swaps in a DummyLogger).
  if (o.fast_dev_run == 0 && o.logger.enabled) {
    L.loggers = o.logger.loggers;
    if (L.loggers.empty())
      L.loggers.push_back(
          std::make_shared<CSVLogger>(CSVLoggerOptions{.save_dir = o.default_root_dir}));
    for (const auto& lg : L.loggers) LUMEN_CHECK(lg != nullptr, "Trainer: logger is null");
  }
}

Trainer::~Trainer() = default;

int64_t Trainer::current_epoch() const { return loop_->current_epoch; }
std::shared_ptr<DataLoader> Trainer::train_dataloader() const { return loop_->train_loader; }
int64_t Trainer::global_step() const { return loop_->global_step; }
bool Trainer::sanity_checking() const { return loop_->sanity_checking; }
bool Trainer::training() const { return loop_->training; }
std::string Trainer::stage() const { return loop_->stage; }
bool Trainer::should_stop() const { return loop_->should_stop; }
void Trainer::set_should_stop(bool stop) { loop_->should_stop = stop; }
int64_t Trainer::num_training_batches() const { return loop_->num_training_batches; }
int64_t Trainer::num_val_batches() const { return loop_->num_val_batches; }
int64_t Trainer::num_test_batches() const { return loop_->num_test_batches; }
int64_t Trainer::num_predict_batches() const { return loop_->num_predict_batches; }
int64_t Trainer::max_epochs() const { return loop_->max_epochs; }
bool Trainer::is_last_batch() const { return loop_->is_last_batch; }
const std::vector<std::shared_ptr<Callback>>& Trainer::callbacks() const {
  return loop_->callbacks;
}
const std::vector<std::shared_ptr<Logger>>& Trainer::loggers() const { return loop_->loggers; }
Logger* Trainer::logger() const {
  return loop_->loggers.empty() ? nullptr : loop_->loggers.front().get();
}
int Trainer::global_rank() const { return loop_->comm ? loop_->comm->rank() : 0; }
int Trainer::local_rank() const { return loop_->comm ? loop_->comm->local_rank() : 0; }
int Trainer::world_size() const { return loop_->comm ? loop_->comm->world_size() : 1; }
std::string Trainer::strategy() const { return loop_->comm ? "ddp" : "single_device"; }
Device Trainer::device() const { return loop_->device; }
const std::shared_ptr<dist::Communicator>& Trainer::communicator() const { return loop_->comm; }

bool Trainer::reduce_boolean_decision(bool decision, bool all) const {
  if (!loop_->comm) return decision;
  Tensor t = from_vector(std::vector<int32_t>{decision ? 1 : 0}, {1});
  loop_->comm->all_reduce(t, all ? dist::ReduceOp::min : dist::ReduceOp::max);
  return t.item<int32_t>() != 0;
}

GradientBuckets::Stats Trainer::ddp_stats() const {
  return loop_->buckets ? loop_->buckets->stats() : loop_->ddp_stats;
}

int64_t Trainer::batches_that_stepped() const { return loop_->batches_that_stepped; }
bool Trainer::should_update_logs() const {
  const Loop& L = *loop_;
  return (L.batches_that_stepped + 1) % L.log_every_n_steps == 0 || L.should_stop;
}

std::string Trainer::precision() const { return loop_->precision; }
const optim::GradScaler* Trainer::grad_scaler() const { return loop_->scaler.get(); }

std::string Trainer::log_dir() const {
  if (loop_->shared_log_dir) return *loop_->shared_log_dir;
  return loop_->loggers.empty() ? options_.default_root_dir : loop_->loggers.front()->log_dir();
}
const std::vector<std::shared_ptr<optim::Optimizer>>& Trainer::optimizers() const {
  return loop_->optimizers;
}
const std::vector<SchedulerConfig>& Trainer::lr_scheduler_configs() const {
  return loop_->schedulers;
}
LightningModule* Trainer::lightning_module() const { return loop_->model; }

int64_t Trainer::accumulate_grad_batches() const { return loop_->accumulate_grad_batches; }

void Trainer::set_accumulate_grad_batches(int64_t n) {
  LUMEN_CHECK(n >= 1, "Trainer: accumulate_grad_batches must be >= 1, got ", n);
  loop_->accumulate_grad_batches = n;
}

// Lightning: ceil(batches per epoch / accumulate_grad_batches) * max_epochs, capped by
// max_steps (or max_steps alone when epochs are unlimited).
int64_t Trainer::estimated_stepping_batches() const {
  const Loop& L = *loop_;
  if (L.max_epochs == -1) {
    LUMEN_CHECK(L.max_steps != -1,
                "estimated_stepping_batches: unlimited max_epochs and max_steps = -1");
    return L.max_steps;
  }
  LUMEN_CHECK(L.train_loader != nullptr,
              "estimated_stepping_batches: the train loader is not set up yet; read it in "
              "configure_optimizers or later during fit");
  int64_t accum = L.accumulate_grad_batches;
  int64_t per_epoch = (L.num_training_batches + accum - 1) / accum;
  int64_t total = per_epoch * std::max<int64_t>(L.max_epochs, 1);
  return L.max_steps != -1 ? std::min(total, L.max_steps) : total;
}

// Lightning's logger connector reads callback and progress-bar metrics lazily from the active
// results, so a callback sees what was logged earlier in the same batch.
void Trainer::refresh_metrics() const {
  Loop& L = *loop_;
  L.refresh_pending = false;
  if (L.active_results == nullptr || L.active_results->empty()) return;
  MetricViews views = L.active_results->metrics(!L.epoch_end_reached);
  for (auto& [k, v] : views.callback) L.callback_metrics[k] = v;
  for (auto& [k, v] : views.pbar) L.progress_bar_metrics[k] = v;
}

void Trainer::flush_refresh() const {
  if (loop_->refresh_pending) refresh_metrics();
}

const std::map<std::string, double>& Trainer::callback_metrics() const {
  refresh_metrics();
  return loop_->callback_metrics;
}
const std::map<std::string, double>& Trainer::progress_bar_metrics() const {
  refresh_metrics();
  return loop_->progress_bar_metrics;
}
const std::map<std::string, double>& Trainer::logged_metrics() const {
  return loop_->logged_metrics;
}

// Lightning's LoggerConnector.log_metrics: adds "epoch", logs at `step` (default
// _batches_that_stepped) and flushes.
void Trainer::log_metrics(const std::map<std::string, double>& metrics,
                          std::optional<int64_t> step) {
  log_to_loggers(metrics, step);
}

void Trainer::log_to_loggers(std::map<std::string, double> metrics, std::optional<int64_t> step) {
  Loop& L = *loop_;
  if (metrics.empty()) return;
  for (auto& [k, v] : metrics) L.logged_metrics[k] = v;
  metrics.emplace("epoch", static_cast<double>(L.current_epoch));
  int64_t s = step ? *step : L.batches_that_stepped;
  if (!is_global_zero()) return;  // loggers write on rank 0 only
  for (const auto& lg : L.loggers) {
    lg->log_metrics(metrics, s);
    lg->save();
  }
}

namespace {

// Lightning's _FxValidator: where log() may be called, and the on_step/on_epoch defaults and
// allowed values there.
struct FxLogRule {
  bool step_may_be_true, epoch_may_be_false;
  bool default_on_step, default_on_epoch;
};

std::optional<FxLogRule> fx_log_rule(const std::string& fx) {
  // Per-step hooks of training: logged per step by default.
  for (const char* h :
       {"training_step", "on_train_batch_start", "on_train_batch_end", "on_before_optimizer_step",
        "on_before_backward", "on_after_backward", "on_before_zero_grad"})
    if (fx == h) return FxLogRule{true, true, true, false};
  // Per-step hooks of evaluation: aggregated over the epoch by default.
  for (const char* h : {"validation_step", "test_step", "on_validation_batch_start",
                        "on_validation_batch_end", "on_test_batch_start", "on_test_batch_end"})
    if (fx == h) return FxLogRule{true, true, false, true};
  // Once-per-run or once-per-epoch hooks: epoch values only.
  for (const char* h : {"on_train_start", "on_validation_start", "on_test_start",
                        "on_train_epoch_start", "on_train_epoch_end", "on_validation_epoch_start",
                        "on_validation_epoch_end", "on_test_epoch_start", "on_test_epoch_end"})
    if (fx == h) return FxLogRule{false, false, false, true};
  return std::nullopt;
}

}  // namespace

void Trainer::log_metric(const std::string& name, double value, const LogOptions& options) {
  log_metric(name, scalar_tensor(value, {.dtype = DType::f64}), options);
}

// A tensor value stays where it is (a GPU loss is not waited for) unless sync_dist reduces it
// across the ranks now; MetricAggregator reads it back when a view is asked for.
void Trainer::log_metric(const std::string& name, const Tensor& value, const LogOptions& options) {
  Loop& L = *loop_;
  LUMEN_CHECK(!L.stage.empty(), "log('", name,
              "'): this module's trainer is not running; log() works only inside the hooks "
              "that Trainer.fit/validate/test call");
  LUMEN_CHECK(!L.current_fx.empty(), "log('", name,
              "'): called outside a LightningModule or Callback hook");
  std::optional<FxLogRule> rule = fx_log_rule(L.current_fx);
  LUMEN_CHECK(rule.has_value(), "You can't log('", name, "') inside ", L.current_fx,
              " (Lightning allows log() in the step, batch and epoch hooks only)");
  bool on_step = options.on_step.value_or(rule->default_on_step);
  bool on_epoch = options.on_epoch.value_or(rule->default_on_epoch);
  LUMEN_CHECK(!on_step || rule->step_may_be_true, "You can't log('", name, "', on_step=true) in ",
              L.current_fx, ": it runs once per epoch; use on_epoch");
  LUMEN_CHECK(on_epoch || rule->epoch_may_be_false, "You can't log('", name,
              "', on_epoch=false) in ", L.current_fx, ": it runs once per epoch");
  LUMEN_CHECK(on_step || on_epoch, "log('", name,
              "'): on_step and on_epoch are both false, so the value would go nowhere");
  LUMEN_CHECK(L.active_results != nullptr, "log('", name, "'): no loop is running");
  MetricMeta meta{.fx = L.current_fx,
                  .name = name,
                  .on_step = on_step,
                  .on_epoch = on_epoch,
                  .prog_bar = options.prog_bar,
                  .logger = options.logger,
                  .reduce = options.reduce};
  int64_t batch_size = options.batch_size > 0 ? options.batch_size : L.current_batch_size;
  if (options.sync_dist && L.comm && !L.sanity_checking) {
    dist::ReduceOp op = options.reduce == "sum"   ? dist::ReduceOp::sum
                        : options.reduce == "max" ? dist::ReduceOp::max
                        : options.reduce == "min" ? dist::ReduceOp::min
                                                  : dist::ReduceOp::avg;
    Tensor t = from_vector(std::vector<double>{value.item()}, {1});
    L.comm->all_reduce(t, op);
    L.active_results->log(meta, t.item(), batch_size);
    return;
  }
  L.active_results->log(meta, value, batch_size);
}

namespace {

// Sets the running hook's name for LightningModule::log, restoring the outer one after.
class CurrentFx {
 public:
  CurrentFx(std::string& slot, const char* name) : slot_(slot), prev_(slot) { slot_ = name; }
  ~CurrentFx() { slot_ = prev_; }
  CurrentFx(const CurrentFx&) = delete;
  CurrentFx& operator=(const CurrentFx&) = delete;

 private:
  std::string& slot_;
  std::string prev_;
};

}  // namespace

// Lightning's _call_callback_hooks: every callback in order, with the hook's name current.
void Trainer::call_callbacks(const char* hook, const std::function<void(Callback&)>& fn) {
  CurrentFx fx(loop_->current_fx, hook);
  for (const auto& cb : loop_->callbacks) {
    ProfileScope timing(loop_->profiler.get(),
                        [&] { return "[Callback]" + cb->state_key() + "." + hook; });
    fn(*cb);
  }
}

// Lightning's _call_lightning_module_hook.
void Trainer::call_module(const char* hook, const std::function<void()>& fn) {
  CurrentFx fx(loop_->current_fx, hook);
  ProfileScope timing(loop_->profiler.get(), [&] { return profiled_action(hook); });
  fn();
}

namespace {

// Lightning names actions by the Python class: the C++ class, without its namespaces.
std::string class_name(const std::type_info& type) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> demangled(
      abi::__cxa_demangle(type.name(), nullptr, nullptr, &status), std::free);
  std::string name = status == 0 && demangled ? demangled.get() : type.name();
  const size_t scope = name.rfind("::", name.find('<'));
  return scope == std::string::npos ? name : name.substr(scope + 2);
}

}  // namespace

std::string Trainer::profiled_action(const char* hook) const {
  const std::string h = hook;
  // Lightning's _call_strategy_hook runs the steps and the backward.
  if (h == "training_step" || h == "validation_step" || h == "test_step" || h == "predict_step" ||
      h == "backward")
    return std::string("[Strategy]") + (loop_->comm ? "DDPStrategy" : "SingleDeviceStrategy") +
           "." + h;
  return "[LightningModule]" + class_name(typeid(*loop_->model)) + "." + h;
}

ProfilerOption::ProfilerOption(const char* name) : ProfilerOption(std::string(name)) {}

ProfilerOption::ProfilerOption(const std::string& name) {
  if (name.empty()) return;
  LUMEN_CHECK(name == "simple", "Trainer: profiler \"", name,
              "\" is not one Lumen has; use \"simple\" (Lightning's SimpleProfiler) or a "
              "std::shared_ptr to a Profiler of your own");
  profiler = std::make_shared<SimpleProfiler>();
}

namespace {

// What configure_optimizers returned, checked against the module's optimization mode and the
// Trainer's options (Lightning's configuration validator and _configure_schedulers).
void check_optimizer_config(const OptimizerConfig& config, const LightningModule& model,
                            const TrainerOptions& options) {
  const size_t n = config.optimizers.size();
  LUMEN_CHECK(n > 0, "configure_optimizers returned no optimizer (Lumen's Trainer needs one)");
  for (size_t i = 0; i < n; ++i)
    LUMEN_CHECK(config.optimizers[i] != nullptr, "configure_optimizers: optimizer ", i, " is null");
  if (model.automatic_optimization) {
    LUMEN_CHECK(n == 1, "configure_optimizers returned ", n,
                " optimizers; several optimizers need manual optimization: set "
                "automatic_optimization = false in the module's constructor, and step them in "
                "training_step (auto [opt_a, opt_b] = optimizers<2>(); ... manual_backward(loss); "
                "opt_a.step();)");
  } else {
    LUMEN_CHECK(!options.gradient_clip_val || *options.gradient_clip_val == 0.0,
                "gradient_clip_val = ", options.gradient_clip_val.value_or(0.0),
                ": automatic gradient clipping is not supported for manual optimization; remove "
                "it and call clip_gradients(optimizer, value) in training_step, or use automatic "
                "optimization");
    LUMEN_CHECK(options.accumulate_grad_batches == 1,
                "accumulate_grad_batches = ", options.accumulate_grad_batches,
                ": automatic gradient accumulation is not supported for manual optimization; "
                "remove it and step the optimizer every N batches in training_step, or use "
                "automatic optimization");
  }
  for (const SchedulerConfig& s : config.lr_schedulers) {
    LUMEN_CHECK(s.scheduler != nullptr,
                "configure_optimizers: an lr_scheduler config holds no scheduler");
    LUMEN_CHECK(s.interval == "epoch" || s.interval == "step",
                "configure_optimizers: lr_scheduler interval must be \"epoch\" or \"step\", "
                "got \"",
                s.interval, "\"");
    LUMEN_CHECK(s.frequency >= 1, "configure_optimizers: lr_scheduler frequency must be >= 1, got ",
                s.frequency);
    // Under manual optimization the module steps a plateau scheduler with its metric itself.
    LUMEN_CHECK(!model.automatic_optimization || !s.scheduler->needs_metric() || !s.monitor.empty(),
                "configure_optimizers: ", s.scheduler->type_name(),
                " steps on a metric; set the scheduler config's monitor, e.g. "
                "{.monitor = \"val_loss\"}");
    bool ours = std::any_of(config.optimizers.begin(), config.optimizers.end(),
                            [&](const auto& o) { return o.get() == &s.scheduler->optimizer(); });
    LUMEN_CHECK(ours, "configure_optimizers: a ", s.scheduler->type_name(),
                " belongs to an optimizer that configure_optimizers did not return");
  }
}

// A copy of `loader` with its seed (the same order), unshuffled when `unshuffled`: for
// overfit_batches and validation on training data, for a validation loader that is the train
// loader itself (two loops never share one loader's epoch), and for DDP's shards (the user's
// loader stays whole).
std::shared_ptr<DataLoader> loader_copy(const std::shared_ptr<DataLoader>& loader,
                                        bool unshuffled) {
  DataLoaderOptions opts = loader->options();
  if (unshuffled) opts.shuffle = false;
  opts.seed = loader->seed();  // the same order
  // Aliasing shared_ptr: the dataset stays alive as long as the original loader does.
  std::shared_ptr<const Dataset> dataset(loader, &loader->dataset());
  return std::make_shared<DataLoader>(dataset, opts);
}

// Lightning's _parse_num_batches: a fraction that selects no batch of a non-empty loader is
// an error, not a silent zero.
int64_t limited_batches(const CountOrFraction& limit, int64_t total, const char* option,
                        const char* loader) {
  int64_t n = limit.of(total);
  LUMEN_CHECK(n > 0 || limit.is_count || limit.value == 0.0 || total == 0, "Trainer: ", option,
              " = ", limit.value, " of the ", loader, "'s ", total,
              " batches selects none; increase it or use a batch count");
  return n;
}

// What a stage without its loader says: given a DataModule, its hook returned none; given
// loaders (or none), neither was a loader passed nor does the module's hook return one.
std::string no_loader(const std::string& stage, const std::string& hook, bool given_loaders) {
  if (!given_loaders)
    return "Trainer." + stage + ": the DataModule's " + hook + "() returned no loader";
  return "Trainer." + stage + ": no loader: pass one to " + stage +
         "(model, loader), or a DataModule, or override the LightningModule's " + hook + "()";
}

}  // namespace

// Lightning's data connector: asks the DataModule for the running stage's loaders and
// resolves the limits into batch counts.
void Trainer::resolve_loaders() {
  Loop& L = *loop_;
  DataModule& data = *L.data;
  const bool given = L.data == L.given_loaders.get();
  // DDP: each rank loads its shard of a copy of the loader (Lightning's
  // use_distributed_sampler), so a loader the user passed stays whole.
  auto shard = [&](std::shared_ptr<DataLoader> loader) {
    if (!loader || !L.comm || !options_.use_distributed_sampler) return loader;
    std::shared_ptr<DataLoader> copy = loader_copy(loader, false);
    distribute_loader(*copy, *L.comm);
    return copy;
  };

  L.train_loader = L.val_loader = L.test_loader = L.predict_loader = nullptr;
  L.num_training_batches = L.num_val_batches = L.num_test_batches = L.num_predict_batches = 0;
  if (L.stage == "fit") {
    auto train = data.train_dataloader();
    LUMEN_CHECK(train != nullptr, no_loader("fit", "train_dataloader", given));
    L.train_loader = shard(L.overfit ? loader_copy(train, true) : train);
    L.num_training_batches = limited_batches(L.limit_train, L.train_loader->size(),
                                             "limit_train_batches", "train_dataloader");
    std::shared_ptr<DataLoader> val = L.overfit ? loader_copy(train, true) : data.val_dataloader();
    if (val && val == L.train_loader) val = loader_copy(val, false);
    L.val_loader = shard(val);
    if (val)
      L.num_val_batches =
          limited_batches(L.limit_val, L.val_loader->size(), "limit_val_batches", "val_dataloader");
    // Lightning's val_check_batch: an integer interval counts batches, a fraction is of the
    // epoch's batches (at least 1).
    if (L.val_check_interval.is_count) {
      L.val_check_batch = static_cast<int64_t>(L.val_check_interval.value);
      LUMEN_CHECK(L.val_check_batch <= L.num_training_batches || L.val_loader == nullptr,
                  "Trainer: val_check_interval = ", L.val_check_batch,
                  " must be at most the number of training batches (", L.num_training_batches, ")");
    } else {
      L.val_check_batch =
          std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(L.num_training_batches) *
                                                    L.val_check_interval.value));
    }
  } else if (L.stage == "validate") {
    auto val = data.val_dataloader();
    LUMEN_CHECK(val != nullptr, no_loader("validate", "val_dataloader", given));
    L.val_loader = shard(val);
    L.num_val_batches =
        limited_batches(L.limit_val, L.val_loader->size(), "limit_val_batches", "val_dataloader");
  } else if (L.stage == "test") {
    auto test = data.test_dataloader();
    LUMEN_CHECK(test != nullptr, no_loader("test", "test_dataloader", given));
    L.test_loader = shard(test);
    L.num_test_batches = limited_batches(L.limit_test, L.test_loader->size(), "limit_test_batches",
                                         "test_dataloader");
  } else if (L.stage == "predict") {
    auto pred = data.predict_dataloader();
    LUMEN_CHECK(pred != nullptr, no_loader("predict", "predict_dataloader", given));
    L.predict_loader = shard(pred);
    L.num_predict_batches = limited_batches(L.limit_predict, L.predict_loader->size(),
                                            "limit_predict_batches", "predict_dataloader");
  }
}

// Lightning's Trainer._run (and _call_and_handle_interrupt around it): the same sequence for
// every stage, with `body` the stage's loop.
void Trainer::run_stage(LightningModule& model, DataModule& data, const std::string& stage,
                        const std::string& ckpt_path, const std::function<void()>& body) {
  Loop& L = *loop_;
  LUMEN_CHECK(L.stage.empty(), "Trainer.", stage, ": the trainer is already running ", L.stage,
              " (fit/validate/test/predict called from inside a hook)");
  L.model = &model;
  L.data = &data;
  model.trainer_link_ = L.attachment;
  L.stage = stage;
  // A failed stage may have left a scaler check without its update.
  if (L.scaler) L.scaler->clear_optimizer_states();
  L.training = L.validating = L.testing = L.predicting = L.sanity_checking = false;
  L.current_fx.clear();
  L.active_results = nullptr;
  L.epoch_end_reached = false;
  L.refresh_pending = false;
  // Lightning's reset_results / reset_metrics at the start of a run.
  L.train_results.reset();
  L.val_results.reset();
  L.test_results.reset();
  L.callback_metrics.clear();
  L.progress_bar_metrics.clear();
  L.logged_metrics.clear();
  L.stage_epoch_metrics.clear();
  L.resume_phase.reset();
  if (stage == "fit") L.should_stop = false;
  try {
    // Lightning runs every stage inside set_detect_anomaly(detect_anomaly).
    DetectAnomalyGuard anomaly(options_.detect_anomaly);
    // Lightning's prepare_data_per_node: local rank 0 of each node prepares (downloads, checks
    // files) while the node's other ranks wait; then every rank sets up.
    const std::string data_name = "[LightningDataModule]" + class_name(typeid(data)) + ".";
    run_and_agree(L.comm.get(), "Trainer", "the DataModule's prepare_data",
                  !L.comm || L.comm->local_rank() == 0, [&] {
                    ProfileScope timing(L.profiler.get(),
                                        [&] { return data_name + "prepare_data"; });
                    data.prepare_data();
                  });
    // _call_setup_hook: the DataModule, then the callbacks and the module.
    run_and_agree(L.comm.get(), "Trainer", "the DataModule's setup", true, [&] {
      CurrentFx fx(L.current_fx, "setup");
      ProfileScope timing(L.profiler.get(), [&] { return data_name + "setup"; });
      data.setup(stage);
    });
    // DDP: every rank uses the log directory rank 0 resolves (a logger's next free version
    // would differ once rank 0 has created its directory).
    if (L.comm) {
      std::string mine;
      if (is_global_zero())
        mine = L.loggers.empty() ? options_.default_root_dir : L.loggers[0]->log_dir();
      L.shared_log_dir = L.comm->broadcast_string(mine);
    }
    if (L.profiler)
      L.profiler->setup(stage, L.comm ? std::optional<int>(L.comm->local_rank()) : std::nullopt,
                        log_dir(), is_global_zero());
    run_and_agree(L.comm.get(), "Trainer", "a callback's or the module's setup", true, [&] {
      call_callbacks("setup", [&](Callback& cb) { cb.setup(*this, model, stage); });
      call_module("setup", [&] { model.setup(stage); });
    });

    // The strategy's device: "auto" takes the GPU when there is one; under DDP the GPU of the
    // process's local rank, and NCCL for the model's tensors (made once per Trainer: every rank
    // reaches this point of the same stage together, so the collective setup matches).
    bool cuda = accelerator_uses_cuda(options_.accelerator, "Trainer");
    L.device = cuda ? Device::cuda(0) : Device::cpu();
    L.device_comm = L.comm;
    if (L.comm && cuda) {
      L.device = gpu_of_process(*L.comm, "Trainer");
      if (!L.nccl) L.nccl = nccl_communicator(L.comm, L.device, "Trainer");
      L.device_comm = L.nccl;
    }
    model.to(L.device);
    // Lightning's layer sync, applied when fitting (evaluation runs in eval mode, which uses
    // the running statistics); taken away again when the stage ends, so the module holds no
    // reference to this Trainer's communicator afterwards.
    if (options_.sync_batchnorm && L.comm && stage == "fit")
      L.sync_batch_norm_group = convert_sync_batchnorm(model, L.device_comm);
    L.collectives_in_backward = L.comm && has_synced_batch_norm(model);

    resolve_loaders();

    if (stage == "fit") {
      CurrentFx fx(L.current_fx, "configure_optimizers");
      OptimizerConfig config = [&] {
        ProfileScope timing(L.profiler.get(),
                            [&] { return profiled_action("configure_optimizers"); });
        return model.configure_optimizers();
      }();
      check_optimizer_config(config, model, options_);
      L.optimizers = config.optimizers;
      L.schedulers = config.lr_schedulers;
      if (L.comm) follow_trainable_parameters();
    }

    std::optional<State> checkpoint;
    if (!ckpt_path.empty()) {
      // DDP: rank 0 may still be writing the checkpoint the others are about to read.
      if (L.comm) L.comm->barrier();
      std::string path = resolve_checkpoint_path(ckpt_path);
      checkpoint = io::load_checkpoint(path);
      restore_modules_and_callbacks(*checkpoint, path);
    }

    if (stage == "fit") {
      call_callbacks("on_fit_start", [&](Callback& cb) { cb.on_fit_start(*this, model); });
      call_module("on_fit_start", [&] { model.on_fit_start(); });
    }
    // Lightning's _log_hyperparams.
    if (!model.hparams().empty() && is_global_zero())
      for (const auto& lg : L.loggers) lg->log_hyperparams(model.hparams());

    if (checkpoint && stage == "fit") restore_training_state(*checkpoint);
    // DDP starts every rank from rank 0's parameters and buffers.
    if (L.comm && stage == "fit") broadcast_module_state(model, *L.device_comm, false);

    // deterministic: Lumen's CPU kernels split work by element count and thread count only
    // (kernels/cpu/parallel.h) and combine partial results in a fixed order, and loaders hand
    // batches over by index, so the one source of run-to-run variation left is OpenMP
    // choosing a smaller team on its own; dynamic adjustment is turned off.
    if (options_.deterministic) omp_set_dynamic(0);
    // Lightning's _run_stage starts from clean gradients.
    model.zero_grad();
    body();

    if (stage == "fit") {
      call_callbacks("on_fit_end", [&](Callback& cb) { cb.on_fit_end(*this, model); });
      call_module("on_fit_end", [&] { model.on_fit_end(); });
    }
    // _call_teardown_hook: the DataModule, the callbacks, the module, then the loggers finish.
    {
      CurrentFx fx(L.current_fx, "teardown");
      ProfileScope timing(L.profiler.get(), [&] { return data_name + "teardown"; });
      data.teardown(stage);
    }
    model.untoggle_all();
    revert_sync_batchnorm(model, std::exchange(L.sync_batch_norm_group, nullptr));
    call_callbacks("teardown", [&](Callback& cb) { cb.teardown(*this, model, stage); });
    call_module("teardown", [&] { model.teardown(stage); });
    // The 16-bit weight copies autocast kept across this stage's steps go with it, as
    // torch.autocast's cast cache goes when its region ends.
    if (L.autocast_dtype) autocast::clear_weight_copies();
    if (L.buckets) L.ddp_stats = L.buckets->stats();
    L.buckets.reset();
    if (is_global_zero())
      for (const auto& lg : L.loggers) lg->finalize("success");
    // _call_teardown_hook ends with the profiler's report.
    if (L.profiler) L.profiler->describe();
  } catch (const std::exception& e) {
    // Lightning's _interrupt: the callbacks learn of the exception, the loggers close as
    // "failed", and the exception goes on to the caller. The last batch's step values still
    // reach callback_metrics if they can be read.
    try {
      flush_refresh();
    } catch (const std::exception&) {
      L.refresh_pending = false;
    }
    L.current_fx.clear();
    model.untoggle_all();  // a training_step that failed between toggle and untoggle
    if (L.autocast_dtype) autocast::clear_weight_copies();
    revert_sync_batchnorm(model, std::exchange(L.sync_batch_norm_group, nullptr));
    call_callbacks("on_exception", [&](Callback& cb) { cb.on_exception(*this, model, e); });
    L.buckets.reset();
    if (is_global_zero())
      for (const auto& lg : L.loggers) lg->finalize("failed");
    L.stage.clear();
    L.training = L.validating = L.testing = L.predicting = L.sanity_checking = false;
    L.active_results = nullptr;
    L.current_fx.clear();
    throw;
  }
  flush_refresh();
  L.stage.clear();
  L.training = L.validating = L.testing = L.predicting = L.sanity_checking = false;
  L.active_results = nullptr;
  L.current_fx.clear();
}

void Trainer::fit(LightningModule& model, DataModule& data, const std::string& ckpt_path) {
  run_stage(model, data, "fit", ckpt_path, [&] {
    // Lightning's _run_stage for fitting: the sanity check, then the fit loop.
    run_sanity_check();
    fit_loop();
  });
}

std::map<std::string, double> Trainer::validate(LightningModule& model, DataModule& data,
                                                const std::string& ckpt_path, bool verbose) {
  run_stage(model, data, "validate", ckpt_path,
            [&] { evaluation_loop("validation", loop_->num_val_batches); });
  if (verbose && is_global_zero())
    std::cout << format_results_table("validate", loop_->stage_epoch_metrics) << std::flush;
  return loop_->stage_epoch_metrics;
}

std::map<std::string, double> Trainer::test(LightningModule& model, DataModule& data,
                                            const std::string& ckpt_path, bool verbose) {
  run_stage(model, data, "test", ckpt_path,
            [&] { evaluation_loop("test", loop_->num_test_batches); });
  if (verbose && is_global_zero())
    std::cout << format_results_table("test", loop_->stage_epoch_metrics) << std::flush;
  return loop_->stage_epoch_metrics;
}

std::vector<Tensor> Trainer::predict(LightningModule& model, DataModule& data,
                                     const std::string& ckpt_path) {
  std::vector<Tensor> out;
  run_stage(model, data, "predict", ckpt_path, [&] { out = predict_loop(); });
  return out;
}

namespace {

// The DataModule of a stage given loaders instead of one (Lightning's _DataHookSelector): each
// loader given, or else the module's hook for it.
class GivenLoaders : public DataModule {
 public:
  GivenLoaders(LightningModule& model, std::shared_ptr<DataLoader> train,
               std::shared_ptr<DataLoader> val, std::shared_ptr<DataLoader> test,
               std::shared_ptr<DataLoader> predict)
      : model_(model),
        train_(std::move(train)),
        val_(std::move(val)),
        test_(std::move(test)),
        predict_(std::move(predict)) {}
  std::shared_ptr<DataLoader> train_dataloader() override {
    return train_ ? train_ : model_.train_dataloader();
  }
  std::shared_ptr<DataLoader> val_dataloader() override {
    return val_ ? val_ : model_.val_dataloader();
  }
  std::shared_ptr<DataLoader> test_dataloader() override {
    return test_ ? test_ : model_.test_dataloader();
  }
  std::shared_ptr<DataLoader> predict_dataloader() override {
    return predict_ ? predict_ : model_.predict_dataloader();
  }

 private:
  LightningModule& model_;
  std::shared_ptr<DataLoader> train_, val_, test_, predict_;
};

}  // namespace

DataModule& Trainer::given_loaders(LightningModule& model, std::shared_ptr<DataLoader> train,
                                   std::shared_ptr<DataLoader> val,
                                   std::shared_ptr<DataLoader> test,
                                   std::shared_ptr<DataLoader> predict) {
  // A stage called from inside another (a hook) is refused by run_stage; the running stage's
  // loaders must outlive that refusal.
  LUMEN_CHECK(loop_->stage.empty(), "Trainer: a stage was called while ", loop_->stage,
              " runs; call fit, validate, test and predict one after the other");
  loop_->given_loaders = std::make_unique<GivenLoaders>(model, std::move(train), std::move(val),
                                                        std::move(test), std::move(predict));
  return *loop_->given_loaders;
}

void Trainer::fit(LightningModule& model, std::shared_ptr<DataLoader> train_loader,
                  std::shared_ptr<DataLoader> val_loader, const std::string& ckpt_path) {
  fit(model, given_loaders(model, std::move(train_loader), std::move(val_loader), nullptr, nullptr),
      ckpt_path);
}

std::map<std::string, double> Trainer::validate(LightningModule& model,
                                                std::shared_ptr<DataLoader> loader,
                                                const std::string& ckpt_path, bool verbose) {
  return validate(model, given_loaders(model, nullptr, std::move(loader), nullptr, nullptr),
                  ckpt_path, verbose);
}

std::map<std::string, double> Trainer::test(LightningModule& model,
                                            std::shared_ptr<DataLoader> loader,
                                            const std::string& ckpt_path, bool verbose) {
  return test(model, given_loaders(model, nullptr, nullptr, std::move(loader), nullptr), ckpt_path,
              verbose);
}

std::vector<Tensor> Trainer::predict(LightningModule& model, std::shared_ptr<DataLoader> loader,
                                     const std::string& ckpt_path) {
  return predict(model, given_loaders(model, nullptr, nullptr, nullptr, std::move(loader)),
                 ckpt_path);
}

void Trainer::fit(LightningModule& model, const std::string& ckpt_path) {
  fit(model, std::shared_ptr<DataLoader>(), nullptr, ckpt_path);
}

std::map<std::string, double> Trainer::validate(LightningModule& model,
                                                const std::string& ckpt_path, bool verbose) {
  return validate(model, std::shared_ptr<DataLoader>(), ckpt_path, verbose);
}

std::map<std::string, double> Trainer::test(LightningModule& model, const std::string& ckpt_path,
                                            bool verbose) {
  return test(model, std::shared_ptr<DataLoader>(), ckpt_path, verbose);
}

std::vector<Tensor> Trainer::predict(LightningModule& model, const std::string& ckpt_path) {
  return predict(model, std::shared_ptr<DataLoader>(), ckpt_path);
}

// seed_everything: the default Philox generator is the only source of randomness in Lumen
// (initialisers, dropout, rand/randn, and the default seed of DataLoader shuffling), so
// seeding it seeds everything.
uint64_t seed_everything(uint64_t seed) {
  manual_seed(seed);
  return seed;
}

}  // namespace lumen
