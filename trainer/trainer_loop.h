#pragma once
// The state of a Trainer's loops (Trainer::Loop), shared by trainer.cpp, fit_loop.cpp,
// evaluation_loop.cpp and checkpoint_state.cpp. Not part of the public API.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "trainer/gradient_buckets.h"
#include "trainer/metric_aggregator.h"
#include "trainer/precision.h"
#include "trainer/sync_batch_norm.h"
#include "trainer/trainer.h"

namespace lumen {

// Where a fit was when a checkpoint was written, so a resumed fit does exactly what the
// interrupted one still had to do (DESIGN.md, Determinism). Saved as /trainer attrs.
enum class FitPhase {
  idle,             // between epochs: start epoch `current_epoch` from its first batch
  batch,            // inside batch `batches_completed - 1` (on_train_batch_end): its tail
                    // (validation check, plateau schedulers, step counter) is still to run
  validation,       // inside the validation run after that batch: the tail minus validation
  between_batches,  // before batch `batches_completed` (on_train_epoch_start/batch_start)
  epoch_end,        // inside on_train_epoch_end: the epoch's metrics and schedulers remain
};
const char* fit_phase_name(FitPhase phase);
FitPhase parse_fit_phase(const std::string& name);

// Times its scope as the action make_name() names when the Trainer has a profiler (the name is
// only made then).
class ProfileScope {
 public:
  template <class MakeName>
  ProfileScope(Profiler* profiler, MakeName&& make_name) {
    if (profiler) scope_.emplace(profiler, make_name());
  }

 private:
  std::optional<Profiler::Scope> scope_;
};

struct Trainer::Loop {
  std::shared_ptr<Profiler> profiler;   // TrainerOptions::profiler, or null
  int64_t accumulate_grad_batches = 1;  // the option, or what a callback set (per epoch)
  // What attached modules hold a weak reference to (LightningModule::trainer()).
  std::shared_ptr<Trainer* const> attachment;
  // What fit/validate/test/predict work on.
  LightningModule* model = nullptr;
  DataModule* data = nullptr;
  // The DataModule made of the loaders a stage was given (or of the module's hooks), kept
  // until the next stage since `data` points at it.
  std::unique_ptr<DataModule> given_loaders;
  std::vector<std::shared_ptr<Callback>> callbacks;
  std::vector<std::shared_ptr<Logger>> loggers;
  std::vector<std::shared_ptr<optim::Optimizer>> optimizers;
  std::vector<SchedulerConfig> schedulers;
  Device device = Device::cpu();

  // The DDP strategy: its communicator (null on a single device), the gradient buckets of a
  // running fit, and the log directory rank 0 chose for this run (every rank uses it).
  std::shared_ptr<dist::Communicator> comm;
  // The communicator of the model's tensors (gradient buckets, the start-of-fit broadcast):
  // comm itself on the CPU; on GPUs an NCCL communicator over comm's processes (comm stays
  // for the host-side collectives: metrics, seeds, the log directory, barriers).
  std::shared_ptr<dist::Communicator> device_comm;
  std::shared_ptr<dist::Communicator> nccl;  // made at the first GPU stage, kept after
  std::unique_ptr<GradientBuckets> buckets;
  // The process group sync_batchnorm gave the module's BatchNorms for this fit (null if none).
  std::shared_ptr<nn::ProcessGroup> sync_batch_norm_group;
  bool collectives_in_backward = false;  // has_synced_batch_norm(model) when the stage started
  GradientBuckets::Stats ddp_stats;      // of the last fit, kept when its buckets go
  std::optional<std::string> shared_log_dir;

  // Mixed precision (Lightning's MixedPrecision plugin): the resolved precision flag, the
  // autocast dtype of the step hooks (none for "32-true") and the loss scaler of "16-mixed".
  std::string precision = "32-true";
  std::optional<DType> autocast_dtype;
  std::unique_ptr<optim::GradScaler> scaler;
  // Manual optimization: whether this training step ran a manual_backward.
  bool manual_backward_ran = false;

  // Loaders of the running stage. With overfit_batches the train loader is an unshuffled
  // copy of the user's, and validation runs on another copy of it; under DDP each is a copy
  // sharded for this rank.
  std::shared_ptr<DataLoader> train_loader, val_loader, test_loader, predict_loader;
  int64_t num_training_batches = 0, num_val_batches = 0, num_test_batches = 0,
          num_predict_batches = 0;
  int64_t val_check_batch = 0;  // validate after every val_check_batch-th train batch

  // Resolved options (fast_dev_run and overfit_batches override some, as Lightning does).
  int64_t max_epochs = 1000;
  int64_t max_steps = -1;
  int64_t num_sanity_val_steps = 2;
  int64_t log_every_n_steps = 50;
  CountOrFraction val_check_interval = 1.0;
  CountOrFraction limit_train = 1.0, limit_val = 1.0, limit_test = 1.0, limit_predict = 1.0;
  bool overfit = false;

  // Running state (Lightning's names).
  std::string stage;  // "fit", "validate", "test", "predict", or "" when idle
  bool training = false, validating = false, testing = false, predicting = false;
  bool sanity_checking = false;
  std::string current_fx;  // the hook running now: LightningModule::log reads it
  int64_t current_epoch = 0;
  int64_t global_step = 0;
  // Lightning's _batches_that_stepped: the step loggers see. Under automatic optimization it
  // lags global_step by one while a batch ends, as in Lightning's CSV files (the first row of
  // log_every_n_steps=50 has step 49); under manual optimization it counts batches, however
  // many steps each took.
  int64_t batches_that_stepped = 0;
  int64_t batch_idx = -1;         // of the running loop's current batch
  int64_t batches_completed = 0;  // train batches of this epoch whose training step ran
  bool is_last_batch = false;
  bool should_stop = false;
  FitPhase phase = FitPhase::idle;
  int64_t current_batch_size = 1;
  int64_t eval_batches_logged = 0;  // step of eval metrics logged per step

  // Logged metrics (Lightning's logger connector): one aggregator per loop; the maps are
  // refreshed from the active one whenever read.
  MetricAggregator train_results{true}, val_results{false}, test_results{false};
  MetricAggregator* active_results = nullptr;
  bool epoch_end_reached = false;  // the active results show epoch values
  std::map<std::string, double> callback_metrics, progress_bar_metrics, logged_metrics;
  bool refresh_pending = false;  // a training batch's refresh_metrics, deferred
  std::map<std::string, double> stage_epoch_metrics;  // what validate()/test() return

  // A fit resumed from a checkpoint: where the interrupted one was.
  std::optional<FitPhase> resume_phase;
};

}  // namespace lumen
