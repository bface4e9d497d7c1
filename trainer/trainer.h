#pragma once
// Trainer, as Lightning's: runs the fit / validate / test / predict loops of a LightningModule
// over a DataModule's loaders, with callbacks, loggers, checkpoints and resume.
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "nn/optim/grad_scaler.h"
#include "trainer/callback.h"
#include "trainer/data_module.h"
#include "trainer/ddp_strategy.h"
#include "trainer/gradient_buckets.h"
#include "trainer/lightning_module.h"
#include "trainer/logger.h"
#include "trainer/profiler.h"
#include "trainer/timer.h"

namespace lumen {

// Lightning's int-or-float options: an integer is a count of batches, a floating value a
// fraction of the loader (limit_train_batches = 10 vs 0.25).
struct CountOrFraction {
  bool is_count = false;
  double value = 1.0;
  CountOrFraction(int v) : is_count(true), value(v) {}  // NOLINT: implicit on purpose
  CountOrFraction(int64_t v) : is_count(true), value(static_cast<double>(v)) {}  // NOLINT
  CountOrFraction(double v) : is_count(false), value(v) {}                       // NOLINT
  // How many of `total` batches this selects (a fraction rounds down, as Lightning).
  int64_t of(int64_t total) const;
};

// Lightning's `logger=` option: true (a CSVLogger under default_root_dir), false (none), one
// logger, or several.
struct LoggerOption {
  bool enabled = true;
  std::vector<std::shared_ptr<Logger>> loggers;
  LoggerOption(bool on = true) : enabled(on) {}  // NOLINT: implicit on purpose
  template <class L>
  requires std::is_base_of_v<Logger, L> LoggerOption(std::shared_ptr<L> l)  // NOLINT: implicit
      : loggers{std::shared_ptr<Logger>(std::move(l))} {}
  LoggerOption(std::vector<std::shared_ptr<Logger>> ls) : loggers(std::move(ls)) {}  // NOLINT
};

// Lightning's `profiler=` option: "" (none), "simple" (a SimpleProfiler that prints its report
// when each stage ends), or a profiler of one's own (SimpleProfiler({.filename = "perf"})).
struct ProfilerOption {
  std::shared_ptr<Profiler> profiler;
  ProfilerOption() = default;
  ProfilerOption(const char* name);         // NOLINT: implicit on purpose
  ProfilerOption(const std::string& name);  // NOLINT: implicit on purpose
  template <class P>
  requires std::is_base_of_v<Profiler, P> ProfilerOption(std::shared_ptr<P> p)  // NOLINT: implicit
      : profiler(std::move(p)) {}
};

// An entry of TrainerOptions::callbacks: a shared callback, or a callback object that is
// copied into one, so both `{std::make_shared<EarlyStopping>(...)}` and DESIGN.md's
// `{ModelCheckpoint({.monitor = "val_acc"})}` work.
struct CallbackPtr : std::shared_ptr<Callback> {
  CallbackPtr() = default;
  template <class C>
  requires std::is_base_of_v<Callback, C> CallbackPtr(std::shared_ptr<C> p)  // NOLINT: implicit
      : std::shared_ptr<Callback>(std::move(p)) {}
  template <class C>
  requires std::is_base_of_v<Callback, std::decay_t<C>> CallbackPtr(C&& c)  // NOLINT: implicit
      : std::shared_ptr<Callback>(std::make_shared<std::decay_t<C>>(std::forward<C>(c))) {}
};

struct TrainerOptions {
  // Unset: 1000, or -1 (no limit) when max_steps, max_time or a Timer callback is set, as
  // Lightning.
  std::optional<int64_t> max_epochs = std::nullopt;
  int64_t max_steps = -1;
  // Stops fit once this much time is spent: "DD:HH:MM:SS" or seconds (Lightning's max_time: a
  // Timer callback checked after every step, unless callbacks hold a Timer already).
  TimerDuration max_time = {};
  int64_t min_epochs = 0;
  int64_t accumulate_grad_batches = 1;
  std::optional<double> gradient_clip_val = std::nullopt;
  std::string gradient_clip_algorithm = "norm";  // or "value"
  CountOrFraction val_check_interval = 1.0;
  int64_t check_val_every_n_epoch = 1;
  CountOrFraction limit_train_batches = 1.0;
  CountOrFraction limit_val_batches = 1.0;
  CountOrFraction limit_test_batches = 1.0;
  CountOrFraction limit_predict_batches = 1.0;
  int64_t fast_dev_run = 0;  // true or N: N batches of train/val/test, no checkpoints or logs
  CountOrFraction overfit_batches = 0.0;
  int64_t num_sanity_val_steps = 2;
  int64_t log_every_n_steps = 50;
  std::string default_root_dir = ".";
  // Lumen's CPU kernels are deterministic by construction (work split by size and thread
  // count only, partial results combined in a fixed order; loaders hand batches over by
  // index), so deterministic = true only turns off OpenMP's dynamic team sizing
  // (omp_set_dynamic(0)), the one way a run could pick other thread counts, and so other
  // reduction orders, than the previous one. With seed_everything it makes CPU runs and
  // resumed runs bit-identical (DESIGN.md, Determinism).
  bool deterministic = false;
  // Anomaly detection while a stage runs (torch.autograd.set_detect_anomaly, as Lightning's
  // detect_anomaly): a backward that produces a NaN gradient fails, naming the op whose backward
  // produced it (autograd/anomaly_mode.h). Slow; for debugging.
  bool detect_anomaly = false;
  bool enable_progress_bar = true;
  bool enable_checkpointing = true;  // adds a ModelCheckpoint when callbacks have none
  bool enable_model_summary = true;  // adds a ModelSummary when callbacks have none
  std::vector<CallbackPtr> callbacks = {};
  ProfilerOption profiler = {};
  LoggerOption logger = true;
  std::string accelerator = "auto";  // "cpu", "cuda" (or "gpu"), "auto"
  // "32" (or "32-true"); "16-mixed": f16 autocast in the training, validation, test and
  // predict steps, and dynamic loss scaling; "bf16-mixed": bf16 autocast, no scaling ("16"
  // and "bf16" are accepted with Lightning's warning). Parameters and optimizer state stay f32
  // (DESIGN.md, Precision). On the CPU, 16-bit ops store 16 bits and compute in f32.
  std::string precision = "32";
  // The loss scaler of "16-mixed" (Lightning: plugins=[MixedPrecision("16-mixed", "cuda",
  // scaler=GradScaler(...))]); other precisions have none.
  optim::GradScalerOptions grad_scaler = {};
  StrategyOption strategy = "auto";  // "auto", "single_device", "ddp", DDPStrategy{...}
  // Under DDP, give every loader a distributed sampler (DataLoader::distribute).
  bool use_distributed_sampler = true;
  // Under DDP, the module's BatchNorms normalise with the statistics of all ranks' batches
  // while fitting (torch.nn.SyncBatchNorm; trainer/sync_batch_norm.h). Without DDP: no effect.
  bool sync_batchnorm = false;
};

class Trainer {
 public:
  explicit Trainer(TrainerOptions options = {});
  ~Trainer();

