#pragma once
// TensorBoardLogger, as Lightning's: scalars go to a TensorBoard event file in
// <save_dir>/<name>/version_N (read by `tensorboard --logdir <save_dir>`), hyper-parameters
// to the HPARAMS dashboard (the hparams plugin's experiment / session start / session end
// summaries, as torch.utils.tensorboard.summary.hparams writes them) and to hparams.yaml.
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include "io/event_file_writer.h"
#include "trainer/log_version.h"
#include "trainer/logger.h"

namespace lumen {

struct TensorBoardLoggerOptions {
  std::string save_dir = ".";
  std::string name = "lightning_logs";
  LoggerVersion version = {};
  // Lightning logs a placeholder "hp_metric" = -1 with the hyper-parameters, so the HPARAMS
  // dashboard has a metric column; log "hp_metric" later to fill it.
  bool default_hp_metric = true;
};

class TensorBoardLogger : public Logger {
 public:
  explicit TensorBoardLogger(TensorBoardLoggerOptions options = {});

  std::string name() const override { return options_.name; }
  std::string version() const override;  // resolved on first use
  std::string log_dir() const override;
  std::string save_dir() const { return options_.save_dir; }
  std::string root_dir() const { return logger_root_dir(options_.save_dir, options_.name); }
  // The event file (created on the first write).
  std::string event_file_path() const { return writer_ ? writer_->path() : ""; }

  void log_metrics(const std::map<std::string, double>& metrics, int64_t step) override;
  // torch.utils.tensorboard's SummaryWriter.add_image (what Lightning users reach through
  // logger.experiment) for a grayscale image: [H, W] or [1, H, W], values in [0, 1]; shown in
  // TensorBoard's IMAGES dashboard.
  void add_image(const std::string& tag, const Tensor& image, int64_t step);
  void log_hyperparams(const std::map<std::string, AttrValue>& params) override;
  void save() override;

 private:
  io::EventFileWriter& writer();

  TensorBoardLoggerOptions options_;
  mutable std::string version_;
  std::unique_ptr<io::EventFileWriter> writer_;
  std::map<std::string, AttrValue> hparams_;
};

// The three hparams-plugin summaries (serialized Summary messages) for `params` with
// `metric_tags` as the experiment's metrics: experiment, session_start_info, session_end_info.
struct HParamsSummaries {
  std::string experiment, session_start, session_end;
};
HParamsSummaries hparams_summaries(const std::map<std::string, AttrValue>& params,
                                   const std::vector<std::string>& metric_tags);

}  // namespace lumen
