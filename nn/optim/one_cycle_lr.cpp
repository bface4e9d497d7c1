#include "nn/optim/one_cycle_lr.h"

#include <cmath>
#include <numbers>

namespace lumen::optim {
namespace {

double anneal(const std::string& strategy, double start, double end, double pct) {
  if (strategy == "cos") return end + (start - end) / 2.0 * (std::cos(std::numbers::pi * pct) + 1);
  return (end - start) * pct + start;
}

void check_options(int64_t total_steps, const OneCycleLROptions& o, const char* where) {
  LUMEN_CHECK(total_steps > 0, where, ": total_steps must be positive, got ", total_steps);
  LUMEN_CHECK(o.pct_start >= 0 && o.pct_start <= 1, where, ": pct_start must be in [0, 1], got ",
              o.pct_start);
  LUMEN_CHECK(o.anneal_strategy == "cos" || o.anneal_strategy == "linear", where,
              ": anneal_strategy must be \"cos\" or \"linear\", got \"", o.anneal_strategy, "\"");
  LUMEN_CHECK(o.div_factor > 0 && o.final_div_factor > 0, where,
              ": div_factor and final_div_factor must be positive, got ", o.div_factor, " and ",
              o.final_div_factor);
}

}  // namespace

OneCycleLR::OneCycleLR(Optimizer& optimizer, double max_lr, int64_t total_steps,
                       OneCycleLROptions options)
    : OneCycleLR(optimizer, std::vector<double>(optimizer.param_groups().size(), max_lr),
                 total_steps, std::move(options)) {}

OneCycleLR::OneCycleLR(Optimizer& optimizer, std::vector<double> max_lrs, int64_t total_steps,
                       OneCycleLROptions options)
    : LRScheduler(optimizer), total_steps_(total_steps), options_(std::move(options)) {
  check_options(total_steps_, options_, "OneCycleLR");
  std::vector<ParamGroup>& groups = optimizer.param_groups();
  LUMEN_CHECK(max_lrs.size() == groups.size(), "OneCycleLR: got ", max_lrs.size(),
              " max_lr values for ", groups.size(), " parameter groups");
  for (size_t g = 0; g < groups.size(); ++g) {
    LUMEN_CHECK(max_lrs[g] >= 0, "OneCycleLR: max_lr must be >= 0, got ", max_lrs[g], " for group ",
                g);
    const double initial = max_lrs[g] / options_.div_factor;
    groups[g].options["initial_lr"] = initial;
    groups[g].options["max_lr"] = max_lrs[g];
    groups[g].options["min_lr"] = initial / options_.final_div_factor;
  }
  if (options_.cycle_momentum) {
    const auto& first = groups.front().options;
    use_beta1_ = first.count("betas0") != 0;
    LUMEN_CHECK(use_beta1_ || first.count("momentum") != 0, "OneCycleLR: the optimizer (",
                optimizer.type_name(),
                ") must support momentum or beta1 with the cycle_momentum option enabled");
    for (ParamGroup& g : groups) {
      g.options[use_beta1_ ? "betas0" : "momentum"] = options_.max_momentum;
      g.options["max_momentum"] = options_.max_momentum;
      g.options["base_momentum"] = options_.base_momentum;
    }
  }
  init_base_lrs();
  step();
}

std::vector<OneCycleLR::Phase> OneCycleLR::phases() const {
  const double total = static_cast<double>(total_steps_), pct = options_.pct_start;
  if (options_.three_phase)
    return {{pct * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"},
            {2 * pct * total - 2, "max_lr", "initial_lr", "base_momentum", "max_momentum"},
            {total - 1, "initial_lr", "min_lr", "max_momentum", "max_momentum"}};
  return {{pct * total - 1, "initial_lr", "max_lr", "max_momentum", "base_momentum"},
          {total - 1, "max_lr", "min_lr", "base_momentum", "max_momentum"}};
}

void OneCycleLR::apply() {
  const double step_num = static_cast<double>(last_epoch_);
  const std::vector<Phase> schedule = phases();
  std::vector<double> lrs;
  for (ParamGroup& g : groups()) {
    double start_step = 0, lr = 0, momentum = 0;
    for (size_t i = 0; i < schedule.size(); ++i) {
      const Phase& ph = schedule[i];
      if (step_num <= ph.end_step || i + 1 == schedule.size()) {
        const double pct = (step_num - start_step) / (ph.end_step - start_step);
        lr = anneal(options_.anneal_strategy, g.options.at(ph.start_lr), g.options.at(ph.end_lr),
                    pct);
        if (options_.cycle_momentum)
          momentum = anneal(options_.anneal_strategy, g.options.at(ph.start_momentum),
                            g.options.at(ph.end_momentum), pct);
        break;
      }
      start_step = ph.end_step;
    }
    lrs.push_back(lr);
    if (options_.cycle_momentum) g.options[use_beta1_ ? "betas0" : "momentum"] = momentum;
  }
  set_lrs(lrs);
}

void OneCycleLR::step() {
  LUMEN_CHECK(last_epoch_ + 1 <= total_steps_, "OneCycleLR: tried to step ", last_epoch_ + 1,
              " times; the specified number of total steps is ", total_steps_);
  ++last_epoch_;
  ++step_count_;
  apply();
}

void OneCycleLR::restart() {
  last_epoch_ = 0;
  apply();
}

State OneCycleLR::state_dict() const {
  State s = base_state_dict();
  s.attrs["total_steps"] = total_steps_;
  s.attrs["pct_start"] = options_.pct_start;
  s.attrs["anneal_strategy"] = options_.anneal_strategy;
  s.attrs["cycle_momentum"] = int64_t{options_.cycle_momentum};
  s.attrs["base_momentum"] = options_.base_momentum;
  s.attrs["max_momentum"] = options_.max_momentum;
  s.attrs["div_factor"] = options_.div_factor;
  s.attrs["final_div_factor"] = options_.final_div_factor;
  s.attrs["three_phase"] = int64_t{options_.three_phase};
  s.attrs["use_beta1"] = int64_t{use_beta1_};
  return s;
}

void OneCycleLR::load_state_dict(const State& state) {
  OneCycleLROptions o;
  const int64_t total_steps = state.get_int("total_steps");
  o.pct_start = state.get_double("pct_start");
  o.anneal_strategy = state.get_string("anneal_strategy");
  o.cycle_momentum = state.get_int("cycle_momentum") != 0;
  o.base_momentum = state.get_double("base_momentum");
  o.max_momentum = state.get_double("max_momentum");
  o.div_factor = state.get_double("div_factor");
  o.final_div_factor = state.get_double("final_div_factor");
  o.three_phase = state.get_int("three_phase") != 0;
  const bool use_beta1 = state.get_int("use_beta1") != 0;
  check_options(total_steps, o, "OneCycleLR.load_state_dict");
  load_base_state_dict(state);
  total_steps_ = total_steps;
  options_ = std::move(o);
  use_beta1_ = use_beta1;
}

}  // namespace lumen::optim
