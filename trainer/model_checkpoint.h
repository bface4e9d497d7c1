#pragma once
// ModelCheckpoint, as Lightning's: saves checkpoints while fitting, keeping the best k by a
// monitored metric (or the latest, without one), optionally a "last" checkpoint too.
//
// When it saves (Lightning's rules): after every `every_n_train_steps` optimizer steps
// (on_train_batch_end); otherwise every `every_n_epochs` epochs, at the end of the training
// epoch when save_on_train_epoch_end (default: when there is no validation, or validation
// runs once per epoch every epoch) or else at the end of validation. Never during the sanity
// check, fast_dev_run, or outside fit, and at most once per global step.
//
// File names come from `filename`, a template such as "{epoch}-{val_acc:.3f}": each {name} or
// {name:spec} is replaced by the metric (epoch and step as integers; a missing metric reads
// 0), prefixed by "name=" when auto_insert_metric_name, spec being printf-style ('.3f',
// '02d'). Then ".ckpt"; a name that already exists gets "-v1", "-v2", ... instead of being
// overwritten.
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "trainer/callback.h"

namespace lumen {

struct ModelCheckpointOptions {
  std::string dirpath = "";   // "": <trainer.log_dir()>/checkpoints
  std::string filename = "";  // "": "{epoch}-{step}", i.e. "epoch=3-step=120"
  std::string monitor = "";   // "": no metric; the latest checkpoint is kept
  std::string mode = "min";   // "min" or "max": which scores are better
  int64_t save_top_k = 1;     // k best checkpoints; -1: every one; 0: none (save_last still)
  bool save_last = false;     // also keep "last.ckpt", re-saved at every save point
  // Weights, hyper-parameters and counters only (Trainer::save_checkpoint's weights_only):
  // smaller files that load for validate/test/predict but cannot resume a fit.
  bool save_weights_only = false;
  // Unset both: every_n_epochs = 1. Mutually exclusive.
  std::optional<int64_t> every_n_epochs = std::nullopt;
  std::optional<int64_t> every_n_train_steps = std::nullopt;
  std::optional<bool> save_on_train_epoch_end = std::nullopt;
  bool auto_insert_metric_name = true;
  bool verbose = false;
  bool enable_version_counter = true;  // "-v1" suffixes instead of overwriting
};

// Fills a checkpoint filename template (without directory or ".ckpt"). `metrics` holds the
// values; those named in `integer_keys` print as integers without a spec (epoch, step).
std::string format_checkpoint_filename(
    const std::string& filename_template, const std::map<std::string, double>& metrics,
    bool auto_insert_metric_name, const std::vector<std::string>& integer_keys = {"epoch", "step"});

class ModelCheckpoint : public Callback {
 public:
  explicit ModelCheckpoint(ModelCheckpointOptions options = {});

  // Lightning's key, e.g. "ModelCheckpoint{'monitor': 'val_loss', 'mode': 'min',
  // 'every_n_train_steps': 0, 'every_n_epochs': 1, 'train_time_interval': None}".
  std::string state_key() const override;

  void setup(Trainer& trainer, LightningModule&, const std::string& stage) override;
  void on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor& loss, const Batch&,
                          int64_t batch_idx) override;
  void on_train_epoch_end(Trainer& trainer, LightningModule&) override;
  void on_validation_end(Trainer& trainer, LightningModule&) override;

  State state_dict() const override;
  void load_state_dict(const State& state) override;

  // The directory checkpoints go to with this trainer (options.dirpath, or the default).
  std::string dirpath(const Trainer& trainer) const;
  const std::string& dirpath() const { return dirpath_; }  // as resolved; "" before setup
  void set_dirpath(const std::string& dir) { dirpath_ = dir; }

  const std::string& best_model_path() const { return best_model_path_; }
  std::optional<double> best_model_score() const { return best_model_score_; }
  const std::string& kth_best_model_path() const { return kth_best_model_path_; }
  double kth_value() const { return kth_value_; }
  const std::string& last_model_path() const { return last_model_path_; }
  std::optional<double> current_score() const { return current_score_; }
  // Path -> score of the kept top-k checkpoints, in the order they were saved.
  const std::vector<std::pair<std::string, double>>& best_k_models() const {
    return best_k_models_;
  }
  const ModelCheckpointOptions& options() const { return options_; }
  int64_t every_n_epochs() const { return every_n_epochs_; }
  int64_t every_n_train_steps() const { return every_n_train_steps_; }

  // The decision logic of one save point, without a trainer: `candidates` are the metrics
  // (with "epoch" and "step"), `write` writes a checkpoint file at the given path. Top-k
  // throws when the monitored metric is missing, naming the available ones.
  using CheckpointWriter = std::function<void(const std::string& path)>;
  void save_topk(const std::map<std::string, double>& candidates, const CheckpointWriter& write);
  void save_last_checkpoint(const std::map<std::string, double>& candidates,
                            const CheckpointWriter& write);
  // <dirpath>/<filled template>[-v<ver>].ckpt
  std::string format_checkpoint_name(const std::map<std::string, double>& candidates,
                                     const std::string& filename_template = "",
                                     std::optional<int64_t> ver = std::nullopt) const;

 private:
  bool should_skip_saving(const Trainer& trainer) const;
  bool should_save_on_train_epoch_end(const Trainer& trainer) const;
  std::map<std::string, double> monitor_candidates(const Trainer& trainer) const;
  void save(Trainer& trainer, bool topk_due);
  void save_at_epoch_boundary(Trainer& trainer);
  CheckpointWriter trainer_writer(Trainer& trainer);
  std::string missing_monitor_message(const std::map<std::string, double>& candidates) const;
  std::string interpolated_path(const std::map<std::string, double>& candidates,
                                const std::string& del_filepath) const;
  bool should_remove(const std::string& previous, const std::string& current) const;
  void update_best_and_save(double current, const std::map<std::string, double>& candidates,
                            const CheckpointWriter& write);
  bool better(double a, double b) const { return minimize_ ? a < b : a > b; }

  ModelCheckpointOptions options_;
  bool minimize_ = true;
  int64_t every_n_epochs_ = 1, every_n_train_steps_ = 0;
  std::string dirpath_;
  bool rank_zero_ = true;  // files are written and deleted, and news printed, by rank 0 only
  std::vector<std::pair<std::string, double>> best_k_models_;
  std::string best_model_path_, kth_best_model_path_, last_model_path_;
  std::optional<double> best_model_score_, current_score_;
  double kth_value_;
  int64_t last_global_step_saved_ = -1;
  bool validation_has_run_ = false;
  bool warned_missing_monitor_ = false;
};

}  // namespace lumen