  // ckpt_path: a checkpoint file to resume from, or "last" (the newest last.ckpt of this
  // trainer's ModelCheckpoint directory), or "" to start fresh.
  void fit(LightningModule& model, DataModule& data, const std::string& ckpt_path = "");
  // Validate/test return the epoch-level metrics logged during the run (Lightning returns a
  // list with one dict per dataloader; Lumen has one loader per stage). ckpt_path "best"
  // loads the best checkpoint of the ModelCheckpoint callback first. verbose: print the
  // metrics as a table on stdout at the end (Lightning's verbose=True).
  std::map<std::string, double> validate(LightningModule& model, DataModule& data,
                                         const std::string& ckpt_path = "", bool verbose = true);
  std::map<std::string, double> test(LightningModule& model, DataModule& data,
                                     const std::string& ckpt_path = "", bool verbose = true);
  std::vector<Tensor> predict(LightningModule& model, DataModule& data,
                              const std::string& ckpt_path = "");

  // Loaders instead of a DataModule, as Lightning's fit(model, train_dataloaders,
  // val_dataloaders) and test(model, dataloaders): a null loader falls back to the module's own
  // hook (LightningModule::val_dataloader, ...). The Trainer keeps the loaders until its next
  // stage.
  void fit(LightningModule& model, std::shared_ptr<DataLoader> train_loader,
           std::shared_ptr<DataLoader> val_loader = nullptr, const std::string& ckpt_path = "");
  std::map<std::string, double> validate(LightningModule& model, std::shared_ptr<DataLoader> loader,
                                         const std::string& ckpt_path = "", bool verbose = true);
  std::map<std::string, double> test(LightningModule& model, std::shared_ptr<DataLoader> loader,
                                     const std::string& ckpt_path = "", bool verbose = true);
  std::vector<Tensor> predict(LightningModule& model, std::shared_ptr<DataLoader> loader,
                              const std::string& ckpt_path = "");
  // The training loader of the last fit (Lightning's trainer.train_dataloader), or null.
  std::shared_ptr<DataLoader> train_dataloader() const;
  // The module's own loader hooks alone, as Lightning's fit(model).
  void fit(LightningModule& model, const std::string& ckpt_path = "");
  std::map<std::string, double> validate(LightningModule& model, const std::string& ckpt_path = "",
                                         bool verbose = true);
  std::map<std::string, double> test(LightningModule& model, const std::string& ckpt_path = "",
                                     bool verbose = true);
  std::vector<Tensor> predict(LightningModule& model, const std::string& ckpt_path = "");

