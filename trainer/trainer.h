#pragma once
// Trainer, as Lightning's: runs the fit / validate / test / predict loops of a LightningModule
// over a DataModule's loaders, with callbacks, loggers, checkpoints and resume.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer/callback.h"
#include "trainer/data_module.h"
#include "trainer/lightning_module.h"
#include "trainer/logger.h"

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
  LoggerOption(bool on = true) : enabled(on) {}                       // NOLINT: implicit on purpose
  LoggerOption(std::shared_ptr<Logger> l) : loggers{std::move(l)} {}  // NOLINT
  LoggerOption(std::vector<std::shared_ptr<Logger>> ls) : loggers(std::move(ls)) {}  // NOLINT
};

struct TrainerOptions {
  std::optional<int64_t> max_epochs;  // unset: 1000 unless max_steps is set (Lightning)
  int64_t max_steps = -1;
  int64_t min_epochs = 0;
  int64_t accumulate_grad_batches = 1;
  std::optional<double> gradient_clip_val;
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
  bool deterministic = false;
  bool enable_progress_bar = true;
  bool enable_checkpointing = true;  // adds a ModelCheckpoint when callbacks have none
  bool enable_model_summary = true;  // adds a ModelSummary when callbacks have none
  std::vector<std::shared_ptr<Callback>> callbacks;
  LoggerOption logger = true;
  std::string accelerator = "auto";  // "cpu", "cuda", "auto"
  std::string precision = "32";      // "32" ("16-mixed", "bf16-mixed" come with CUDA)
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
  // loads the best checkpoint of the ModelCheckpoint callback first.
  std::map<std::string, double> validate(LightningModule& model, DataModule& data,
                                         const std::string& ckpt_path = "");
  std::map<std::string, double> test(LightningModule& model, DataModule& data,
                                     const std::string& ckpt_path = "");
  std::vector<Tensor> predict(LightningModule& model, DataModule& data,
                              const std::string& ckpt_path = "");

  // Writes the full checkpoint (DESIGN.md's schema) atomically.
  void save_checkpoint(const std::string& path);

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
  int64_t max_epochs() const;  // resolved: options.max_epochs, or 1000 / -1 per Lightning
  int64_t estimated_stepping_batches() const;
  bool is_last_batch() const;
  bool is_global_zero() const { return true; }  // rank 0 (data parallelism comes later)

  // Metrics: callback_metrics has the latest of everything logged (epoch aggregates under
  // their name, and "<name>_step"/"<name>_epoch" when both on_step and on_epoch);
  // progress_bar_metrics those logged with prog_bar; logged_metrics what went to loggers.
  const std::map<std::string, double>& callback_metrics() const;
  const std::map<std::string, double>& progress_bar_metrics() const;
  const std::map<std::string, double>& logged_metrics() const;

  const std::vector<std::shared_ptr<Callback>>& callbacks() const;
  const std::vector<std::shared_ptr<Logger>>& loggers() const;
  Logger* logger() const;  // the first logger, or nullptr
  // Where checkpoints and logs go by default: the first logger's log_dir, else
  // default_root_dir.
  std::string log_dir() const;
  std::string default_root_dir() const { return options_.default_root_dir; }
  const std::vector<std::shared_ptr<optim::Optimizer>>& optimizers() const;
  const std::vector<SchedulerConfig>& lr_scheduler_configs() const;
  LightningModule* lightning_module() const;

  // Called by LightningModule::log.
  void log_metric(const std::string& name, double value, const LogOptions& options);

 private:
  struct Loop;  // the loop state, defined in trainer.cpp
  TrainerOptions options_;
  std::unique_ptr<Loop> loop_;
};

// Seeds every generator Lumen uses (the default Philox generator; loaders default to it), as
// lightning.seed_everything. Returns the seed.
uint64_t seed_everything(uint64_t seed);

}  // namespace lumen
