#pragma once
// What LightningModule::log records during one run of a loop: Lightning's ResultCollection.
// Each key "<hook>.<name>" keeps its latest value (the step view) and a running reduction over
// the epoch (the epoch view); the trainer turns both views into callback_metrics,
// progress_bar_metrics and what it sends to the loggers.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "nn/state.h"
#include "tensor/tensor.h"

namespace lumen {

struct MetricMeta {
  std::string fx;    // the hook that logged it, e.g. "training_step"
  std::string name;  // as given to log()
  bool on_step = false;
  bool on_epoch = true;
  bool prog_bar = false;
  bool logger = true;
  std::string reduce = "mean";

  bool operator==(const MetricMeta&) const = default;
  // Logged per step and per epoch, the two values go under "<name>_step" and "<name>_epoch"
  // (Lightning's "forked" names); otherwise under the name itself.
  bool forked() const { return on_step && on_epoch; }
  std::string forked_name(bool step_view) const;
};

// The three maps Lightning's ResultCollection.metrics(on_step) returns.
struct MetricViews {
  std::map<std::string, double> callback;  // for callback_metrics (monitors)
  std::map<std::string, double> log;       // for the loggers
  std::map<std::string, double> pbar;      // for the progress bar
};

class MetricAggregator {
 public:
  // `training`: the training loop's results, whose step values also reach callback_metrics
  // (evaluation loops publish epoch values only, as Lightning).
  explicit MetricAggregator(bool training) : training_(training) {}

  // One log() call. Logging a key again with other options throws, as Lightning does.
  // Epoch reduction: "mean" is sum(value_i * batch_size_i) / sum(batch_size_i), "sum" sums
  // the values, "max"/"min" keep the extreme.
  void log(const MetricMeta& meta, double value, int64_t batch_size);
  // The same for a one-element tensor on any device. Its value is read back (with every other
  // pending value, in one copy) only when a view or the state is asked for, so logging a GPU
  // loss every step does not make the host wait for the GPU every step.
  void log(const MetricMeta& meta, const Tensor& value, int64_t batch_size);

  // on_step: the latest values of keys logged with on_step; else the reductions of keys
  // logged with on_epoch.
  MetricViews metrics(bool on_step) const;
  void reset() {
    entries_.clear();
    pending_.clear();
  }
  bool empty() const { return entries_.empty(); }
  // Whether any metric goes to the loggers per step (on_step with logger): only then does a
  // step's view have anything for them.
  bool logs_steps() const;

  // The running reductions, so a run resumed mid-epoch ends the epoch with the same
  // aggregates as one that never stopped. Names may contain '/', so entries are numbered.
  State state_dict() const;
  void load_state_dict(const State& state);

 private:
  struct Entry {
    MetricMeta meta;
    double last = 0.0;         // the value of the latest log() call
    double accumulated = 0.0;  // sum of value * batch_size (mean), sum (sum), extreme (max/min)
    double weight = 0.0;       // sum of batch sizes (mean)
    int64_t updates = 0;
  };
  static double epoch_value(const Entry& e);
  Entry& entry_for(const MetricMeta& meta, int64_t batch_size);
  static void update(Entry& e, double value, int64_t batch_size);
  // Applies the pending values, in logging order.
  void resolve() const;

  struct Pending {
    std::string key;
    Tensor value;  // f64, one element, a copy
    int64_t batch_size;
  };

  bool training_;
  // Mutable: reading a view first folds the pending values in.
  mutable std::map<std::string, Entry> entries_;  // by "<fx>.<name>"
  mutable std::vector<Pending> pending_;
};

}  // namespace lumen
