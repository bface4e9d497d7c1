#include "trainer/device_stats_monitor.h"

#include <fstream>
#include <mutex>
#include <sstream>

#include "tensor/error.h"
#include "tensor/storage.h"
#include "trainer/trainer.h"

namespace lumen {
namespace {

// Busy and total CPU time of all CPUs from /proc/stat's "cpu" line, as psutil counts them:
// user nice system idle iowait irq softirq steal (guest time is inside user already); idle
// includes iowait.
struct CpuTimes {
  double busy = 0, total = 0;
};

std::optional<CpuTimes> read_cpu_times() {
  std::ifstream f("/proc/stat");
  std::string label;
  if (!(f >> label) || label != "cpu") return std::nullopt;
  CpuTimes t;
  double v = 0;
  for (int i = 0; i < 8 && (f >> v); ++i) {
    t.total += v;
    if (i != 3 && i != 4) t.busy += v;
  }
  return t;
}

// kB values of /proc/meminfo by name.
std::map<std::string, double> read_meminfo() {
  std::map<std::string, double> m;
  std::ifstream f("/proc/meminfo");
  for (std::string line; std::getline(f, line);) {
    std::istringstream in(line);
    std::string key;
    double kb = 0;
    if (in >> key >> kb && !key.empty() && key.back() == ':') m[key.substr(0, key.size() - 1)] = kb;
  }
  return m;
}

}  // namespace

std::map<std::string, double> cpu_stats() {
  std::map<std::string, double> stats;
  std::map<std::string, double> mem = read_meminfo();
  if (mem.count("MemTotal") && mem.count("MemAvailable") && mem.at("MemTotal") > 0)
    stats["cpu_vm_percent"] =
        100.0 * (mem.at("MemTotal") - mem.at("MemAvailable")) / mem.at("MemTotal");
  if (mem.count("SwapTotal") && mem.count("SwapFree"))
    stats["cpu_swap_percent"] =
        mem.at("SwapTotal") > 0
            ? 100.0 * (mem.at("SwapTotal") - mem.at("SwapFree")) / mem.at("SwapTotal")
            : 0.0;
  static std::mutex mutex;
  static std::optional<CpuTimes> last;
  std::lock_guard<std::mutex> lock(mutex);
  if (std::optional<CpuTimes> now = read_cpu_times()) {
    double percent = 0;
    if (last && now->total > last->total)
      percent = 100.0 * (now->busy - last->busy) / (now->total - last->total);
    stats["cpu_percent"] = percent;
    last = now;
  }
  return stats;
}

void DeviceStatsMonitor::setup(Trainer& trainer, LightningModule&, const std::string& stage) {
  if (stage != "fit") return;
  LUMEN_CHECK(!trainer.loggers().empty(),
              "DeviceStatsMonitor: the Trainer has no logger (logger = false), so there is "
              "nowhere to log the device's stats");
}

std::map<std::string, double> DeviceStatsMonitor::device_stats(const Trainer& trainer,
                                                               const std::string& hook) {
  std::map<std::string, double> out;
  if (!trainer.should_update_logs()) return out;
  const Device device = trainer.device();
  const bool on_cpu = device.is_cpu();
  if (on_cpu && options_.cpu_stats == false) return out;
  const MemoryStats m = memory_stats(device);
  std::map<std::string, double> stats = {
      {"allocated_bytes.all.current", static_cast<double>(m.allocated)},
      {"allocated_bytes.all.peak", static_cast<double>(m.peak_allocated)},
      {"reserved_bytes.all.current", static_cast<double>(m.reserved)}};
  if (on_cpu || options_.cpu_stats.value_or(false)) stats.merge(cpu_stats());
  for (const auto& [key, value] : stats) out["DeviceStatsMonitor." + hook + "/" + key] = value;
  return out;
}

void DeviceStatsMonitor::log(Trainer& trainer, const char* hook) {
  std::map<std::string, double> stats = device_stats(trainer, hook);
  if (stats.empty() || !trainer.is_global_zero()) return;
  for (const auto& logger : trainer.loggers())
    logger->log_metrics(stats, trainer.batches_that_stepped());
}

void DeviceStatsMonitor::on_train_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                                              int64_t) {
  log(trainer, "on_train_batch_start");
}
void DeviceStatsMonitor::on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&,
                                            const Batch&, int64_t) {
  log(trainer, "on_train_batch_end");
}
void DeviceStatsMonitor::on_validation_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                                                   int64_t) {
  log(trainer, "on_validation_batch_start");
}
void DeviceStatsMonitor::on_validation_batch_end(Trainer& trainer, LightningModule&, const Batch&,
                                                 int64_t) {
  log(trainer, "on_validation_batch_end");
}
void DeviceStatsMonitor::on_test_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                                             int64_t) {
  log(trainer, "on_test_batch_start");
}
void DeviceStatsMonitor::on_test_batch_end(Trainer& trainer, LightningModule&, const Batch&,
                                           int64_t) {
  log(trainer, "on_test_batch_end");
}

}  // namespace lumen