  // Writes the full checkpoint (DESIGN.md's schema) atomically.
  // weights_only: the module's weights, hyper-parameters and loop counters without optimizer,
  // scheduler, callback, random-generator or loss-scaler state (Lightning's weights_only), so
  // it loads for validate/test/predict but cannot resume a fit.
  void save_checkpoint(const std::string& path, bool weights_only = false);

  // What callbacks and loggers read, with Lightning's names.
  const TrainerOptions& options() const { return options_; }
  int64_t current_epoch() const;
  int64_t global_step() const;  // optimizer steps taken
  bool sanity_checking() const;
  bool training() const;      // inside the fit loop's training part
  std::string stage() const;  // "fit", "validate", "test", "predict", or "" when idle
  bool should_stop() const;
  void set_should_stop(bool stop);       // EarlyStopping's way to end fit (respects min_epochs)
  int64_t num_training_batches() const;  // of this epoch, after limits
  int64_t num_val_batches() const;
  int64_t num_test_batches() const;
  int64_t num_predict_batches() const;
  int64_t max_epochs() const;  // resolved: options.max_epochs, or 1000 / -1 per Lightning
  int64_t estimated_stepping_batches() const;
  // Batches per optimizer step now: the option, or what a callback set (Lightning's
  // trainer.accumulate_grad_batches, which GradientAccumulationScheduler sets each epoch).
  int64_t accumulate_grad_batches() const;
  void set_accumulate_grad_batches(int64_t n);
  bool is_last_batch() const;
  // Lightning's _batches_that_stepped: training batches that ended an optimization step (under
  // manual optimization, every batch), the step the loggers see.
  int64_t batches_that_stepped() const;
  // Lightning's logger connector should_update_logs, for a training batch: whether the one
  // running (or about to) is a logging step, every log_every_n_steps batches that step, or
  // one before a stop.
  bool should_update_logs() const;
  // Data parallelism (Lightning's names): one process per rank under the DDP strategy.
  bool is_global_zero() const { return global_rank() == 0; }
  int global_rank() const;
  int local_rank() const;
  int world_size() const;
  std::string strategy() const;  // "single_device" or "ddp"
  // The device this process runs the module on (Lightning's strategy.root_device): chosen from
  // `accelerator` when a stage starts (cuda:<local rank> under DDP on GPUs); the CPU before.
  Device device() const;
  // The communicator of the DDP strategy, or null.
  const std::shared_ptr<dist::Communicator>& communicator() const;
  // Lightning's strategy.reduce_boolean_decision: with all = true, true only if every rank
  // decided true; with all = false, true if any rank did. Every rank must call it.
  bool reduce_boolean_decision(bool decision, bool all = true) const;
  // The gradient all-reduce of the last (or running) DDP fit: its own time and the part of it
  // the training loop waited for after backward (bench/bench_ddp.cpp reports them).
  GradientBuckets::Stats ddp_stats() const;
  // Mixed precision: the resolved precision ("32-true", "16-mixed", "bf16-mixed"), and the
  // loss scaler of "16-mixed" (null otherwise), whose state checkpoints keep.
  std::string precision() const;
  const optim::GradScaler* grad_scaler() const;

  // Metrics: callback_metrics has the latest of everything logged (epoch aggregates under
  // their name, and "<name>_step"/"<name>_epoch" when both on_step and on_epoch);
  // progress_bar_metrics those logged with prog_bar; logged_metrics what went to loggers.
  const std::map<std::string, double>& callback_metrics() const;
  const std::map<std::string, double>& progress_bar_metrics() const;
  const std::map<std::string, double>& logged_metrics() const;

  const std::vector<std::shared_ptr<Callback>>& callbacks() const;
  const std::vector<std::shared_ptr<Logger>>& loggers() const;
  // Lightning's logger connector log_metrics: `metrics` (and "epoch") to the loggers on rank 0
  // at `step`, by default the number of batches that stepped; also into logged_metrics.
  void log_metrics(const std::map<std::string, double>& metrics,
                   std::optional<int64_t> step = std::nullopt);
  Logger* logger() const;  // the first logger, or nullptr
  // Where checkpoints and logs go by default: the first logger's log_dir, else
  // default_root_dir.
  std::string log_dir() const;
  std::string default_root_dir() const { return options_.default_root_dir; }
  const std::vector<std::shared_ptr<optim::Optimizer>>& optimizers() const;
  const std::vector<SchedulerConfig>& lr_scheduler_configs() const;
  LightningModule* lightning_module() const;

