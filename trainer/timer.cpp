#include "trainer/timer.h"

#include <cctype>
#include <cstdio>
#include <iostream>

#include "tensor/error.h"
#include "trainer/trainer.h"

namespace lumen {

double parse_duration(const std::string& text) {
  // Lightning's regex (\d+):(\d\d):(\d\d):(\d\d) on the stripped string.
  size_t b = text.find_first_not_of(" \t\n");
  size_t e = text.find_last_not_of(" \t\n");
  std::string s = b == std::string::npos ? "" : text.substr(b, e - b + 1);
  std::vector<std::string> parts;
  size_t start = 0;
  while (true) {
    size_t colon = s.find(':', start);
    parts.push_back(
        s.substr(start, colon == std::string::npos ? std::string::npos : colon - start));
    if (colon == std::string::npos) break;
    start = colon + 1;
  }
  bool ok = parts.size() == 4 && !parts[0].empty();
  for (size_t i = 0; ok && i < parts.size(); ++i) {
    if (i > 0 && parts[i].size() != 2) ok = false;
    for (char c : parts[i])
      if (!std::isdigit(static_cast<unsigned char>(c))) ok = false;
  }
  LUMEN_CHECK(ok, "Timer(duration=\"", text,
              "\") is not a valid duration. Expected a string in the format DD:HH:MM:SS.");
  return std::stod(parts[0]) * 86400 + std::stod(parts[1]) * 3600 + std::stod(parts[2]) * 60 +
         std::stod(parts[3]);
}

TimerDuration::TimerDuration(const char* dd_hh_mm_ss) : seconds(parse_duration(dd_hh_mm_ss)) {}

Timer::Timer(TimerOptions options) : options_(std::move(options)) {
  LUMEN_CHECK(options_.interval == "step" || options_.interval == "epoch",
              "Timer: unsupported interval \"", options_.interval,
              "\"; possible values are step, epoch");
  LUMEN_CHECK(!options_.duration.seconds || *options_.duration.seconds >= 0,
              "Timer: duration must be >= 0 seconds, got ", options_.duration.seconds.value_or(0));
}

double Timer::now() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

void Timer::start(const std::string& stage) {
  start_[stage] = now();
  end_.erase(stage);
}

void Timer::end(const std::string& stage) { end_[stage] = now(); }

std::optional<double> Timer::start_time(const std::string& stage) const {
  auto it = start_.find(stage);
  return it == start_.end() ? std::nullopt : std::optional<double>(it->second);
}

std::optional<double> Timer::end_time(const std::string& stage) const {
  auto it = end_.find(stage);
  return it == end_.end() ? std::nullopt : std::optional<double>(it->second);
}

double Timer::time_elapsed(const std::string& stage) const {
  double offset = stage == "train" ? offset_ : 0.0;
  auto s = start_time(stage);
  if (!s) return offset;
  auto e = end_time(stage);
  return (e ? *e : now()) - *s + offset;
}

std::optional<double> Timer::time_remaining(const std::string& stage) const {
  if (!options_.duration.seconds) return std::nullopt;
  return *options_.duration.seconds - time_elapsed(stage);
}

void Timer::check_time_remaining(Trainer& trainer) {
  if (!options_.duration.seconds) return;
  bool stop = time_elapsed("train") >= *options_.duration.seconds;
  // Under DDP the ranks' clocks differ: all stop when any runs out (Lightning broadcasts).
  stop = trainer.reduce_boolean_decision(stop, false);
  if (!stop) return;
  trainer.set_should_stop(true);
  if (options_.verbose && trainer.is_global_zero()) {
    auto total = static_cast<int64_t>(time_elapsed("train"));
    char buf[64];
    // Python's str(timedelta(seconds=n)): "H:MM:SS", with "D day(s), " in front past a day.
    int64_t days = total / 86400, rest = total % 86400;
    std::string prefix = days ? std::to_string(days) + (days == 1 ? " day, " : " days, ") : "";
    std::snprintf(buf, sizeof buf, "%lld:%02lld:%02lld", static_cast<long long>(rest / 3600),
                  static_cast<long long>(rest % 3600 / 60), static_cast<long long>(rest % 60));
    std::cout << "Time limit reached. Elapsed time is " << prefix << buf
              << ". Signaling Trainer to stop.\n";
  }
}

void Timer::on_fit_start(Trainer& trainer, LightningModule&) {
  // A loaded state may already have spent the budget, whatever the interval.
  check_time_remaining(trainer);
}

void Timer::on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&, const Batch&,
                               int64_t) {
  if (options_.interval == "step") check_time_remaining(trainer);
}

void Timer::on_train_epoch_end(Trainer& trainer, LightningModule&) {
  if (options_.interval == "epoch") check_time_remaining(trainer);
}

State Timer::state_dict() const {
  State s;
  for (const char* stage : {"train", "sanity_check", "validate", "test", "predict"})
    s.attrs[std::string("time_elapsed.") + stage] = time_elapsed(stage);
  return s;
}

void Timer::load_state_dict(const State& state) {
  offset_ = state.has_attr("time_elapsed.train") ? state.get_double("time_elapsed.train") : 0.0;
}

}  // namespace lumen
