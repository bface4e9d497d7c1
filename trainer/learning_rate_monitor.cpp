#include "trainer/learning_rate_monitor.h"

#include <algorithm>

#include "tensor/error.h"
#include "trainer/trainer.h"

namespace lumen {

LearningRateMonitor::LearningRateMonitor(LearningRateMonitorOptions options)
    : options_(std::move(options)) {
  LUMEN_CHECK(
      !options_.logging_interval || *options_.logging_interval == "step" ||
          *options_.logging_interval == "epoch",
      "LearningRateMonitor: logging_interval should be \"step\" or \"epoch\" or unset, got \"",
      options_.logging_interval.value_or(""), "\"");
}

void LearningRateMonitor::on_train_start(Trainer& trainer, LightningModule&) {
  LUMEN_CHECK(!trainer.loggers().empty(),
              "LearningRateMonitor: cannot be used with a Trainer that has no logger");
}

std::map<std::string, double> LearningRateMonitor::extract_stats(const Trainer& trainer,
                                                                 const std::string& interval) {
  std::map<std::string, double> stats;
  std::vector<const optim::Optimizer*> seen;
  std::map<std::string, int64_t> seen_types;  // optimizers named after their type, per type

  auto names_for = [&](const optim::Optimizer& opt, const std::string& base, bool by_type) {
    seen.push_back(&opt);
    std::string name = base;
    if (by_type) {
      int64_t count = ++seen_types[opt.type_name()];
      if (count > 1) name += detail::concat("-", count - 1);
    }
    std::vector<std::string> names;
    size_t groups = opt.param_groups().size();
    for (size_t g = 0; g < groups; ++g)
      names.push_back(groups > 1 ? detail::concat(name, "/pg", g + 1) : name);
    return names;
  };
  auto add = [&](const optim::Optimizer& opt, const std::vector<std::string>& names) {
    const auto& groups = opt.param_groups();
    // Lightning's _remap_keys: an optimizer that gained groups (BaseFinetuning) goes on with
    // its single-group history under "<name>/pg1".
    if (groups.size() > 1) {
      const std::string single = names[0].substr(0, names[0].size() - 4);  // without "/pg1"
      if (auto it = lrs_.find(single); it != lrs_.end()) {
        std::vector<double> history = std::move(it->second);
        lrs_.erase(it);
        std::vector<double>& first = lrs_[names[0]];
        first.insert(first.begin(), history.begin(), history.end());
      }
    }
    for (size_t g = 0; g < groups.size(); ++g) {
      stats[names[g]] = groups[g].lr();
      lrs_[names[g]].push_back(groups[g].lr());
      if (options_.log_momentum) {
        const auto& o = groups[g].options;
        double momentum = o.count("betas0")     ? o.at("betas0")
                          : o.count("momentum") ? o.at("momentum")
                                                : 0.0;
        stats[detail::concat(names[g], "-momentum")] = momentum;
      }
    }
  };

  for (const SchedulerConfig& config : trainer.lr_scheduler_configs()) {
    if (!config.scheduler) continue;
    const optim::Optimizer& opt = config.scheduler->optimizer();
    bool by_type = config.name.empty();
    auto names =
        names_for(opt, by_type ? detail::concat("lr-", opt.type_name()) : config.name, by_type);
    if (interval == config.interval || interval == "any") add(opt, names);
  }
  for (const auto& opt : trainer.optimizers()) {
    if (!opt || std::find(seen.begin(), seen.end(), opt.get()) != seen.end()) continue;
    add(*opt, names_for(*opt, detail::concat("lr-", opt->type_name()), true));
  }
  return stats;
}

// Loggers write on rank 0 only (DDP), as everything the Trainer sends them.
void LearningRateMonitor::log(Trainer& trainer, const std::map<std::string, double>& stats) {
  if (stats.empty() || !trainer.is_global_zero()) return;
  for (const auto& logger : trainer.loggers())
    logger->log_metrics(stats, trainer.batches_that_stepped());
}

void LearningRateMonitor::on_train_batch_start(Trainer& trainer, LightningModule&, const Batch&,
                                               int64_t) {
  if (!trainer.should_update_logs()) return;
  if (options_.logging_interval == "epoch") return;
  log(trainer, extract_stats(trainer, options_.logging_interval ? "any" : "step"));
}

void LearningRateMonitor::on_train_epoch_start(Trainer& trainer, LightningModule&) {
  if (options_.logging_interval == "step") return;
  log(trainer, extract_stats(trainer, options_.logging_interval ? "any" : "epoch"));
}

}  // namespace lumen
