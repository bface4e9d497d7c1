#pragma once
// CSVLogger, as Lightning's: metrics go to <save_dir>/<name>/version_N/metrics.csv, one row per
// log_metrics call with a "step" column, and hyper-parameters to hparams.yaml in the same
// directory. The header is the sorted union of every key seen so far; when new keys appear
// the file is rewritten under the wider header, and cells a row lacks stay empty.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "trainer/log_version.h"
#include "trainer/logger.h"

namespace lumen {

struct CSVLoggerOptions {
  std::string save_dir = ".";
  std::string name = "lightning_logs";
  LoggerVersion version = {};
  // Rows are buffered and appended every N-th step (and by save()/finalize()).
  int64_t flush_logs_every_n_steps = 100;
};

class CSVLogger : public Logger {
 public:
  explicit CSVLogger(CSVLoggerOptions options = {});
  ~CSVLogger() override;

  std::string name() const override { return options_.name; }
  // "version_N" (resolved on first use, as Lightning does, so that a logger made before an
  // earlier run's directory appears still takes the next number).
  std::string version() const override;
  std::string log_dir() const override;
  std::string save_dir() const { return options_.save_dir; }
  std::string root_dir() const { return logger_root_dir(options_.save_dir, options_.name); }
  std::string metrics_file_path() const { return log_dir() + "/metrics.csv"; }

  void log_metrics(const std::map<std::string, double>& metrics, int64_t step) override;
  void log_hyperparams(const std::map<std::string, AttrValue>& params) override;
  void save() override;

  const std::map<std::string, AttrValue>& hparams() const { return hparams_; }

 private:
  void make_log_dir();

  CSVLoggerOptions options_;
  mutable std::string version_;                              // resolved lazily
  std::vector<std::string> keys_;                            // the header so far, sorted
  std::vector<std::map<std::string, std::string>> pending_;  // rows not yet written
  std::map<std::string, AttrValue> hparams_;
};

}  // namespace lumen
