#pragma once
// DeviceStatsMonitor, as Lightning's: logs the device's memory around every training,
// validation and test batch, on the logging steps, under
// "DeviceStatsMonitor.<hook>/<stat>" (hook: on_train_batch_start, on_train_batch_end, ...).
// Stats, with torch.cuda.memory_stats' names (memory_stats(Device) on any device):
//   allocated_bytes.all.current, allocated_bytes.all.peak, reserved_bytes.all.current
// and on the CPU (or on any device with cpu_stats) psutil's: cpu_vm_percent, cpu_swap_percent
// (from /proc/meminfo) and cpu_percent (all CPUs, since the previous reading, from /proc/stat).
#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "trainer/callback.h"

namespace lumen {

struct DeviceStatsMonitorOptions {
  // Unset: CPU stats when training on the CPU only (Lightning's default); true: on a GPU too;
  // false: none on the CPU.
  std::optional<bool> cpu_stats = std::nullopt;
};

// psutil's virtual_memory().percent, swap_memory().percent and cpu_percent() (the share of
// time the CPUs were busy since the previous call, 0 on the first), as cpu_vm_percent,
// cpu_swap_percent and cpu_percent; a key is missing where /proc lacks it (not Linux).
std::map<std::string, double> cpu_stats();

class DeviceStatsMonitor : public Callback {
 public:
  explicit DeviceStatsMonitor(DeviceStatsMonitorOptions options = {}) : options_(options) {}
  std::string state_key() const override { return "DeviceStatsMonitor"; }

  void setup(Trainer& trainer, LightningModule&, const std::string& stage) override;
  void on_train_batch_start(Trainer& trainer, LightningModule&, const Batch&, int64_t) override;
  void on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&, const Batch&,
                          int64_t) override;
  void on_validation_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                                 int64_t) override;
  void on_validation_batch_end(Trainer& trainer, LightningModule&, const Batch&, int64_t) override;
  void on_test_batch_start(Trainer& trainer, LightningModule&, const Batch&, int64_t) override;
  void on_test_batch_end(Trainer& trainer, LightningModule&, const Batch&, int64_t) override;

  // What a hook logs now (prefixed), or nothing when this step does not log.
  std::map<std::string, double> device_stats(const Trainer& trainer, const std::string& hook);

 private:
  void log(Trainer& trainer, const char* hook);
  DeviceStatsMonitorOptions options_;
};

}  // namespace lumen
