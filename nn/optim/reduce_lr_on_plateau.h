#pragma once
// ReduceLROnPlateau, as torch.optim.lr_scheduler.ReduceLROnPlateau: step(metric) once per
// validation; when the metric has not improved for more than `patience` steps, every group's
// lr becomes max(lr * factor, min_lr) (skipped when that changes it by no more than eps), then
// `cooldown` steps pass before bad steps count again. Improvement over the best value so far:
//   mode "min", threshold_mode "rel": metric < best (1 - threshold);  "abs": metric < best -
//   threshold mode "max", threshold_mode "rel": metric > best (1 + threshold);  "abs": metric >
//   best + threshold
// A NaN metric never improves.
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "nn/optim/lr_scheduler.h"

namespace lumen::optim {

struct ReduceLROnPlateauOptions {
  std::string mode = "min";  // or "max"
  double factor = 0.1;       // in [0, 1)
  int64_t patience = 10;
  double threshold = 1e-4;
  std::string threshold_mode = "rel";  // or "abs"
  int64_t cooldown = 0;
  double min_lr = 0;
  std::vector<double> min_lrs = {};  // one per group; overrides min_lr when not empty
  double eps = 1e-8;
};

class ReduceLROnPlateau : public LRScheduler {
 public:
  explicit ReduceLROnPlateau(Optimizer& optimizer, ReduceLROnPlateauOptions options = {});

  // Without the metric: an error (it cannot decide anything).
  void step() override;
  void step(double metric) override;
  bool needs_metric() const override { return true; }
  std::string type_name() const override { return "ReduceLROnPlateau"; }

  double best() const { return best_; }
  int64_t num_bad_epochs() const { return num_bad_epochs_; }
  bool in_cooldown() const { return cooldown_counter_ > 0; }

  // + attrs best, num_bad_epochs, cooldown_counter and the options.
  State state_dict() const override;
  void load_state_dict(const State& state) override;

 private:
  bool is_better(double metric) const;

  ReduceLROnPlateauOptions options_;
  double best_;
  int64_t num_bad_epochs_ = 0;
  int64_t cooldown_counter_ = 0;
};

}  // namespace lumen::optim
