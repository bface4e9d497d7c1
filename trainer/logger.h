#pragma once
// Logger base, as Lightning's Logger: receives metrics (rank 0 only) and hyper-parameters.
#include <cstdint>
#include <map>
#include <string>

#include "nn/state.h"

namespace lumen {

class Logger {
 public:
  virtual ~Logger() = default;
  virtual std::string name() const = 0;     // "lightning_logs"
  virtual std::string version() const = 0;  // "version_3"
  // Where this run's files go, e.g. <root>/lightning_logs/version_3; ModelCheckpoint saves
  // into <log_dir>/checkpoints by default.
  virtual std::string log_dir() const = 0;
  virtual void log_metrics(const std::map<std::string, double>& metrics, int64_t step) = 0;
  virtual void log_hyperparams(const std::map<std::string, AttrValue>& params) = 0;
  virtual void save() {}                              // flush buffered writes
  virtual void finalize(const std::string& status) {  // "success", "failed", "interrupted"
    (void)status;
    save();
  }
};

}  // namespace lumen
