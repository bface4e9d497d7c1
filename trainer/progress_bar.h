#pragma once
// ProgressBar: the terminal progress bar Trainer adds when enable_progress_bar is on (as
// Lightning's TQDMProgressBar). On a terminal one line is redrawn with '\r':
//   Epoch 3/9: 120/430 [00:04<00:10, 27.5 it/s, train_loss=0.412, val_acc=0.874]
// (epochs count from 0 up to max_epochs - 1, as Lightning's bars). Elsewhere (a log file, a
// CI console) it prints plain lines: a few per epoch (every line_every_percent of its
// batches), one at each epoch end and one after each validation or test run, so logs are
// never flooded.
#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <ostream>
#include <string>

#include "trainer/callback.h"

namespace lumen {

struct ProgressBarOptions {
  std::ostream* stream = nullptr;  // where to draw; nullptr: std::cout
  std::optional<bool> is_tty =
      std::nullopt;                 // unset: isatty(1) when drawing to std::cout, else false
  int64_t refresh_rate = 1;         // terminal: redraw every N batches
  int64_t line_every_percent = 25;  // not a terminal: a line every N% of an epoch's batches
};

class ProgressBar : public Callback {
 public:
  explicit ProgressBar(ProgressBarOptions options = {});
  std::string state_key() const override { return "ProgressBar"; }
  bool is_tty() const { return tty_; }

  // "<prefix>: <done>/<total> [<elapsed><<remaining>, <rate> it/s, k=v, ...]"; numbers have 3
  // significant digits (as tqdm's format_num), times are mm:ss (h:mm:ss past an hour).
  static std::string format(const std::string& prefix, int64_t done, int64_t total,
                            double elapsed_seconds, const std::map<std::string, double>& metrics);

  void on_train_epoch_start(Trainer& trainer, LightningModule& model) override;
  void on_train_batch_end(Trainer& trainer, LightningModule& model, const Tensor& loss,
                          const Batch& batch, int64_t batch_idx) override;
  void on_train_epoch_end(Trainer& trainer, LightningModule& model) override;
  void on_validation_start(Trainer& trainer, LightningModule& model) override;
  void on_validation_batch_end(Trainer& trainer, LightningModule& model, const Batch& batch,
                               int64_t batch_idx) override;
  void on_validation_end(Trainer& trainer, LightningModule& model) override;
  void on_test_start(Trainer& trainer, LightningModule& model) override;
  void on_test_batch_end(Trainer& trainer, LightningModule& model, const Batch& batch,
                         int64_t batch_idx) override;
  void on_test_end(Trainer& trainer, LightningModule& model) override;
  void on_predict_start(Trainer& trainer, LightningModule& model) override;
  void on_predict_batch_end(Trainer& trainer, LightningModule& model, const Batch& batch,
                            int64_t batch_idx) override;
  void on_predict_end(Trainer& trainer, LightningModule& model) override;

 private:
  using Clock = std::chrono::steady_clock;
  struct Bar {
    std::string prefix;
    int64_t done = 0, total = 0;
    Clock::time_point start;
    int64_t last_line_bucket = 0;  // non-terminal: the last line_every_percent bucket printed
  };
  std::ostream& out() const;
  double seconds_since(const Bar& bar) const;
  std::string epoch_prefix(const Trainer& trainer) const;
  // Terminal: redraws `text` over the current line.
  void redraw(const std::string& text);
  void start_eval(Trainer& trainer, const std::string& prefix, int64_t total);
  void advance_eval(Trainer& trainer);
  void end_eval(Trainer& trainer);

  ProgressBarOptions options_;
  bool tty_;
  Bar train_, eval_;
  bool eval_in_fit_ = false;  // the eval bar is a validation run inside fit
};

}  // namespace lumen
