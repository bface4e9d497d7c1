#pragma once
// Throughput, as Lightning Fabric's (lightning.fabric.utilities.throughput.Throughput): rates
// over a sliding window of the last window_size updates. Each update gives totals since the
// start (time in seconds, batches, samples, optionally lengths such as tokens) and this
// device's FLOPs of the batch; compute() gives
//   time, batches, samples[, lengths]                      the latest totals
//   device/batches_per_sec = (b_last - b_first) / (t_last - t_first), device/samples_per_sec,
//   device/items_per_sec (lengths)                         once the window is full
//   device/flops_per_sec = (sum of the window's FLOPs but the first) / (t_last - t_first),
//   device/mfu = that / available_flops                    once the FLOPs window is full
// and, with world_size > 1, the same rates times world_size without the "device/" prefix
// (flops_per_sec: the sum over the ranks). "/" is the separator.
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>

namespace lumen {

struct ThroughputOptions {
  std::optional<double> available_flops = std::nullopt;  // one device's peak FLOP/s, for MFU
  int64_t world_size = 1;
  int64_t window_size = 100;
  std::string separator = "/";
};

class Throughput {
 public:
  explicit Throughput(ThroughputOptions options = {});
  // Totals since the start; each must exceed the previous update's, and samples >= batches.
  void update(double time, int64_t batches, int64_t samples,
              std::optional<int64_t> lengths = std::nullopt,
              std::optional<double> flops = std::nullopt);
  std::map<std::string, double> compute() const;
  void reset();
  // The latest update's time (0 before any).
  double last_time() const { return time_.empty() ? 0.0 : time_.back(); }

 private:
  ThroughputOptions options_;
  std::deque<double> time_, batches_, samples_, lengths_, flops_;
};

}  // namespace lumen
