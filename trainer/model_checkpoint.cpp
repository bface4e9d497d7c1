#include "trainer/model_checkpoint.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <iostream>
#include <limits>

#include "tensor/error.h"
#include "trainer/python_float_format.h"
#include "trainer/trainer.h"

namespace lumen {

namespace fs = std::filesystem;

std::string format_checkpoint_filename(const std::string& filename_template,
                                       const std::map<std::string, double>& metrics,
                                       bool auto_insert_metric_name,
                                       const std::vector<std::string>& integer_keys) {
  std::string out;
  size_t i = 0;
  while (i < filename_template.size()) {
    char c = filename_template[i];
    if (c == '}') {
      LUMEN_CHECK(false, "ModelCheckpoint: filename '", filename_template, "' has a '}' at ", i,
                  " without a matching '{'");
    }
    if (c != '{') {
      out += c;
      ++i;
      continue;
    }
    size_t close = filename_template.find('}', i);
    LUMEN_CHECK(close != std::string::npos, "ModelCheckpoint: filename '", filename_template,
                "' has a '{' at ", i, " without a matching '}'");
    std::string field = filename_template.substr(i + 1, close - i - 1);
    size_t colon = field.find(':');
    std::string name = field.substr(0, colon);
    std::string spec = colon == std::string::npos ? "" : field.substr(colon + 1);
    LUMEN_CHECK(!name.empty(), "ModelCheckpoint: filename '", filename_template,
                "' has an empty {} field; expected {metric} or {metric:spec}");
    auto it = metrics.find(name);
    double value = it == metrics.end() ? 0.0 : it->second;  // Lightning fills missing with 0
    bool integer = it == metrics.end() ||
                   std::find(integer_keys.begin(), integer_keys.end(), name) != integer_keys.end();
    if (auto_insert_metric_name) {
      out += name;
      out += '=';
    }
    if (!spec.empty()) {
      out += format_number(value, spec);
    } else if (integer && std::isfinite(value)) {
      out += std::to_string(static_cast<int64_t>(value));
    } else {
      out += python_float_repr(value);
    }
    i = close + 1;
  }
  return out;
}

ModelCheckpoint::ModelCheckpoint(ModelCheckpointOptions options) : options_(std::move(options)) {
  const auto& o = options_;
  LUMEN_CHECK(o.mode == "min" || o.mode == "max", "ModelCheckpoint: mode can be min, max but got '",
              o.mode, "'");
  minimize_ = o.mode == "min";
  kth_value_ = minimize_ ? std::numeric_limits<double>::infinity()
                         : -std::numeric_limits<double>::infinity();
  LUMEN_CHECK(o.save_top_k >= -1, "ModelCheckpoint: save_top_k must be >= -1, got ", o.save_top_k);
  if (!o.every_n_epochs && !o.every_n_train_steps) {
    every_n_epochs_ = 1;
    every_n_train_steps_ = 0;
  } else {
    every_n_epochs_ = o.every_n_epochs.value_or(0);
    every_n_train_steps_ = o.every_n_train_steps.value_or(0);
  }
  LUMEN_CHECK(every_n_train_steps_ >= 0, "ModelCheckpoint: every_n_train_steps must be >= 0, got ",
              every_n_train_steps_);
  LUMEN_CHECK(every_n_epochs_ >= 0, "ModelCheckpoint: every_n_epochs must be >= 0, got ",
              every_n_epochs_);
  LUMEN_CHECK(!(every_n_train_steps_ > 0 && every_n_epochs_ > 0),
              "ModelCheckpoint: every_n_train_steps (", every_n_train_steps_,
              ") and every_n_epochs (", every_n_epochs_, ") are mutually exclusive; set one");
  LUMEN_CHECK(!o.monitor.empty() || o.save_top_k == -1 || o.save_top_k == 0 || o.save_top_k == 1,
              "ModelCheckpoint(save_top_k=", o.save_top_k,
              ", monitor=\"\") is not a valid configuration: without a monitored metric there is "
              "nothing to rank the top k by; set monitor or use save_top_k in {-1, 0, 1}");
  dirpath_ = o.dirpath;
}

std::string ModelCheckpoint::state_key() const {
  std::string monitor = options_.monitor.empty() ? "None" : "'" + options_.monitor + "'";
  return "ModelCheckpoint{'monitor': " + monitor + ", 'mode': '" + options_.mode +
         "', 'every_n_train_steps': " + std::to_string(every_n_train_steps_) +
         ", 'every_n_epochs': " + std::to_string(every_n_epochs_) +
         ", 'train_time_interval': None}";
}

std::string ModelCheckpoint::dirpath(const Trainer& trainer) const {
  if (!options_.dirpath.empty()) return options_.dirpath;
  return (fs::path(trainer.log_dir()) / "checkpoints").string();
}

void ModelCheckpoint::setup(Trainer& trainer, LightningModule&, const std::string& stage) {
  (void)stage;
  dirpath_ = dirpath(trainer);
  rank_zero_ = trainer.is_global_zero();
}

std::string ModelCheckpoint::format_checkpoint_name(const std::map<std::string, double>& candidates,
                                                    const std::string& filename_template,
                                                    std::optional<int64_t> ver) const {
  std::string tmpl = filename_template.empty() ? options_.filename : filename_template;
  if (tmpl.empty()) tmpl = "{epoch}-{step}";
  std::string name = format_checkpoint_filename(tmpl, candidates, options_.auto_insert_metric_name);
  if (ver) name += "-v" + std::to_string(*ver);
  name += ".ckpt";
  return dirpath_.empty() ? name : (fs::path(dirpath_) / name).string();
}

std::string ModelCheckpoint::interpolated_path(const std::map<std::string, double>& candidates,
                                               const std::string& del_filepath) const {
  std::string path = format_checkpoint_name(candidates);
  if (options_.enable_version_counter) {
    int64_t ver = 1;
    while (fs::exists(path) && path != del_filepath)
      path = format_checkpoint_name(candidates, "", ver++);
  }
  return path;
}

bool ModelCheckpoint::should_remove(const std::string& previous, const std::string& current) const {
  if (previous == current || previous.empty()) return false;
  // Only files inside this callback's directory are ever deleted.
  fs::path prev = fs::absolute(previous).lexically_normal();
  fs::path dir = fs::absolute(dirpath_).lexically_normal();
  if (!dir.has_filename()) dir = dir.parent_path();  // "ckpts/" names the same directory
  for (fs::path p = prev.parent_path(); !p.empty(); p = p.parent_path()) {
    if (p == dir) return true;
    if (p == p.root_path()) break;
  }
  return false;
}

std::string ModelCheckpoint::missing_monitor_message(
    const std::map<std::string, double>& candidates) const {
  std::string available;
  for (const auto& [key, value] : candidates) available += (available.empty() ? "" : ", ") + key;
  return "ModelCheckpoint(monitor='" + options_.monitor +
         "') could not find the monitored key in the returned metrics: [" + available +
         "]. HINT: Did you call log('" + options_.monitor + "', value) in the LightningModule?";
}

void ModelCheckpoint::save_topk(const std::map<std::string, double>& candidates,
                                const CheckpointWriter& write) {
  if (options_.save_top_k == 0) return;
  if (options_.monitor.empty()) {
    // No metric: the newest checkpoint replaces the previous one (save_top_k 1), or all stay.
    std::string path = interpolated_path(candidates, best_model_path_);
    std::string previous = best_model_path_;
    best_model_path_ = path;
    write(path);
    if (options_.save_top_k == 1 && should_remove(previous, path) && rank_zero_)
      fs::remove(previous);
    return;
  }
  auto it = candidates.find(options_.monitor);
  LUMEN_CHECK(it != candidates.end(), missing_monitor_message(candidates));
  double current = it->second;
  // check_monitor_top_k: fewer than k kept, or better than the k-th (ties do not displace).
  bool keep = options_.save_top_k == -1 ||
              static_cast<int64_t>(best_k_models_.size()) < options_.save_top_k;
  if (!keep) {
    for (const auto& [path, score] : best_k_models_)
      if (path == kth_best_model_path_) keep = better(current, score);
  }
  if (keep) {
    update_best_and_save(current, candidates, write);
  } else if (options_.verbose && rank_zero_) {
    std::cout << "Epoch " << static_cast<int64_t>(candidates.at("epoch")) << ", global step "
              << static_cast<int64_t>(candidates.at("step")) << ": '" << options_.monitor
              << "' was not in top " << options_.save_top_k << "\n";
  }
}

void ModelCheckpoint::update_best_and_save(double current,
                                           const std::map<std::string, double>& candidates,
                                           const CheckpointWriter& write) {
  int64_t k = options_.save_top_k == -1 ? static_cast<int64_t>(best_k_models_.size()) + 1
                                        : options_.save_top_k;
  std::string del_filepath;
  if (static_cast<int64_t>(best_k_models_.size()) == k && k > 0) {
    del_filepath = kth_best_model_path_;
    std::erase_if(best_k_models_, [&](const auto& e) { return e.first == del_filepath; });
  }
  // A NaN score is never the best: store it as the worst value.
  if (std::isnan(current))
    current = minimize_ ? std::numeric_limits<double>::infinity()
                        : -std::numeric_limits<double>::infinity();
  std::string path = interpolated_path(candidates, del_filepath);
  current_score_ = current;
  std::erase_if(best_k_models_, [&](const auto& e) { return e.first == path; });
  best_k_models_.emplace_back(path, current);

  // The first entry wins ties, as Python's max/min over an insertion-ordered dict.
  auto pick = [&](bool want_worst) {
    const std::pair<std::string, double>* chosen = &best_k_models_.front();
    for (const auto& e : best_k_models_) {
      bool replace =
          want_worst ? better(chosen->second, e.second) : better(e.second, chosen->second);
      if (replace) chosen = &e;
    }
    return *chosen;
  };
  if (static_cast<int64_t>(best_k_models_.size()) == k) {
    auto worst = pick(true);
    kth_best_model_path_ = worst.first;
    kth_value_ = worst.second;
  }
  auto best = pick(false);
  best_model_path_ = best.first;
  best_model_score_ = best.second;
  if (options_.verbose && rank_zero_) {
    std::cout << "Epoch " << static_cast<int64_t>(candidates.at("epoch")) << ", global step "
              << static_cast<int64_t>(candidates.at("step")) << ": '" << options_.monitor
              << "' reached " << format_number(current, ".5f") << " (best "
              << format_number(*best_model_score_, ".5f") << "), saving model to '" << path
              << "' as top " << k << "\n";
  }
  write(path);
  if (!del_filepath.empty() && should_remove(del_filepath, path) && rank_zero_)
    fs::remove(del_filepath);
}

void ModelCheckpoint::save_last_checkpoint(const std::map<std::string, double>& candidates,
                                           const CheckpointWriter& write) {
  if (!options_.save_last) return;
  std::string path = format_checkpoint_name(candidates, "last");
  if (options_.enable_version_counter) {
    int64_t ver = 1;
    while (fs::exists(path) && path != last_model_path_)
      path = format_checkpoint_name(candidates, "last", ver++);
  }
  // Set before saving: the path is part of the state written into the checkpoint.
  std::string previous = last_model_path_;
  last_model_path_ = path;
  write(path);
  if (should_remove(previous, path) && rank_zero_) fs::remove(previous);
}

std::map<std::string, double> ModelCheckpoint::monitor_candidates(const Trainer& trainer) const {
  std::map<std::string, double> c = trainer.callback_metrics();
  // A logged "epoch"/"step" is used (as an integer); otherwise the trainer's counters.
  auto e = c.find("epoch");
  c["epoch"] = e != c.end() ? std::trunc(e->second) : static_cast<double>(trainer.current_epoch());
  auto s = c.find("step");
  c["step"] = s != c.end() ? std::trunc(s->second) : static_cast<double>(trainer.global_step());
  return c;
}

bool ModelCheckpoint::should_skip_saving(const Trainer& trainer) const {
  return trainer.options().fast_dev_run != 0 || trainer.stage() != "fit" ||
         trainer.sanity_checking() || last_global_step_saved_ == trainer.global_step();
}

bool ModelCheckpoint::should_save_on_train_epoch_end(const Trainer& trainer) const {
  if (options_.save_on_train_epoch_end) return *options_.save_on_train_epoch_end;
  // With validation every few epochs, the end of validation is not predictable: save on the
  // train epoch end only when validation never runs or runs exactly once every epoch.
  if (trainer.options().check_val_every_n_epoch != 1) return false;
  if (trainer.num_val_batches() == 0) return true;
  const CountOrFraction& v = trainer.options().val_check_interval;
  return !v.is_count && v.value == 1.0;
}

ModelCheckpoint::CheckpointWriter ModelCheckpoint::trainer_writer(Trainer& trainer) {
  return [this, &trainer](const std::string& path) {
    fs::path dir = fs::path(path).parent_path();
    if (!dir.empty()) fs::create_directories(dir);
    trainer.save_checkpoint(path, options_.save_weights_only);
    last_global_step_saved_ = trainer.global_step();
  };
}

// One save point: top-k when due (`topk_due`), then "last".
void ModelCheckpoint::save(Trainer& trainer, bool topk_due) {
  if (dirpath_.empty()) dirpath_ = dirpath(trainer);
  auto candidates = monitor_candidates(trainer);
  auto write = trainer_writer(trainer);
  if (topk_due) {
    if (!options_.monitor.empty() && options_.save_top_k != 0 &&
        !candidates.count(options_.monitor) && !validation_has_run_) {
      // Lightning warns (instead of failing) while validation has not run yet: the metric may
      // be a validation metric that does not exist so far.
      if (!warned_missing_monitor_)
        std::cerr << "Warning: " << missing_monitor_message(candidates) << "\n";
      warned_missing_monitor_ = true;
    } else {
      save_topk(candidates, write);
    }
  }
  save_last_checkpoint(candidates, write);
}

void ModelCheckpoint::save_at_epoch_boundary(Trainer& trainer) {
  save(trainer, every_n_epochs_ >= 1 && (trainer.current_epoch() + 1) % every_n_epochs_ == 0);
}

void ModelCheckpoint::on_train_batch_end(Trainer& trainer, LightningModule&, const Tensor&,
                                         const Batch&, int64_t) {
  if (should_skip_saving(trainer)) return;
  if (every_n_train_steps_ < 1 || trainer.global_step() % every_n_train_steps_ != 0) return;
  save(trainer, true);
}

void ModelCheckpoint::on_train_epoch_end(Trainer& trainer, LightningModule&) {
  if (!should_skip_saving(trainer) && should_save_on_train_epoch_end(trainer))
    save_at_epoch_boundary(trainer);
}

void ModelCheckpoint::on_validation_end(Trainer& trainer, LightningModule&) {
  if (trainer.stage() == "fit" && !trainer.sanity_checking()) validation_has_run_ = true;
  if (!should_skip_saving(trainer) && !should_save_on_train_epoch_end(trainer))
    save_at_epoch_boundary(trainer);
}

State ModelCheckpoint::state_dict() const {
  State s;
  s.attrs["monitor"] = options_.monitor;
  if (best_model_score_) s.attrs["best_model_score"] = *best_model_score_;
  if (current_score_) s.attrs["current_score"] = *current_score_;
  s.attrs["best_model_path"] = best_model_path_;
  s.attrs["dirpath"] = dirpath_;
  s.attrs["kth_best_model_path"] = kth_best_model_path_;
  s.attrs["kth_value"] = kth_value_;
  s.attrs["last_model_path"] = last_model_path_;
  // best_k_models: the paths (one per line; paths hold no newlines) and their scores.
  std::string paths;
  std::vector<double> scores;
  for (const auto& [path, score] : best_k_models_) {
    paths += (paths.empty() ? "" : "\n") + path;
    scores.push_back(score);
  }
  s.attrs["best_k_models_paths"] = paths;
  s.attrs["best_k_models_scores"] = scores;
  return s;
}

void ModelCheckpoint::load_state_dict(const State& state) {
  std::string from = state.has_attr("dirpath") ? state.get_string("dirpath") : dirpath_;
  if (dirpath_.empty() || from == dirpath_) {
    best_model_score_.reset();
    if (state.has_attr("best_model_score"))
      best_model_score_ = state.get_double("best_model_score");
    if (state.has_attr("current_score")) current_score_ = state.get_double("current_score");
    if (state.has_attr("kth_best_model_path"))
      kth_best_model_path_ = state.get_string("kth_best_model_path");
    if (state.has_attr("kth_value")) kth_value_ = state.get_double("kth_value");
    if (state.has_attr("last_model_path")) last_model_path_ = state.get_string("last_model_path");
    if (state.has_attr("best_k_models_paths")) {
      const std::string& paths = state.get_string("best_k_models_paths");
      const auto& scores = state.get_doubles("best_k_models_scores");
      std::vector<std::string> split;
      size_t start = 0;
      while (!paths.empty() && start <= paths.size()) {
        size_t nl = paths.find('\n', start);
        if (nl == std::string::npos) nl = paths.size();
        split.push_back(paths.substr(start, nl - start));
        start = nl + 1;
      }
      LUMEN_CHECK(split.size() == scores.size(), "ModelCheckpoint::load_state_dict: ", split.size(),
                  " best_k_models paths but ", scores.size(), " scores");
      best_k_models_.clear();
      for (size_t i = 0; i < split.size(); ++i) best_k_models_.emplace_back(split[i], scores[i]);
    }
    if (dirpath_.empty()) dirpath_ = from;
  } else {
    std::cerr << "Warning: ModelCheckpoint: the dirpath has changed from '" << from << "' to '"
              << dirpath_
              << "', therefore best_model_score, kth_best_model_path, kth_value, "
                 "last_model_path and best_k_models won't be reloaded. Only best_model_path "
                 "will be reloaded.\n";
  }
  best_model_path_ = state.get_string("best_model_path");
}

}  // namespace lumen
