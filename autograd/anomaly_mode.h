#pragma once
// Anomaly detection, as torch.autograd.set_detect_anomaly: while it is on, the backward engine
// checks every gradient a backward function returns and fails at the first one holding a NaN,
// naming the function, which of its inputs the gradient is for, and the gradient's shape. The
// NaN's origin is then that function's forward op (a log or sqrt of a negative number, 0/0),
// not the loss that shows it many ops later. Each check reduces the gradient on its device and
// reads one number back, so it is for debugging, not for training runs. Like PyTorch's, the
// switch is one for the whole process: guards on several threads whose scopes overlap restore
// each other's settings. Under DDP the rank that fails leaves the others waiting in the
// gradient all-reduce until the timeout.
namespace lumen {

struct AnomalyMode {
  static bool is_enabled();
  static void set_enabled(bool enabled);
};

// Sets anomaly detection on (or off) for its scope and restores the previous setting, as
// torch.autograd.set_detect_anomaly(mode) used as a context manager (Trainer's detect_anomaly).
class DetectAnomalyGuard {
 public:
  explicit DetectAnomalyGuard(bool enabled = true) : prev_(AnomalyMode::is_enabled()) {
    AnomalyMode::set_enabled(enabled);
  }
  ~DetectAnomalyGuard() { AnomalyMode::set_enabled(prev_); }
  DetectAnomalyGuard(const DetectAnomalyGuard&) = delete;
  DetectAnomalyGuard& operator=(const DetectAnomalyGuard&) = delete;

 private:
  bool prev_;
};

}  // namespace lumen
