#include "trainer/progress_bar.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <sstream>

#include "trainer/trainer.h"

namespace lumen {

namespace {

// mm:ss, or h:mm:ss from an hour on (tqdm's format_interval).
std::string format_interval(double seconds) {
  int64_t s = static_cast<int64_t>(std::llround(std::max(seconds, 0.0)));
  char buf[32];
  if (s >= 3600)
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>(s / 60 % 60), static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof buf, "%02lld:%02lld", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  return buf;
}

// Three significant digits (tqdm's format_num).
std::string format_number(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

ProgressBar::ProgressBar(ProgressBarOptions options) : options_(std::move(options)) {
  if (options_.refresh_rate < 1) options_.refresh_rate = 1;
  if (options_.line_every_percent < 1) options_.line_every_percent = 1;
  tty_ = options_.is_tty.value_or(options_.stream == nullptr && isatty(1) == 1);
}

std::ostream& ProgressBar::out() const {
  return options_.stream != nullptr ? *options_.stream : std::cout;
}

std::string ProgressBar::format(const std::string& prefix, int64_t done, int64_t total,
                                double elapsed_seconds,
                                const std::map<std::string, double>& metrics) {
  std::ostringstream s;
  s << prefix << ": " << done << "/" << total << " [" << format_interval(elapsed_seconds);
  double rate = elapsed_seconds > 0 ? static_cast<double>(done) / elapsed_seconds : 0.0;
  if (done > 0 && rate > 0)
    s << "<" << format_interval(static_cast<double>(total - done) / rate) << ", "
      << format_number(rate) << " it/s";
  else
    s << "<?, ? it/s";
  for (const auto& [k, v] : metrics) s << ", " << k << "=" << format_number(v);
  s << "]";
  return s.str();
}

double ProgressBar::seconds_since(const Bar& bar) const {
  return std::chrono::duration<double>(Clock::now() - bar.start).count();
}

std::string ProgressBar::epoch_prefix(const Trainer& trainer) const {
  std::ostringstream s;
  s << "Epoch " << trainer.current_epoch();
  if (trainer.max_epochs() > 0) s << "/" << trainer.max_epochs() - 1;
  return s.str();
}

void ProgressBar::redraw(const std::string& text) {
  out() << '\r' << text << "\033[K" << std::flush;  // ESC[K clears what a longer line left
}

void ProgressBar::on_train_epoch_start(Trainer& trainer, LightningModule&) {
  train_ = Bar{epoch_prefix(trainer), 0, trainer.num_training_batches(), Clock::now(), 0};
}

void ProgressBar::on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&,
                                     const Batch&, int64_t batch_idx) {
  train_.done = batch_idx + 1;
  if (train_.total <= 0) return;
  if (tty_) {
    if (train_.done % options_.refresh_rate == 0 || train_.done == train_.total)
      redraw(format(train_.prefix, train_.done, train_.total, seconds_since(train_),
                    trainer.progress_bar_metrics()));
    return;
  }
  // A plain line each time another line_every_percent of the epoch is done, except the
  // last, which on_train_epoch_end prints with the epoch's metrics.
  int64_t bucket = train_.done * 100 / train_.total / options_.line_every_percent;
  if (bucket > train_.last_line_bucket && train_.done < train_.total) {
    train_.last_line_bucket = bucket;
    out() << format(train_.prefix, train_.done, train_.total, seconds_since(train_),
                    trainer.progress_bar_metrics())
          << '\n'
          << std::flush;
  }
}

void ProgressBar::on_train_epoch_end(Trainer& trainer, LightningModule&) {
  std::string line = format(train_.prefix, train_.done, train_.total, seconds_since(train_),
                            trainer.progress_bar_metrics());
  if (tty_) {
    redraw(line);
    out() << '\n' << std::flush;  // the finished epoch's line stays, as tqdm's leave=True
  } else {
    out() << line << '\n' << std::flush;
  }
}

void ProgressBar::start_eval(Trainer& trainer, const std::string& prefix, int64_t total) {
  eval_in_fit_ = trainer.stage() == "fit";
  eval_ = Bar{prefix, 0, total, Clock::now(), 0};
}

void ProgressBar::advance_eval(Trainer& trainer) {
  ++eval_.done;
  if (!tty_ || trainer.sanity_checking()) return;
  if (eval_.done % options_.refresh_rate != 0 && eval_.done != eval_.total) return;
  std::ostringstream eval_part;
  eval_part << " | " << eval_.prefix << " " << eval_.done << "/" << eval_.total;
  if (eval_in_fit_)  // validation inside fit shows after the epoch's bar
    redraw(format(train_.prefix, train_.done, train_.total, seconds_since(train_),
                  trainer.progress_bar_metrics()) +
           eval_part.str());
  else
    redraw(format(eval_.prefix, eval_.done, eval_.total, seconds_since(eval_), {}));
}

void ProgressBar::end_eval(Trainer& trainer) {
  if (trainer.sanity_checking()) return;
  if (eval_in_fit_) {
    if (tty_) {
      redraw(format(train_.prefix, train_.done, train_.total, seconds_since(train_),
                    trainer.progress_bar_metrics()));
    } else if (train_.done < train_.total) {
      // Mid-epoch validation gets its own line; the epoch-end one is in the epoch's line.
      out() << format(train_.prefix, train_.done, train_.total, seconds_since(train_),
                      trainer.progress_bar_metrics())
            << " validated\n"
            << std::flush;
    }
    return;
  }
  std::string line = format(eval_.prefix, eval_.done, eval_.total, seconds_since(eval_),
                            trainer.progress_bar_metrics());
  if (tty_) {
    redraw(line);
    out() << '\n' << std::flush;
  } else {
    out() << line << '\n' << std::flush;
  }
}

void ProgressBar::on_validation_start(Trainer& trainer, LightningModule&) {
  start_eval(trainer, trainer.sanity_checking() ? "Sanity Checking" : "Validation",
             trainer.sanity_checking() ? 0 : trainer.num_val_batches());
}
void ProgressBar::on_validation_batch_end(Trainer& trainer, LightningModule&, const Batch&,
                                          int64_t) {
  advance_eval(trainer);
}
void ProgressBar::on_validation_end(Trainer& trainer, LightningModule&) { end_eval(trainer); }
void ProgressBar::on_test_start(Trainer& trainer, LightningModule&) {
  start_eval(trainer, "Testing", trainer.num_test_batches());
}
void ProgressBar::on_test_batch_end(Trainer& trainer, LightningModule&, const Batch&, int64_t) {
  advance_eval(trainer);
}
void ProgressBar::on_test_end(Trainer& trainer, LightningModule&) { end_eval(trainer); }
void ProgressBar::on_predict_start(Trainer& trainer, LightningModule&) {
  start_eval(trainer, "Predicting", trainer.num_predict_batches());
}
void ProgressBar::on_predict_batch_end(Trainer& trainer, LightningModule&, const Batch&, int64_t) {
  advance_eval(trainer);
}
void ProgressBar::on_predict_end(Trainer& trainer, LightningModule&) { end_eval(trainer); }

}  // namespace lumen