  // Called by LightningModule::log. Loggers receive step values every log_every_n_steps
  // batches that stepped (should_update_logs) and epoch values at the epoch's end, at
  // Lightning's logging step (batches_that_stepped before the current batch: 49, 99, ... for
  // log_every_n_steps = 50), each row with an "epoch" entry.
  void log_metric(const std::string& name, double value, const LogOptions& options);
  void log_metric(const std::string& name, const Tensor& value, const LogOptions& options);

 private:
  struct Loop;  // the loop state, defined in trainer/trainer_loop.h

  // trainer.cpp: what every stage shares (Lightning's Trainer._run and call.py).
  DataModule& given_loaders(LightningModule& model, std::shared_ptr<DataLoader> train,
                            std::shared_ptr<DataLoader> val, std::shared_ptr<DataLoader> test,
                            std::shared_ptr<DataLoader> predict);
  void run_stage(LightningModule& model, DataModule& data, const std::string& stage,
                 const std::string& ckpt_path, const std::function<void()>& body);
  void resolve_loaders();
  void call_callbacks(const char* hook, const std::function<void(Callback&)>& fn);
  void call_module(const char* hook, const std::function<void()>& fn);
  // The profiler's name of a module hook or a strategy action, as Lightning's:
  // "[LightningModule]Classifier.on_train_start", "[Strategy]DDPStrategy.backward".
  std::string profiled_action(const char* hook) const;
  void log_to_loggers(std::map<std::string, double> metrics, std::optional<int64_t> step);
  void refresh_metrics() const;
  void flush_refresh() const;  // the refresh a training batch deferred, if any

  // fit_loop.cpp: Lightning's _FitLoop and _TrainingEpochLoop.
  void run_sanity_check();
  void fit_loop();
  bool fit_done() const;
  bool can_stop_early() const;
  void train_epoch();
  bool epoch_done() const;
  bool train_batch(const Batch& batch, int64_t batch_idx);
  void run_automatic_optimization(const Tensor& loss, int64_t batch_idx, bool accumulate);
  void backward(const Tensor& loss, bool sync);
  void optimizer_step();
  void clip_gradients();
  void finish_train_batch(int64_t batch_idx, bool validate);
  void end_train_epoch_hooks();
  void finish_train_epoch();
  bool should_accumulate(int64_t batch_idx) const;
  bool should_check_val(int64_t batch_idx) const;
  void update_lr_schedulers(const std::string& interval, bool plateau);
  // DDP: makes the gradient buckets over the module's parameters that require grad, or remakes
  // them when that set is no longer the one they were made for (a fine-tuning callback unfroze
  // a backbone at an epoch's start). Every rank changes the set at the same point of the loop,
  // so the ranks remake their buckets together. New buckets' statistics start from zero.
  void follow_trainable_parameters();

  // manual_optimization.cpp: Lightning's _ManualOptimization, what LightningModule's
  // manual_backward and clip_gradients and LightningOptimizer::step come to.
  friend class LightningModule;
  friend class LightningOptimizer;
  friend class LRFinderCallback;  // trainer/tuner.cpp: sets the rate, sets the schedulers aside
  void check_manual_optimization(const char* what) const;
  void manual_backward(const Tensor& loss);
  bool manual_optimizer_step(optim::Optimizer& optimizer);
  void clip_optimizer_gradients(optim::Optimizer& optimizer, double value,
                                const std::string& algorithm);
  void flush_scaler_update() const;  // the loss scale adjustment manual steps left due

  // evaluation_loop.cpp: Lightning's _EvaluationLoop and _PredictionLoop.
  void evaluation_loop(const std::string& kind, int64_t max_batches);
  std::vector<Tensor> predict_loop();

  // checkpoint_state.cpp: Lightning's _CheckpointConnector.
  State dump_checkpoint(bool weights_only = false);
  std::string resolve_checkpoint_path(const std::string& ckpt_path) const;
  void restore_modules_and_callbacks(const State& checkpoint, const std::string& path);
  void restore_training_state(const State& checkpoint);

  TrainerOptions options_;
  std::unique_ptr<Loop> loop_;
};

// Seeds every generator Lumen uses (the default Philox generator; loaders default to it), as
// lightning.seed_everything. Returns the seed.
uint64_t seed_everything(uint64_t seed);

}  // namespace lumen
